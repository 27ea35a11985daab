"""Generator networks, registered by name: the ZSSR image-specific CNN (ZSSR's and ZSRGAN's generator), and
DGDML-SR's super-resolution network (SRN) and degradation simulation network (DSN)."""

from __future__ import annotations

import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from zssr_tf.config import UPSAMPLERS


def build_zssr_generator(
    channels: int = 3,
    depth: int = 8,
    width: int = 64,
    init_variance: float = 0.1,
    learn_residual: bool = True,
    seed: int | None = None,
    dtype_policy: str = "float32",
    name: str = "zssr_generator",
    upsampler: str = "interpolate",
    scale: int = 1,
    upscale_method: str = "cubic",
    branch_range: str = "0,1",
    branch_noise_std: float = 0.0,
    branch_noise_at_test: bool = False,
) -> keras.Model:
    """The ZSSR network: `depth` 3x3 convolutions, no biases, ReLU on all but the last, global residual.

    Fully convolutional, so it trains on fixed crops and runs on whole images. With `upsampler="interpolate"`
    (the paper's) it takes the LR image already interpolated to the output's size. With `"pixel_shuffle"` (the
    course report's 8.1) it takes the LR image itself: every convolution runs at the LR size, the last one gives
    scale^2 x channels, `tf.nn.depth_to_space` rearranges them into the output, and the residual is still added
    to the interpolated LR image (`Interpolate`, the same MATLAB kernel the paper's input is made with).

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
      upsampler: "interpolate" or "pixel_shuffle".
      scale: the integer scale factor of a pixel-shuffle network (ignored by "interpolate").
      upscale_method: the kernel of a pixel-shuffle network's residual (`imresize.KERNEL_NAMES`).
      branch_range: "0,1", or "-1,1": the convolutions see 2x - 1 and their output is halved before the residual
        is added, so they compute what a network in [-1, 1] does (ZSRGAN's authors' code); images stay in [0, 1].
      branch_noise_std: Gaussian noise added to the convolutions' input only (`BranchNoise`, in branch_range
        units; 0: none): ZSRGAN's authors' code.
      branch_noise_at_test: the noise is drawn at inference too, not only in training.

    Returns:
      A `keras.Model` mapping [N, H, W, channels] images in [0, 1] (interpolated ones for "interpolate") to
      [N, scale * H, scale * W, channels] (unclipped), with attributes `scale` (1 for "interpolate") and
      `receptive_field_radius` (in input pixels) for tiled prediction.
    """
    if depth < 1 or width < 1 or channels < 1:
        raise ValueError(f"depth, width and channels must be >= 1, got {depth}, {width}, {channels}")
    if upsampler not in UPSAMPLERS:
        raise ValueError(f"upsampler: {upsampler!r} is not one of {', '.join(UPSAMPLERS)}")
    shuffle = upsampler == "pixel_shuffle"
    if shuffle and (scale != int(scale) or scale < 2):
        raise ValueError(f"a pixel-shuffle ZSSR network needs an integer scale factor >= 2, got {scale}")
    scale = int(scale) if shuffle else 1
    interpolated = keras.Input(shape=(None, None, channels), name="lr" if shuffle else "interpolated_lr")
    x = interpolated
    if branch_range not in ("0,1", "-1,1"):
        raise ValueError(f"branch_range: {branch_range!r} is not one of 0,1, -1,1")
    if branch_range == "-1,1":
        x = keras.layers.Rescaling(2.0, offset=-1.0, dtype=dtype_policy, name="to_minus_one_one")(x)
    if branch_noise_std > 0:
        x = BranchNoise(branch_noise_std, branch_noise_at_test, seed=None if seed is None else seed + depth,
                        dtype=dtype_policy, name="branch_noise")(x)
    c_in = channels
    for i in range(depth):
        last = i == depth - 1
        filters = (channels * scale**2 if shuffle else channels) if last else width
        std = math.sqrt(init_variance / (3 * 3 * c_in))
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, activation=None if last else "relu",
            kernel_initializer=keras.initializers.RandomNormal(
                mean=0.0, stddev=std, seed=None if seed is None else seed + i),
            dtype=dtype_policy, name=f"filter_{i}",  # the original's variable names
        )(x)
        c_in = filters
    if branch_range == "-1,1":
        x = keras.layers.Rescaling(0.5, dtype=dtype_policy, name="from_minus_one_one")(x)
    base = interpolated
    radius = depth  # an output pixel sees one input pixel more on each side per 3x3 convolution
    if shuffle:
        x = PixelShuffle(scale, dtype=dtype_policy, name="pixel_shuffle")(x)
    if shuffle and learn_residual:
        interpolate = Interpolate(scale, upscale_method, dtype="float32", name="interpolate")
        base, radius = interpolate(interpolated), depth + interpolate.radius
    if learn_residual:
        # Under a mixed-precision policy the convs compute in 16 bits; the residual is added in float32 so the
        # interpolated image keeps its full precision.
        x = keras.layers.Add(name="residual", dtype="float32")([x, base])
    else:
        x = keras.layers.Activation("linear", dtype="float32", name="output")(x)
    model = keras.Model(interpolated, x, name=name)
    model.scale, model.receptive_field_radius = scale, radius  # what tiled prediction needs to know
    return model


