"""Generator networks: the ZSSR image-specific CNN (ZSSR's and ZSRGAN's generator), registered by name."""

from __future__ import annotations

import math
from typing import Callable

import keras


def build_zssr_generator(
    channels: int = 3,
    depth: int = 8,
    width: int = 64,
    init_variance: float = 0.1,
    learn_residual: bool = True,
    seed: int | None = None,
    dtype_policy: str = "float32",
    name: str = "zssr_generator",
) -> keras.Model:
    """The ZSSR network: `depth` 3x3 convolutions, no biases, ReLU on all but the last, global residual.

    Fully convolutional, so it trains on fixed crops and runs on whole images.

    Args:
      channels: image channels in and out (1 for grayscale, 3 for RGB).
      depth: number of convolution layers (>= 1).
      width: channels of the hidden layers.
      init_variance: weights start as N(0, init_variance / (3 * 3 * c_in)): He-normal with gain 0.1 instead of
        2, so the residual branch starts near zero and the net starts as the interpolation.
      learn_residual: output = convs(x) + x, where x is the interpolated LR image.
      seed: seed of the weight initialisers (layer i uses seed + i); None draws fresh weights.
      dtype_policy: Keras dtype policy of the convolutions ("float32", "mixed_bfloat16", "mixed_float16"):
        mixed policies compute in 16 bits with float32 variables; input and output stay float32.
      name: model name.

    Returns:
      A `keras.Model` mapping [N, H, W, channels] interpolated images in [0, 1] to [N, H, W, channels]
      (unclipped), with attributes `scale` (1) and `receptive_field_radius` (depth) for tiled prediction.
    """
    if depth < 1 or width < 1 or channels < 1:
        raise ValueError(f"depth, width and channels must be >= 1, got {depth}, {width}, {channels}")
    interpolated = keras.Input(shape=(None, None, channels), name="interpolated_lr")
    x = interpolated
    c_in = channels
    for i in range(depth):
        last = i == depth - 1
        filters = channels if last else width
        std = math.sqrt(init_variance / (3 * 3 * c_in))
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, activation=None if last else "relu",
            kernel_initializer=keras.initializers.RandomNormal(
                mean=0.0, stddev=std, seed=None if seed is None else seed + i),
            dtype=dtype_policy, name=f"filter_{i}",  # the original's variable names
        )(x)
        c_in = filters
    if learn_residual:
        # Under a mixed-precision policy the convs compute in 16 bits; the residual is added in float32 so the
        # interpolated image keeps its full precision.
        x = keras.layers.Add(name="residual", dtype="float32")([x, interpolated])
    else:
        x = keras.layers.Activation("linear", dtype="float32", name="output")(x)
    model = keras.Model(interpolated, x, name=name)
    # What tiled prediction needs to know: the input is already interpolated (scale 1), and an output pixel sees
    # `depth` pixels on each side (one per 3x3 convolution).
    model.scale, model.receptive_field_radius = 1, depth
    return model


GENERATORS: dict[str, Callable[..., keras.Model]] = {"zssr": build_zssr_generator}
