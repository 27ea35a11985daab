"""MATLAB-compatible image resizing: the numpy reference `imresize` and its TF port `imresize_tf`.

This module owns every resize in ZSSR: making LR sons from HR fathers, the bicubic upscale that the network refines,
and both directions of back-projection. It re-implements the algorithm MATLAB documents for `imresize`
(separable kernels, 1-based centre mapping, kernel stretching for antialiased downscaling, mirror boundaries) and
ZSSR's numeric-kernel path (correlate with an estimated blur kernel, then subsample).

Deliberate deviations from the original TF1 port (all towards MATLAB):
  * mirror boundaries on both sides (the original dropped left/top taps through a uint64 wrap);
  * antialiasing decided per dimension (the original used the first dimension for both);
  * a dimension with scale 1 but a different requested size is resized (the original skipped it);
  * numeric kernels work for any number of channels (the original needed exactly 3).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    import tensorflow as tf

ScaleFactor = float | Sequence[float] | None
Shape = Sequence[int] | None

# MATLAB's `eps` is the float64 machine epsilon; it makes lanczos(0) == 1 without a 0/0.
_EPS = np.finfo(np.float64).eps


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution with a = -0.5, as MATLAB's 'bicubic'.
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((1 < ax) & (ax <= 2))


def _lanczos(a: int) -> Callable[[np.ndarray], np.ndarray]:
    def kernel(x: np.ndarray) -> np.ndarray:
        num = np.sin(np.pi * x) * np.sin(np.pi * x / a) + _EPS
        return num / (np.pi**2 * x**2 / a + _EPS) * (np.abs(x) < a)

    return kernel


def _box(x: np.ndarray) -> np.ndarray:
    # Half-open so that a sample exactly between two pixels takes exactly one of them.
    return ((-0.5 <= x) & (x < 0.5)).astype(np.float64)


def _linear(x: np.ndarray) -> np.ndarray:
    return (x + 1) * ((-1 <= x) & (x < 0)) + (1 - x) * ((0 <= x) & (x <= 1))


# name -> (kernel function, support width in input pixels), MATLAB's table.
_KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "cubic": (_cubic, 4.0),
    "lanczos2": (_lanczos(2), 4.0),
    "lanczos3": (_lanczos(3), 6.0),
    "box": (_box, 1.0),
    "linear": (_linear, 2.0),
}
KERNEL_NAMES = tuple(_KERNELS)


def support_radius(kernel: str | np.ndarray, scale: float) -> int:
    """How far (in input pixels) an output pixel of a resize by `scale` reaches on each side: what a tile of an
    image needs around it to be resized as in one piece."""
    if isinstance(kernel, np.ndarray):
        return max(kernel.shape) // 2 + 1
    width = _KERNELS[kernel][1]
    return int(math.ceil(width / 2 / min(scale, 1.0))) + 1


def _check_kernel(kernel: str | np.ndarray) -> None:
    if isinstance(kernel, np.ndarray):
        if kernel.ndim != 2 or kernel.size == 0:
            raise ValueError(f"A numeric kernel must be a non-empty 2-D array, got shape {kernel.shape}.")
    elif not (isinstance(kernel, str) and kernel in _KERNELS):
        raise ValueError(f"Unknown kernel {kernel!r}; valid names: {', '.join(KERNEL_NAMES)} (or a 2-D np.ndarray).")


def fix_scale_and_shape(
    in_shape: Sequence[int | None], scale_factor: ScaleFactor = None, output_shape: Shape = None
) -> tuple[tuple[float, float], tuple[int, int]]:
    """Completes a (scale, output size) pair for the two spatial dimensions.

    Args:
      in_shape: (H, W) or (H, W, C) of the input (a trailing None channel count is allowed).
      scale_factor: scalar or (vertical, horizontal) pair, > 0; None derives it as out / in.
      output_shape: (H, W) or (H, W, C); None derives it as ceil(in * scale). When both are given the scale sets the
        sampling geometry and the shape only the number of output pixels (ZSSR's way back to an odd-sized father).

    Returns:
      ((scale_h, scale_w), (out_h, out_w)).

    Raises:
      ValueError: if neither argument is given, shapes are malformed, or a scale/size is not positive.
    """
    if scale_factor is None and output_shape is None:
        raise ValueError("imresize needs scale_factor, output_shape or both.")
    if len(in_shape) not in (2, 3):
        raise ValueError(f"Expected an (H, W) or (H, W, C) input shape, got {tuple(in_shape)}.")
    in_hw = (int(in_shape[0]), int(in_shape[1]))
    out_hw = None
    if output_shape is not None:
        if len(output_shape) not in (2, 3) or min(output_shape[:2]) < 1:
            raise ValueError(f"output_shape must be a positive (H, W) or (H, W, C), got {tuple(output_shape)}.")
        if len(output_shape) == 3 and len(in_shape) == 3 and in_shape[2] not in (None, output_shape[2]):
            raise ValueError(f"Channels are never resized: input {tuple(in_shape)}, output {tuple(output_shape)}.")
        out_hw = (int(output_shape[0]), int(output_shape[1]))
    if scale_factor is None:
        scales = (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    else:
        sf = np.asarray(scale_factor, dtype=np.float64).reshape(-1)
        if sf.size not in (1, 2) or np.any(sf <= 0):
            raise ValueError(f"scale_factor must be a positive scalar or pair, got {scale_factor!r}.")
        scales = (float(sf[0]), float(sf[-1]))
    if out_hw is None:
        # Rounding first keeps products such as 3 * (1/3) from gaining a pixel through float fuzz.
        out_hw = tuple(int(math.ceil(round(n * s, 9))) for n, s in zip(in_hw, scales))
    return scales, out_hw


@functools.lru_cache(maxsize=256)
def _contributions(
    in_len: int, out_len: int, scale: float, kernel: str, antialiasing: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse taps of one dimension: weights (out_len, P) and 0-based input indices (out_len, P), read-only."""
    func, width = _KERNELS[kernel]
    if antialiasing and scale < 1:
        # Stretching the kernel by 1/scale low-passes the input before it is subsampled.
        def h(x: np.ndarray) -> np.ndarray:
            return scale * func(scale * x)

        width = width / scale
    else:
        h = func
    x = np.arange(1, out_len + 1, dtype=np.float64)
    # Output pixel x (1-based) is centred on input coordinate u: pixel areas, not pixel corners, are aligned.
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)
    weights = h(u[:, None] - idx)
    sums = weights.sum(axis=1, keepdims=True)
    weights = weights / np.where(sums == 0, 1, sums)
    # Whole-sample symmetric extension on both sides: 1..n, n..1, repeated.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    weights, idx = weights[:, keep], idx[:, keep]
    weights.flags.writeable = False
    idx.flags.writeable = False
    return weights, idx


