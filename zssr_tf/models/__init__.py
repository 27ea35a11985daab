"""Keras models: `build_*` functions returning `keras.Model`, registered by name."""

from zssr_tf.models.discriminators import DISCRIMINATORS, build_dcgan_discriminator, build_wgan_critic
from zssr_tf.models.generators import GENERATORS, build_dsn, build_srn, build_vdsr, build_zssr_generator
from zssr_tf.models.perceptual import build_vgg_features

__all__ = ["DISCRIMINATORS", "GENERATORS", "build_dcgan_discriminator", "build_dsn", "build_srn",
           "build_vdsr", "build_vgg_features", "build_wgan_critic", "build_zssr_generator"]
