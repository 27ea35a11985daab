"""Keras models: `build_*` functions returning `keras.Model`, registered by name."""

from zssr_tf.models.generators import GENERATORS, build_zssr_generator

__all__ = ["GENERATORS", "build_zssr_generator"]
