"""Keras models: `build_*` functions returning `keras.Model`, registered by name."""

from zssr_tf.models.discriminators import DISCRIMINATORS, build_dcgan_discriminator
from zssr_tf.models.generators import GENERATORS, build_zssr_generator
from zssr_tf.models.perceptual import build_vgg_features

__all__ = ["DISCRIMINATORS", "GENERATORS", "build_dcgan_discriminator", "build_vgg_features", "build_zssr_generator"]
