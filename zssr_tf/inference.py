"""Test-time post-processing: back-projection and the geometric self-ensemble with median.

Pure functions on numpy arrays (back-projection computes with TF ops inside); the trained network comes in as a
`forward_pass` callable, so the same code serves every method and any stand-in network in tests.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from zssr_tf.imresize import imresize_tf

Kernel = str | np.ndarray


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) of the 8 rotations/mirrors: rot90 by k for k < 4, then mirrored for k >= 4."""
    rotated = np.rot90(image, k % 4)
    return np.fliplr(rotated) if k >= 4 else rotated


def undo_dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """Inverse of `dihedral(., k)`."""
    if k >= 4:
        image = np.fliplr(image)
    return np.rot90(image, -(k % 4))


def predict_tiled(
    predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile_size: int, margin: int, scale: int = 1
) -> np.ndarray:
    """Runs a fully convolutional network on overlapping tiles, so memory stays bounded on large images.

    Each tile is extended by `margin` pixels of real context on every side and only its centre is kept, so with
    `margin` >= the network's receptive-field radius (depth for 3x3 convolutions) the result equals the untiled
    one up to float rounding.

    Args:
      predict: maps an h x w x C array to an (h * scale) x (w * scale) x C' array (the network).
      image: H x W x C network input.
      tile_size: side of the kept centre of each tile, in input pixels; images no larger run in one piece.
      margin: context pixels (of the input) added on each side of a tile.
      scale: the network's integer upscaling (1 for networks that take an interpolated input).

    Returns:
      (H * scale) x (W * scale) x C' output.
    """
    height, width = image.shape[:2]
    if height <= tile_size and width <= tile_size:
        return predict(image)
    rows = []
    for top in range(0, height, tile_size):
        row = []
        for left in range(0, width, tile_size):
            y0, x0 = max(top - margin, 0), max(left - margin, 0)
            y1, x1 = min(top + tile_size + margin, height), min(left + tile_size + margin, width)
            out = predict(image[y0:y1, x0:x1])
            row.append(out[(top - y0) * scale:(top - y0 + min(tile_size, height - top)) * scale,
                           (left - x0) * scale:(left - x0 + min(tile_size, width - left)) * scale])
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def back_projection(
    y_sr: np.ndarray,
    y_lr: np.ndarray,
    down_kernel: Kernel,
    up_kernel: Kernel,
    scale_factor: Sequence[float],
    iterations: int = 1,
) -> np.ndarray:
    """Back-projection: makes the SR image consistent with the LR image under the downscaling.

    Each iteration is y_sr + up(y_lr - down(y_sr)), clipped to [0, 1]. Both resizes get the scale (geometry) and the
    target shape (pixel count), so odd sizes map exactly. They run as `imresize_tf` in float32: matrix products on
    all cores, about 2x numpy's float64 `imresize` at 2048x2048 on two cores, where the final test of a large
    image spends most of its time (differences ~2e-7).

    Args:
      y_sr: H x W x C super-resolved image in [0, 1].
      y_lr: h x w x C low-resolution image in [0, 1].
      down_kernel: kernel name or numeric kernel that made y_lr from the HR image.
      up_kernel: kernel name for upscaling the LR residual.
      scale_factor: (vertical, horizontal) SR scale factor.
      iterations: back-projection steps (the original's loop around its one-step function).

    Returns:
      A new H x W x C float32 array in [0, 1] (the inputs are not modified).
    """
    sf = np.asarray(scale_factor, dtype=np.float64)
    y_lr = tf.convert_to_tensor(y_lr, tf.float32)
    y = tf.convert_to_tensor(y_sr, tf.float32)
    for _ in range(iterations):
        down = imresize_tf(y, scale_factor=1.0 / sf, output_shape=y_lr.shape[:2], kernel=down_kernel)
        correction = imresize_tf(y_lr - down, scale_factor=sf, output_shape=y.shape[:2], kernel=up_kernel)
        y = tf.clip_by_value(y + correction, 0.0, 1.0)
    return np.array(y)


def final_test(
    forward_pass: Callable[[np.ndarray], np.ndarray],
    lr_image: np.ndarray,
    scale_factor: Sequence[float],
    down_kernel: Kernel = "cubic",
    up_kernel: Kernel = "cubic",
    back_projection_iters: int = 10,
    output_flip: bool = True,
) -> np.ndarray:
    """Geometric self-ensemble with median and back-projection (ZSSR's final test).

    Each of the 8 rotations/mirrors of the input (4 for anisotropic scale factors, whose axes must not swap; 1
    without `output_flip`) is super-resolved, transformed back and back-projected `back_projection_iters` times;
    the pixel-wise median of the outputs is back-projected again.

    Args:
      forward_pass: maps an h x w x C LR image to its H x W x C SR image (the network on the interpolated input,
        clipped to [0, 1]).
      lr_image: h x w x C input in [0, 1].
      scale_factor: (vertical, horizontal) scale factor.
      down_kernel, up_kernel: back-projection kernels (the stage's downscaling kernel, `upscale_method`).
      back_projection_iters: iterations per output and again after the median.
      output_flip: use the self-ensemble.

    Returns:
      float32 H x W x C SR image in [0, 1].
    """
    step = 1 if scale_factor[0] == scale_factor[1] else 2
    transforms = range(0, 8, step) if output_flip else [0]

    def project(y: np.ndarray) -> np.ndarray:
        return back_projection(y, lr_image, down_kernel, up_kernel, scale_factor, back_projection_iters)

    outputs = [project(undo_dihedral(forward_pass(dihedral(lr_image, k)), k)) for k in transforms]
    return project(np.median(outputs, axis=0)).astype(np.float32)
