"""Discriminator networks: ZSRGAN's DCGAN-style critic, registered by name."""

from __future__ import annotations

from typing import Callable

import keras


def build_dcgan_discriminator(
    channels: int = 3,
    width: int = 64,
    blocks: int = 4,
    seed: int | None = None,
    dtype_policy: str = "float32",
    name: str = "dcgan_discriminator",
) -> keras.Model:
    """ZSRGAN's discriminator: DCGAN's (Radford et al.) with one block fewer, so crops down to 64x64 fit.

    `blocks` x [4x4 convolution with stride 2 and padding 1 (no bias), batch norm, LeakyReLU 0.2], channels
    width, 2 * width, ... (at most 8 * width: 64 -> 128 -> 256 -> 512), then a 4x4 convolution (no padding) to one
    map and a sigmoid. A 128x128 crop gives a 5x5 map, a 64x64 crop a 1x1 map.

    Args:
      channels: image channels (1 or 3).
      width: channels of the first block.
      blocks: number of stride-2 blocks; the input must be at least 2**blocks * 4 pixels on a side.
      seed: seed of the Glorot-normal initialisers (layer i uses seed + i); None draws fresh weights.
      dtype_policy: Keras dtype policy of the layers; the probabilities are float32.
      name: model name.

    Returns:
      A `keras.Model` mapping [N, H, W, channels] images in [0, 1] to [N, h, w, 1] probabilities of being real.
    """
    if blocks < 1 or width < 1 or channels < 1:
        raise ValueError(f"blocks, width and channels must be >= 1, got {blocks}, {width}, {channels}")

    def initializer(i: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotNormal(seed=None if seed is None else seed + i)

    image = keras.Input(shape=(None, None, channels), name="image")
    x = image
    for i in range(blocks):
        x = keras.layers.ZeroPadding2D(1, dtype=dtype_policy, name=f"pad_{i}")(x)
        x = keras.layers.Conv2D(min(width * 2**i, 8 * width), 4, strides=2, use_bias=False,
                                kernel_initializer=initializer(i), dtype=dtype_policy, name=f"conv_{i}")(x)
        x = keras.layers.BatchNormalization(dtype=dtype_policy, name=f"batch_norm_{i}")(x)
        x = keras.layers.LeakyReLU(0.2, dtype=dtype_policy, name=f"leaky_relu_{i}")(x)
    x = keras.layers.Conv2D(1, 4, kernel_initializer=initializer(blocks), dtype=dtype_policy, name="logits")(x)
    probabilities = keras.layers.Activation("sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(image, probabilities, name=name)


DISCRIMINATORS: dict[str, Callable[..., keras.Model]] = {"dcgan": build_dcgan_discriminator}