def build_vdsr(
    channels: int = 3,
    depth: int = 20,
    width: int = 64,
    seed: int | None = None,
    dtype_policy: str = "float32",
    name: str = "vdsr",
) -> keras.Model:
    """VDSR (Kim, Lee, Lee, CVPR 2016): `depth` 3x3 convolutions with biases and ReLU on all but the last, and
    a global residual on the interpolated input: the course report's pretrained backbone (its 8.2).

    Args: as `build_zssr_generator` (He-normal weights, as VDSR's; zero biases).

    Returns:
      A `keras.Model` mapping [N, H, W, channels] interpolated images to [N, H, W, channels], with `scale` 1 and
      `receptive_field_radius` depth.
    """
    if depth < 2 or width < 1 or channels < 1:
        raise ValueError(f"depth must be >= 2, width and channels >= 1, got {depth}, {width}, {channels}")
    interpolated = keras.Input(shape=(None, None, channels), name="interpolated_lr")
    x = interpolated
    for i in range(depth):
        last = i == depth - 1
        x = keras.layers.Conv2D(
            channels if last else width, 3, padding="same", activation=None if last else "relu",
            kernel_initializer=keras.initializers.HeNormal(seed=None if seed is None else seed + i),
            dtype=dtype_policy, name=f"conv_{i}")(x)
    x = keras.layers.Add(name="residual", dtype="float32")([x, interpolated])
    model = keras.Model(interpolated, x, name=name)
    model.scale, model.receptive_field_radius = 1, depth
    return model