@functools.lru_cache(maxsize=256)
def _dense_weights(in_len: int, out_len: int, scale: float, kernel: str, antialiasing: bool) -> np.ndarray:
    weights, idx = _contributions(in_len, out_len, scale, kernel, antialiasing)
    dense = np.zeros((out_len, in_len))
    # Several taps can mirror onto the same input pixel, so accumulate rather than assign.
    np.add.at(dense, (np.arange(out_len)[:, None], idx), weights)
    dense.flags.writeable = False
    return dense


def resize_weights(
    in_len: int, out_len: int, scale: float, kernel: str = "cubic", antialiasing: bool = True
) -> np.ndarray:
    """Dense matrix of a 1-D MATLAB resize: `out = W @ in`.

    Args:
      in_len: input length (pixels).
      out_len: output length (pixels).
      scale: sampling scale (out / in unless a size was forced), > 0.
      kernel: one of KERNEL_NAMES.
      antialiasing: stretch the kernel when scale < 1.

    Returns:
      Read-only float64 array of shape (out_len, in_len); every row sums to 1.

    Raises:
      ValueError: for an unknown kernel name.
    """
    _check_kernel(kernel)
    return _dense_weights(int(in_len), int(out_len), float(scale), kernel, bool(antialiasing))


def _resize_along_dim(im: np.ndarray, dim: int, weights: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # Gather-multiply-add over the P taps: O(out * P) per line instead of a dense O(out * in) matmul.
    shape = list(im.shape)
    shape[dim] = idx.shape[0]
    bcast = [1] * im.ndim
    bcast[dim] = -1
    out = np.zeros(shape)
    for p in range(idx.shape[1]):
        out += np.take(im, idx[:, p], axis=dim) * weights[:, p].reshape(bcast)
    return out


def _subsample_indices(in_len: int, out_len: int, scale: float) -> np.ndarray:
    # ZSSR's sampling grid for numeric kernels: evenly spread, first pixel kept.
    return np.round(np.linspace(0, in_len - 1 / scale, out_len)).astype(np.int64)


def _check_downscale(scales: tuple[float, float]) -> None:
    if max(scales) > 1:
        raise ValueError(f"numeric kernels only downscale (every scale must be <= 1), got {scales}.")


def imresize(
    im: np.ndarray,
    scale_factor: ScaleFactor = None,
    output_shape: Shape = None,
    kernel: str | np.ndarray = "cubic",
    antialiasing: bool = True,
) -> np.ndarray:
    """Resizes an image like MATLAB's `imresize` (numpy ground truth).

    Args:
      im: (H, W) or (H, W, C) array of any numeric dtype and range; not modified.
      scale_factor: scalar or (vertical, horizontal) pair; see `fix_scale_and_shape`.
      output_shape: (H, W) or (H, W, C); channels are never resized.
      kernel: a name in KERNEL_NAMES, or a 2-D np.ndarray blur kernel (downscaling only) that is correlated with
        each channel (half-sample symmetric boundary) before subsampling.
      antialiasing: for named kernels, stretch the kernel along each dimension whose scale is < 1.

    Returns:
      float64 array of shape (out_h, out_w) or (out_h, out_w, C), not clipped.

    Raises:
      ValueError: unknown kernel, numeric kernel with a scale > 1, bad shapes, or no scale and no shape.
    """
    im = np.asarray(im)
    if im.ndim not in (2, 3):
        raise ValueError(f"Expected an (H, W) or (H, W, C) image, got shape {im.shape}.")
    _check_kernel(kernel)
    scales, out_hw = fix_scale_and_shape(im.shape, scale_factor, output_shape)
    out = im.astype(np.float64)  # always a copy, so the input is never aliased
    if isinstance(kernel, np.ndarray):
        _check_downscale(scales)
        k = kernel.astype(np.float64)
        filtered = ndimage.correlate(out, k if out.ndim == 2 else k[:, :, None], mode="reflect")
        rows = _subsample_indices(out.shape[0], out_hw[0], scales[0])
        cols = _subsample_indices(out.shape[1], out_hw[1], scales[1])
        return filtered[rows[:, None], cols]
    # MATLAB resizes the most reduced dimension first, which keeps the intermediate image small.
    for dim in np.argsort(scales, kind="stable"):
        if scales[dim] == 1 and out_hw[dim] == out.shape[dim]:
            continue
        # The tap loop is single-threaded numpy on purpose: a BLAS matmul with the dense weights is faster alone,
        # but BLAS threads in the example pipeline fight the train step for the cores (measured: 30 -> 50 ms per
        # iteration on 2 cores).
        weights, idx = _contributions(out.shape[dim], out_hw[dim], scales[dim], kernel, bool(antialiasing))
        out = _resize_along_dim(out, int(dim), weights, idx)
    return out


def _take(x: tf.Tensor, idx: np.ndarray, axis: int) -> tf.Tensor:
    import tensorflow as tf  # here, not at the top: numpy users of imresize need no TensorFlow
    steps = np.diff(idx)
    if idx.size == 1 or (steps[0] > 0 and np.all(steps == steps[0])):
        step = int(steps[0]) if idx.size > 1 else 1
        return x[(slice(None),) * axis + (slice(int(idx[0]), int(idx[-1]) + 1, step),)]
    return tf.gather(x, idx, axis=axis)


def _pad_symmetric(x: tf.Tensor, pads: list[list[int]]) -> tf.Tensor:
    """Pads H and W of an NHWC tensor like scipy's 'reflect' (edge pixel repeated); the split of each pair puts
    the kernel's origin where scipy puts it. tf.pad's SYMMETRIC allows pads up to the size only, so larger pads (a
    big kernel on a tiny image) repeat it: mirroring the mirrored edge continues scipy's periodic extension."""
    import tensorflow as tf
    remaining = [list(p) for p in pads]
    while any(max(p) > 0 for p in remaining):
        step = [[min(p, size) for p in pair] for pair, size in zip(remaining, x.shape[1:3])]
        x = tf.pad(x, [[0, 0], step[0], step[1], [0, 0]], mode="SYMMETRIC")
        remaining = [[p - q for p, q in zip(pair, s)] for pair, s in zip(remaining, step)]
    return x


def imresize_tf(
    images: tf.Tensor,
    scale_factor: ScaleFactor = None,
    output_shape: Shape = None,
    kernel: str | np.ndarray = "cubic",
    antialiasing: bool = True,
) -> tf.Tensor:
    """TF port of `imresize` with the same semantics; usable inside `tf.function` and `tf.data`.

    Args:
      images: [H, W, C] or [N, H, W, C] tensor with static H and W; float16/32/64 keep their dtype, other dtypes
        are cast to float32.
      scale_factor: as in `imresize`.
      output_shape: as in `imresize`.
      kernel: as in `imresize`.
      antialiasing: as in `imresize`.

    Returns:
      [out_h, out_w, C] or [N, out_h, out_w, C] tensor in the computation dtype, not clipped.

    Raises:
      ValueError: as `imresize`, or for an unknown rank / dynamic H, W.
    """
    import tensorflow as tf
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        images = tf.cast(images, tf.float32)
    rank = images.shape.rank
    if rank not in (3, 4) or None in images.shape[-3:-1]:
        raise ValueError(f"Expected [H, W, C] or [N, H, W, C] with static H, W, got {images.shape}.")
    _check_kernel(kernel)
    in_hw = tuple(images.shape[-3:-1])
    scales, out_hw = fix_scale_and_shape(tuple(images.shape[-3:]), scale_factor, output_shape)
    np_dtype = images.dtype.as_numpy_dtype
    x = images if rank == 4 else images[None]

    if isinstance(kernel, np.ndarray):
        _check_downscale(scales)
        kh, kw = kernel.shape
        pads = [[kh // 2, kh - 1 - kh // 2], [kw // 2, kw - 1 - kw // 2]]
        x = _pad_symmetric(x, pads)
        channels = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
        filt = tf.tile(tf.constant(kernel.astype(np_dtype))[:, :, None, None], [1, 1, channels, 1])
        x = tf.nn.depthwise_conv2d(x, filt, strides=[1, 1, 1, 1], padding="VALID")
        x = _take(x, _subsample_indices(in_hw[0], out_hw[0], scales[0]), axis=1)
        x = _take(x, _subsample_indices(in_hw[1], out_hw[1], scales[1]), axis=2)
    else:
        # Each 1-D resize is a dense linear map; two einsums apply them (their order does not matter).
        if not (scales[0] == 1 and out_hw[0] == in_hw[0]):
            w_rows = resize_weights(in_hw[0], out_hw[0], scales[0], kernel, antialiasing)
            x = tf.einsum("oh,nhwc->nowc", tf.constant(w_rows.astype(np_dtype)), x)
        if not (scales[1] == 1 and out_hw[1] == in_hw[1]):
            w_cols = resize_weights(in_hw[1], out_hw[1], scales[1], kernel, antialiasing)
            x = tf.einsum("ow,nhwc->nhoc", tf.constant(w_cols.astype(np_dtype)), x)
    return x if rank == 4 else x[0]
