"""Test-time post-processing: back-projection and the geometric self-ensemble with median.

Pure functions on numpy arrays (back-projection computes with TF ops inside); the trained network comes in as a
`forward_pass` callable, so the same code serves every method and any stand-in network in tests.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from zssr_tf.imresize import fix_scale_and_shape, imresize_tf, support_radius

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
    tile_size: int = 0,
    network_margin: int = 0,
) -> np.ndarray:
    """Geometric self-ensemble with median and back-projection (ZSSR's final test).

    Each of the 8 rotations/mirrors of the input (4 for anisotropic scale factors, whose axes must not swap; 1
    without `output_flip`) is super-resolved, transformed back and back-projected `back_projection_iters` times;
    the pixel-wise median of the outputs is back-projected again.

    With `tile_size`, an output larger than it is made in tiles of about that side, each through all of the above
    with the margin every part needs (the network's, then the back-projections'), so that memory is bounded by the
    tiles (and two output-sized arrays: the median and the result) and the result is the one-piece result up to
    float rounding. Scale factors whose pixel grids never line up on small periods (not p/q with q <= 64; with a
    numeric kernel, not integers) are done in one piece.

    Args:
      forward_pass: maps an h x w x C LR image to its H x W x C SR image (the network on the interpolated input,
        clipped to [0, 1]).
      lr_image: h x w x C input in [0, 1].
      scale_factor: (vertical, horizontal) scale factor.
      down_kernel, up_kernel: back-projection kernels (the stage's downscaling kernel, `upscale_method`).
      back_projection_iters: iterations per output and again after the median.
      output_flip: use the self-ensemble.
      tile_size: side of the output tiles (0: one piece).
      network_margin: how far (in LR pixels) an output pixel of `forward_pass` depends on its input.

    Returns:
      float32 H x W x C SR image in [0, 1].
    """
    step = 1 if scale_factor[0] == scale_factor[1] else 2
    transforms = range(0, 8, step) if output_flip else [0]
    grids = _tile_grids(lr_image.shape, scale_factor, down_kernel, up_kernel, back_projection_iters, tile_size)
    if grids is None:
        hr_shape = fix_scale_and_shape(lr_image.shape, scale_factor)[1]
        if tile_size and max(hr_shape) > tile_size:
            logging.warning("final test of %dx%d in one piece: the pixel grids of scale factor %s do not line up "
                            "on a small period%s, so it cannot be tiled (memory grows with the output)",
                            *hr_shape, "x".join(f"{s:g}" for s in scale_factor),
                            " (with a numeric kernel: not whole numbers)" if isinstance(down_kernel, np.ndarray)
                            else "")

        def project(y: np.ndarray) -> np.ndarray:
            return back_projection(y, lr_image, down_kernel, up_kernel, scale_factor, back_projection_iters)

        outputs = [project(undo_dihedral(forward_pass(dihedral(lr_image, k)), k)) for k in transforms]
        return project(np.median(outputs, axis=0)).astype(np.float32)

    rows, cols = grids
    shape = (rows.hr_len, cols.hr_len, lr_image.shape[2])

    def projected(y: np.ndarray, lr: tuple[slice, slice], keep: tuple[slice, slice]) -> np.ndarray:
        return back_projection(y, lr_image[lr], down_kernel, up_kernel, scale_factor, back_projection_iters)[keep]

    # Pass 1: the median of the back-projected outputs, tile by tile; pass 2: its back-projection.
    median = np.empty(shape, np.float32)
    for tile in _tiles(rows, cols):
        region, lr, keep = _around(rows, cols, tile)
        outputs = [projected(_network_region(forward_pass, lr_image, k, region, scale_factor, network_margin), lr,
                             keep) for k in transforms]
        median[_hr_slices(rows, cols, tile)] = np.median(outputs, axis=0)
    result = np.empty(shape, np.float32)
    for tile in _tiles(rows, cols):
        region, lr, keep = _around(rows, cols, tile)
        result[_hr_slices(rows, cols, tile)] = projected(median[region], lr, keep)
    return result


@dataclasses.dataclass(frozen=True)
class _Grid:
    """One axis of a tiled final test: LR offsets that are multiples of `period` map to whole HR pixels."""

    lr_len: int
    hr_len: int
    scale: float
    period: int  # LR pixels
    tile: int  # LR pixels, a multiple of period
    margin: int  # LR pixels the back-projections of one pass need around a tile, a multiple of period

    def hr(self, lr_offset: int) -> int:
        return self.hr_len if lr_offset >= self.lr_len else round(lr_offset * self.scale)

    def expand(self, start: int, stop: int, margin: int) -> tuple[int, int]:
        """[start, stop) grown by `margin` LR pixels, on the period's grid, within the image."""
        low = max(0, (start - margin) // self.period * self.period)
        return low, min(self.lr_len, -(-(stop + margin) // self.period) * self.period)


def grid_period(scale: float, integer: bool = False) -> int | None:
    """The smallest LR offset whose HR offset is whole (None if there is no small one; with `integer`, unless the
    scale is an integer)."""
    fraction = Fraction(scale).limit_denominator(64)
    if abs(float(fraction) - scale) > 1e-9 or (integer and fraction.denominator != 1):
        return None
    return fraction.denominator


def _tile_grids(lr_shape: Sequence[int], scale_factor: Sequence[float], down_kernel: Kernel, up_kernel: Kernel,
                iterations: int, tile_size: int) -> tuple[_Grid, _Grid] | None:
    """The two axes' grids of a tiled final test, or None for one piece (small, or grids that never line up)."""
    _, hr_shape = fix_scale_and_shape(lr_shape, scale_factor)
    if not tile_size or max(hr_shape) <= tile_size:
        return None
    grids = []
    for lr_len, hr_len, scale in zip(lr_shape[:2], hr_shape, scale_factor):
        # A numeric kernel's subsampling grid is spread over the whole image unless the scale is an integer.
        period = grid_period(float(scale), integer=isinstance(down_kernel, np.ndarray))
        if period is None:
            return None
        # One back-projection step reaches the downscale's support (HR pixels) plus the upscale's (LR pixels).
        reach = support_radius(down_kernel, 1 / scale) / scale + support_radius(up_kernel, scale) + 1
        margin = -(-math.ceil(iterations * reach) // period) * period
        tile = max(period, round(tile_size / scale / period) * period)
        grids.append(_Grid(lr_len, hr_len, float(scale), period, tile, margin))
    return grids[0], grids[1]


def _tiles(rows: _Grid, cols: _Grid) -> Iterator[tuple[int, int, int, int]]:
    """LR rectangles (top, bottom, left, right) that cover the image."""
    for top in range(0, rows.lr_len, rows.tile):
        for left in range(0, cols.lr_len, cols.tile):
            yield top, min(top + rows.tile, rows.lr_len), left, min(left + cols.tile, cols.lr_len)


def _hr_slices(rows: _Grid, cols: _Grid, tile: tuple[int, int, int, int]) -> tuple[slice, slice]:
    top, bottom, left, right = tile
    return slice(rows.hr(top), rows.hr(bottom)), slice(cols.hr(left), cols.hr(right))


def _around(rows: _Grid, cols: _Grid, tile: tuple[int, int, int, int]
            ) -> tuple[tuple[slice, slice], tuple[slice, slice], tuple[slice, slice]]:
    """The HR and LR slices of a tile grown by the back-projections' margins, and the tile's own HR part within
    the grown one."""
    top, bottom, left, right = tile
    (y0, y1), (x0, x1) = rows.expand(top, bottom, rows.margin), cols.expand(left, right, cols.margin)
    region = _hr_slices(rows, cols, (y0, y1, x0, x1))
    keep = (slice(rows.hr(top) - rows.hr(y0), rows.hr(bottom) - rows.hr(y0)),
            slice(cols.hr(left) - cols.hr(x0), cols.hr(right) - cols.hr(x0)))
    return region, (slice(y0, y1), slice(x0, x1)), keep


def _dihedral_rect(rect: tuple[int, int, int, int], shape: tuple[int, int], k: int
                   ) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Where a rectangle (top, bottom, left, right) of an array of `shape` is in `dihedral(array, k)`, and that
    array's shape."""
    (top, bottom, left, right), (height, width) = rect, shape
    for _ in range(k % 4):  # np.rot90: (y, x) -> (width - 1 - x, y)
        (top, bottom, left, right), (height, width) = (width - right, width - left, top, bottom), (width, height)
    if k >= 4:  # np.fliplr: (y, x) -> (y, width - 1 - x)
        left, right = width - right, width - left
    return (top, bottom, left, right), (height, width)


def _network_region(forward_pass: Callable[[np.ndarray], np.ndarray], lr_image: np.ndarray, k: int,
                    region: tuple[slice, slice], scale_factor: Sequence[float], margin: int) -> np.ndarray:
    """`undo_dihedral(forward_pass(dihedral(lr_image, k)), k)[region]`, from a crop of the input: the crop is
    taken in the transformed image, so that it is interpolated on the grid the whole transformed image has."""
    _, hr_shape = fix_scale_and_shape(lr_image.shape, scale_factor)
    rect = (region[0].start, region[0].stop, region[1].start, region[1].stop)
    (top, bottom, left, right), _ = _dihedral_rect(rect, hr_shape, k)
    image = dihedral(lr_image, k)
    crop = []  # (odd k, which swaps the axes, comes only with equal scale factors)
    for start, stop, scale, length in ((top, bottom, scale_factor[0], image.shape[0]),
                                       (left, right, scale_factor[1], image.shape[1])):
        period = grid_period(float(scale))
        low = max(0, (math.floor(start / scale) - margin) // period * period)
        crop.append((low, min(length, math.ceil(stop / scale) + margin), round(low * scale)))
    (y0, y1, oy), (x0, x1, ox) = crop
    out = forward_pass(np.ascontiguousarray(image[y0:y1, x0:x1]))
    return undo_dihedral(out[top - oy:bottom - oy, left - ox:right - ox], k)