def receptive_field_radius(model: keras.Model) -> int:
    """The receptive-field radius of a network of stride-1 convolutions (e.g. one loaded from a `.keras` file,
    which keeps no attributes): the sum of its convolutions' half-widths, a bound for any topology."""
    radius = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            radius += receptive_field_radius(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            radius += (layer.kernel_size[0] // 2) * layer.dilation_rate[0]
    return radius


class _Upscaling(keras.layers.Layer):
    """A parameter-free layer that makes images `scale` times larger (its `scale` is its config)."""

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def output_channels(self, channels: int | None) -> int | None:
        return channels

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        def times(n: int | None) -> int | None:
            return None if n is None else n * self.scale

        return (input_shape[0], times(input_shape[1]), times(input_shape[2]), self.output_channels(input_shape[3]))

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


def torch_bicubic_phases(scale: int, a: float = -0.75) -> np.ndarray:
    """The taps of PyTorch's `nn.Upsample(scale_factor=scale, mode='bicubic', align_corners=False)`: [scale, 5],
    row p for output phase p, over input offsets -2..2 from the pixel the output block belongs to.

    PyTorch maps output pixel o to input x = (o + 0.5) / scale - 0.5 and weighs the 4 pixels from floor(x) - 1
    with Keys' cubic convolution of a = -0.75 (`upsample_bicubic2d`'s `get_cubic_upsample_coefficients`)."""

    def near(t: float) -> float:  # |t| <= 1
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t: float) -> float:  # 1 < |t| < 2
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    phases = np.zeros((scale, 5))
    for p in range(scale):
        x = (p + 0.5) / scale - 0.5
        first, t = math.floor(x), x - math.floor(x)
        phases[p, first + 1:first + 5] = far(t + 1), near(t), near(1 - t), far(2 - t)
    return phases


def _upscale_by_phases(x: tf.Tensor, phases: np.ndarray, pad: str) -> tf.Tensor:
    """Upscales [N, h, w, C] by len(phases) with the separable taps `phases` ([scale, 2R + 1], centred): one
    convolution with scale^2 output channels over the input padded by R (`pad`: "SYMMETRIC", MATLAB's mirror, or
    "EDGE", PyTorch's clamped index), then `depth_to_space`. Every output pixel of phase (i, j) in its block takes
    the same taps, so this is exact for an integer scale, also on inputs whose size is known only at run time."""
    scale, taps = phases.shape
    r = taps // 2
    # Phase (i, j) of a block is depth_to_space's channel i * scale + j.
    filters = np.einsum("it,ju->tuij", phases, phases).reshape(taps, taps, 1, scale**2).astype(np.float32)
    x = tf.cast(x, tf.float32)
    n, h, w, c = tf.unstack(tf.shape(x))
    planes = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [n * c, h, w, 1])
    if pad == "EDGE":
        planes = tf.gather(planes, tf.clip_by_value(tf.range(-r, h + r), 0, h - 1), axis=1)
        planes = tf.gather(planes, tf.clip_by_value(tf.range(-r, w + r), 0, w - 1), axis=2)
    else:
        planes = tf.pad(planes, [[0, 0], [r, r], [r, r], [0, 0]], mode=pad)
    y = tf.nn.depth_to_space(tf.nn.conv2d(planes, filters, 1, "VALID"), scale)
    return tf.transpose(tf.reshape(y, [n, c, h * scale, w * scale]), [0, 2, 3, 1])


