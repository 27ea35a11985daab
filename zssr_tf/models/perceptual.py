"""Frozen feature extractors for perceptual losses: VGG16 or VGG19 up to a chosen layer, ImageNet weights from disk.

Keras downloads ImageNet weights on first use; the machines this project is developed on cannot, so the weights
come from Keras's cache (where a machine that can download leaves them) or from a path, and a missing file is a
one-line error that says where to put it. Tests build the network with `weights=None`.
"""

from __future__ import annotations

import os
from typing import Sequence

import keras

VGG_NOTOP_FILES = {"vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                   "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"}
_ARCHITECTURES = {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19}


def cached_vgg_weights(arch: str = "vgg16") -> str:
    """Where Keras keeps the downloaded ImageNet VGG16 (or VGG19) weights ($KERAS_HOME/models, default
    ~/.keras/models)."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(keras_home, "models", VGG_NOTOP_FILES[arch])


def resolve_vgg_weights(weights: str, arch: str = "vgg16") -> str | None:
    """`imagenet` -> Keras's cached file, a path -> itself, `random` -> None (random weights, tests only).

    Raises:
      ValueError: the file is not there (one line saying where to put it).
    """
    if weights == "random":
        return None
    path = cached_vgg_weights(arch) if weights == "imagenet" else weights
    if not os.path.isfile(path):
        where = (f"put {VGG_NOTOP_FILES[arch]} in {os.path.dirname(path)}" if weights == "imagenet"
                 else "check the path")
        raise ValueError(f"vgg_weights={weights}: no {arch.upper()} ImageNet weights at {path} (they cannot be "
                         f"downloaded here): {where}, or pass --vgg_weights=none to drop the perceptual loss")
    return path


def build_vgg_features(weights: str = "imagenet", layer: str | Sequence[str] = "block3_conv1", arch: str = "vgg16",
                       name: str | None = None) -> keras.Model:
    """VGG16 or VGG19 (Simonyan & Zisserman) from its input to `layer`'s ReLU output, frozen.

    Args:
      weights: `imagenet` (Keras's cached file), the path of a "notop" .h5 file of `arch`, or `random` (tests
        only: never report a number made with it).
      layer: a Keras VGG layer name (`block3_conv1` is relu3_1: Keras's convolutions include their ReLU), or a
        sequence of them (the model then returns a list of their features, in that order).
      arch: `vgg16` (ZSRGAN's) or `vgg19` (the DGDML-SR authors').
      name: model name (default `<arch>_features`).

    Returns:
      A non-trainable `keras.Model` from [N, H, W, 3] VGG-preprocessed images (`losses.vgg_preprocess`) to
      [N, H / 2**k, W / 2**k, channels] float32 features.

    Raises:
      ValueError: weights not found (one line).
    """
    path = resolve_vgg_weights(weights, arch)
    # float32 whatever the run's precision: the features are a fixed target, and the backbone is small next to
    # the generator at relu3_1.
    vgg = _ARCHITECTURES[arch](include_top=False, weights=None, input_shape=(None, None, 3))
    if path is not None:
        vgg.load_weights(path)
    outputs = vgg.get_layer(layer).output if isinstance(layer, str) else [vgg.get_layer(n).output for n in layer]
    features = keras.Model(vgg.input, outputs, name=name or f"{arch}_features")
    features.trainable = False
    return features
