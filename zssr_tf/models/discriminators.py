"""Discriminator networks, registered by name: ZSRGAN's DCGAN-style discriminator and DGDML-SR's WGAN critics."""

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
    width, 2 * width, ... (at most 8 * width: 64 -> 128 -> 256 -> 512), then a 4x4 convolution (no padding, no
    bias, as the authors' code) to one map and a sigmoid. A 128x128 crop gives a 5x5 map, a 64x64 crop a 1x1 map.

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
        # PyTorch's BatchNorm2d defaults, as the authors' code: epsilon 1e-5, running averages by 0.1 per step.
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=dtype_policy, name=f"batch_norm_{i}")(x)
        x = keras.layers.LeakyReLU(0.2, dtype=dtype_policy, name=f"leaky_relu_{i}")(x)
    x = keras.layers.Conv2D(1, 4, use_bias=False, kernel_initializer=initializer(blocks), dtype=dtype_policy,
                            name="logits")(x)
    probabilities = keras.layers.Activation("sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(image, probabilities, name=name)


def build_wgan_critic(
    patch_size: int,
    channels: int = 1,
    width: int = 64,
    seed: int | None = None,
    dtype_policy: str = "float32",
    name: str = "wgan_critic",
) -> keras.Model:
    """DGDML-SR's critics D^H and D^L (SRGAN's discriminator without batch norm, as the authors' code): 4 pairs of
    [3x3 convolution, 4x4 convolution of stride 2] with LeakyReLU 0.2 and channels width, 2, 4, 8 x width (64..512),
    then a dense layer of 1024, LeakyReLU 0.2 and a dense layer of one score. No sigmoid: a Wasserstein critic.

    Args:
      patch_size: side of the square inputs (a multiple of 16: the dense head sees patch_size / 16 squared).
      channels: image channels (1: the Y channel).
      width: channels of the first convolutions.
      seed: seed of the initialisers (layer i uses seed + i); None draws fresh weights.
      dtype_policy: Keras dtype policy of the layers; the score is float32.
      name: model name.

    Returns:
      A `keras.Model` mapping [N, patch_size, patch_size, channels] to [N, 1] scores (one per sample, so a
      gradient penalty is per sample).
    """
    if patch_size < 16 or patch_size % 16:
        raise ValueError(f"the critic's patch size must be a multiple of 16, got {patch_size}")

    def seeded(i: int) -> int | None:
        return None if seed is None else seed + i

    # The authors' initialisation: convolutions N(0, sqrt(2 / (k k C_out))) as their generators; the dense layers
    # keep PyTorch's nn.Linear default, U(+-1 / sqrt(fan_in)) for weights and biases.
    def dense(units: int, fan_in: int, i: int, name: str) -> keras.layers.Dense:
        bound = fan_in**-0.5
        return keras.layers.Dense(units, kernel_initializer=keras.initializers.VarianceScaling(
            1 / 3, "fan_in", "uniform", seed=seeded(i)), bias_initializer=keras.initializers.RandomUniform(
            -bound, bound, seed=seeded(i + 100)), dtype=dtype_policy, name=name)

    image = keras.Input(shape=(patch_size, patch_size, channels), name="image")
    x = image
    for i in range(4):
        filters = width * 2**i
        for j, (size, stride) in enumerate(((3, 1), (4, 2))):
            x = keras.layers.Conv2D(filters, size, strides=stride, padding="same", use_bias=False,
                                    kernel_initializer=keras.initializers.VarianceScaling(
                                        2.0, "fan_out", "untruncated_normal", seed=seeded(2 * i + j)),
                                    dtype=dtype_policy, name=f"conv_{i}_{j}")(x)
            x = keras.layers.LeakyReLU(0.2, dtype=dtype_policy, name=f"leaky_relu_{i}_{j}")(x)
    x = keras.layers.Flatten(dtype=dtype_policy, name="flatten")(x)
    x = dense(1024, (patch_size // 16) ** 2 * 8 * width, 8, "dense")(x)
    x = keras.layers.LeakyReLU(0.2, dtype=dtype_policy, name="dense_relu")(x)
    x = dense(1, 1024, 9, "score_logit")(x)
    score = keras.layers.Activation("linear", dtype="float32", name="score")(x)
    return keras.Model(image, score, name=name)


DISCRIMINATORS: dict[str, Callable[..., keras.Model]] = {"dcgan": build_dcgan_discriminator,
                                                         "wgan_critic": build_wgan_critic}