@keras.saving.register_keras_serializable(package="zssr_tf")
class BranchNoise(keras.layers.Layer):
    """Adds N(0, stddev) noise in training and, with `at_test`, at inference too (`keras.layers.GaussianNoise`
    never does): ZSRGAN's authors draw it at every forward pass. Its seed state is a variable of the layer, so a
    checkpoint resumes the same draws."""

    def __init__(self, stddev: float, at_test: bool = False, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stddev, self.at_test, self.seed = float(stddev), bool(at_test), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not (training or self.at_test):
            return x
        return x + keras.random.normal(keras.ops.shape(x), stddev=self.stddev, dtype=x.dtype,
                                       seed=self.seed_generator)

    def get_config(self) -> dict:
        return {**super().get_config(), "stddev": self.stddev, "at_test": self.at_test, "seed": self.seed}


@keras.saving.register_keras_serializable(package="zssr_tf")
class BicubicUpsample(_Upscaling):
    """Bicubic upscaling by an integer factor as PyTorch's `nn.Upsample(mode='bicubic')` does it, which the DGDML-SR
    authors' SRN adds to its output (Keys a = -0.75, half-pixel centres, the border clamped): the SRN's
    low-frequency branch. (`tf.image.resize` is Keys a = -0.5 and renormalises at the border instead.)"""

    def __init__(self, scale: int, **kwargs):
        super().__init__(scale, **kwargs)
        self._phases = torch_bicubic_phases(self.scale)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(_upscale_by_phases(x, self._phases, "EDGE"), self.compute_dtype)


@keras.saving.register_keras_serializable(package="zssr_tf")
class PixelShuffle(_Upscaling):
    """Sub-pixel convolution's rearrangement (Shi et al.): [N, h, w, r^2 C] -> [N, r h, r w, C]."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.depth_to_space(x, self.scale)

    def output_channels(self, channels: int | None) -> int | None:
        return None if channels is None else channels // self.scale**2


@keras.saving.register_keras_serializable(package="zssr_tf")
class Interpolate(_Upscaling):
    """MATLAB `imresize` upscaling by an integer factor as a layer, for images of any size.

    For an integer scale every output pixel of phase (i, j) in its scale x scale block takes the same taps of the
    input, so the resize is one convolution with scale^2 output channels over the mirror-padded input (MATLAB's
    border) followed by `depth_to_space`: equal to `imresize(x, scale, kernel=kernel)` (tested), also on inputs
    whose size is only known when the network runs (tiles, the whole image).
    """

    def __init__(self, scale: int, kernel: str = "cubic", **kwargs):
        super().__init__(scale, **kwargs)
        self.kernel = kernel
        self._phases = _upscale_phases(self.scale, kernel)  # [scale, taps]
        self.radius = self._phases.shape[1] // 2

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(_upscale_by_phases(x, self._phases, "SYMMETRIC"), self.compute_dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "kernel": self.kernel}


def _upscale_phases(scale: int, kernel: str) -> np.ndarray:
    """The 1-D taps of MATLAB's upscaling by an integer `scale`: [scale, 2R + 1], row p for output phase p,
    centred on the input pixel the output block belongs to."""
    from zssr_tf.imresize import resize_weights

    length, radius = 32, 4  # long enough that the middle row sees no border; R covers every kernel's support
    weights = resize_weights(length, scale * length, scale, kernel)
    middle = length // 2
    phases = weights[scale * middle:scale * middle + scale, middle - radius:middle + radius + 1]
    np.testing.assert_allclose(phases.sum(axis=1), 1.0, atol=1e-9)  # no tap outside the window
    used = np.flatnonzero(np.any(phases != 0, axis=0))
    r = int(max(radius - used.min(), used.max() - radius))
    return phases[:, radius - r:radius + r + 1]


def _he_conv(filters: int, kernel_size: int, seed: int | None, index: int, dtype_policy: str, name: str,
             strides: int = 1, use_bias: bool = False) -> keras.layers.Conv2D:
    # The DGDML-SR authors' initialisation: N(0, sqrt(2 / (k * k * filters))), biases (where there are) 0.
    std = math.sqrt(2.0 / (kernel_size * kernel_size * filters))
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=use_bias,
        kernel_initializer=keras.initializers.RandomNormal(stddev=std, seed=None if seed is None else seed + index),
        dtype=dtype_policy, name=name)


def upscaling_steps(scale: int) -> list[int]:
    """The sub-pixel steps of an integer scale: x2 steps for powers of two (x4 = two x2, as ESPCN-style SR nets
    do), else one step."""
    if scale < 2:
        raise ValueError(f"the SRN needs an integer scale factor >= 2, got {scale}")
    steps = []
    while scale % 2 == 0 and scale > 1:
        steps.append(2)
        scale //= 2
    return steps + ([scale] if scale > 1 else [])


def build_srn(
    scale: int = 2,
    channels: int = 1,
    depth: int = 10,
    width: int = 64,
    seed: int | None = None,
    dtype_policy: str = "float32",
    name: str = "srn",
) -> keras.Model:
    """DGDML-SR's super-resolution network G^H (the paper's eq. 4): F_in, `depth` 3x3 convolutions with
    LeakyReLU 0.2, sub-pixel convolution (a 3x3 convolution to width * r^2 channels, `depth_to_space` and a PReLU),
    F_out, plus the input upscaled as PyTorch's bicubic (`BicubicUpsample`) as the global residual.

    Args:
      scale: integer scale factor (>= 2).
      channels: image channels in and out (1: DGDML-SR works on the Y channel).
      depth: convolutions between F_in and the sub-pixel step.
      width: channels of the hidden convolutions.
      seed: seed of the initialisers (layer i uses seed + i); None draws fresh weights.
      dtype_policy: Keras dtype policy of the convolutions; input, residual and output are float32.
      name: model name.

    Returns:
      A `keras.Model` mapping [N, h, w, channels] LR images in [0, 1] to [N, scale * h, scale * w, channels]
      (unclipped), with attributes `scale` and `receptive_field_radius` (in input pixels) for tiled prediction.
    """
    if depth < 1 or width < 1 or channels < 1:
        raise ValueError(f"depth, width and channels must be >= 1, got {depth}, {width}, {channels}")
    steps = upscaling_steps(scale)
    lr = keras.Input(shape=(None, None, channels), name="lr")
    x = _he_conv(width, 3, seed, 0, dtype_policy, "f_in")(lr)
    x = keras.layers.LeakyReLU(0.2, dtype=dtype_policy, name="f_in_relu")(x)
    for i in range(depth):
        x = _he_conv(width, 3, seed, 1 + i, dtype_policy, f"f_{i + 1}")(x)
        x = keras.layers.LeakyReLU(0.2, dtype=dtype_policy, name=f"f_{i + 1}_relu")(x)
    for j, r in enumerate(steps):
        # The authors' sub-pixel convolution is their one layer with a bias (PyTorch's default, set to 0).
        x = _he_conv(width * r * r, 3, seed, 1 + depth + j, dtype_policy, f"subpixel_{j}", use_bias=True)(x)
        x = PixelShuffle(r, dtype=dtype_policy, name=f"pixel_shuffle_{j}")(x)
        # One learned slope, starting at 0.25, as the authors' code (PyTorch's nn.PReLU()); the paper is silent.
        x = keras.layers.PReLU(keras.initializers.Constant(0.25), shared_axes=[1, 2, 3], dtype=dtype_policy,
                               name=f"subpixel_{j}_prelu")(x)
    x = _he_conv(channels, 3, seed, 1 + depth + len(steps), dtype_policy, "f_out")(x)
    x = keras.layers.Activation("linear", dtype="float32", name="high_frequencies")(x)
    low = BicubicUpsample(scale, dtype="float32", name="bicubic")(lr)
    model = keras.Model(lr, keras.layers.Add(name="residual", dtype="float32")([x, low]), name=name)
    # An output pixel sees one input pixel per LR convolution, and 2 through the bicubic branch; the convolutions
    # at higher resolution add less than one input pixel each.
    model.scale, model.receptive_field_radius = scale, depth + 2 + len(steps) + 1
    return model


def build_dsn(
    scale: int = 2,
    channels: int = 1,
    depth: int = 5,
    width: int = 64,
    seed: int | None = None,
    dtype_policy: str = "float32",
    name: str = "dsn",
) -> keras.Model:
    """DGDML-SR's degradation simulation network G^L (the paper's eq. 3): F_in, `depth` 3x3 convolutions with
    LeakyReLU 0.2, a learned downsampling (a 3x3 convolution of stride 2, once per factor 2 of the scale), F_out.
    No skip path: the degradation is all learned.

    Args:
      scale: 2 or 4 (a power of two: each step halves).
      other arguments as `build_srn`.

    Returns:
      A `keras.Model` mapping [N, H, W, channels] HR images to [N, H / scale, W / scale, channels] (unclipped).
    """
    steps = upscaling_steps(scale)
    if any(r != 2 for r in steps):
        raise ValueError(f"the DSN downsamples by powers of two (stride-2 steps), not by {scale}")
    hr = keras.Input(shape=(None, None, channels), name="hr")
    x = _he_conv(width, 3, seed, 0, dtype_policy, "f_in")(hr)
    x = keras.layers.LeakyReLU(0.2, dtype=dtype_policy, name="f_in_relu")(x)
    for i in range(depth):
        x = _he_conv(width, 3, seed, 1 + i, dtype_policy, f"f_{i + 1}")(x)
        x = keras.layers.LeakyReLU(0.2, dtype=dtype_policy, name=f"f_{i + 1}_relu")(x)
    for j in range(len(steps)):
        x = _he_conv(width, 3, seed, 1 + depth + j, dtype_policy, f"downsample_{j}", strides=2)(x)
    x = _he_conv(channels, 3, seed, 1 + depth + len(steps), dtype_policy, "f_out")(x)
    return keras.Model(hr, keras.layers.Activation("linear", dtype="float32", name="lr")(x), name=name)


GENERATORS: dict[str, Callable[..., keras.Model]] = {"zssr": build_zssr_generator, "srn": build_srn,
                                                     "dsn": build_dsn, "vdsr": build_vdsr}
