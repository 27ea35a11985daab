"""HR-father sampling: ZSSR's `random_augment`, with randomness drawn only from an explicit `np.random.Generator`.

This module owns how one hr_father crop is drawn from the hr_fathers_sources (the input image and the outputs of
earlier gradual stages): the choice of mode, source image and geometric transform, and the cubic warp into a
crop_size x crop_size father. Making the lr_son from the father is not done here.

Two deliberate deviations from the original (listed in WORKSPACE.md):
  (a) the crop is drawn inside the bounding box of the transformed image, so scaled-down fathers are no longer
      largely black (the original drew the offset in [0, scale * W - crop) while scaling about the image centre);
  (b) rotations and mirrors are about the pixel-centre centre ((W - 1) / 2, (H - 1) / 2), and the non-interpolating
      modes use integer translations, so their fathers are exact copies / dihedral permutations of input pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

AUGMENT_MODES = ("leave_as_is", "no_interp", "affine")

# Scale-difference draws of N(0, 0.25) can make `scale -/+ diff / 2` <= 0 (an inverted or degenerate warp); the
# original did not guard this. Deviation: clamp each axis scale to at least this value.
_MIN_AXIS_SCALE = 0.05


class _Transform(NamedTuple):
    mode: str  # one of AUGMENT_MODES
    source_index: int  # index into ims
    scale: float  # the drawn scale, before division by the source's base scale
    matrix: np.ndarray  # (3, 3) float64, maps source (x, y, 1) pixel coordinates to father coordinates


def draw_transform(
    shapes: Sequence[tuple[int, int]],
    base_scales: Sequence[float | Sequence[float]],
    rng: np.random.Generator,
    *,
    leave_as_is_probability: float = 0.05,
    no_interpolate_probability: float = 0.45,
    min_scale: float = 0.5,
    max_scale: float | Sequence[float] = 1.0,
    allow_rotation: bool = True,
    scale_diff_sigma: float = 0.25,
    shear_sigma: float = 0.1,
    crop_size: int = 128,
) -> _Transform:
    """Draws the mode, source and warp of one father; cheap (no pixels touched). See `random_augment`."""
    if len(base_scales) < len(shapes):
        raise ValueError(f"got {len(base_scales)} base scales for {len(shapes)} images")
    r = rng.random()
    if r < leave_as_is_probability:
        mode = "leave_as_is"
    elif r < leave_as_is_probability + no_interpolate_probability:
        mode = "no_interp"
    else:
        mode = "affine"
    affine = mode == "affine"
    # In no_interp the scale is drawn too (as in the original) but only picks the source.
    drawn = 1.0 if mode == "leave_as_is" else float(rng.uniform(min_scale, np.min(max_scale)))
    # The original passes one base scale per possible stage; only those of existing images count.
    mins = [float(np.min(b)) for b in base_scales[: len(shapes)]]
    index = next((i for i, b in enumerate(mins) if b > drawn - 1e-6), len(shapes) - 1)
    scale = drawn / mins[index] if affine else 1.0
    diff = rng.normal(0.0, scale_diff_sigma) if affine else 0.0
    sx, sy = max(scale + diff / 2, _MIN_AXIS_SCALE), max(scale - diff / 2, _MIN_AXIS_SCALE)
    reflect = -1.0 if mode != "leave_as_is" and allow_rotation and rng.random() < 0.5 else 1.0
    theta = 0.0
    if allow_rotation and affine:
        theta = rng.uniform(0.0, 2 * np.pi)
    elif allow_rotation and mode == "no_interp":
        theta = rng.integers(4) * np.pi / 2
    shx, shy = rng.normal(0.0, shear_sigma, size=2) if affine else (0.0, 0.0)
    shear = np.array([[1.0, shx], [shy, 1.0]])
    rotation = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    linear = shear @ rotation @ np.diag([reflect * sx, sy])
    if not affine:
        linear = np.round(linear)  # a signed permutation; drop cos/sin rounding noise so pixels map exactly
    # Fix (b): centre on pixel centres so 90-degree rotations and mirrors map the pixel grid onto itself.
    h, w = shapes[index]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    corners = (np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]) - centre) @ linear.T
    box_min = corners.min(axis=0)
    spare = np.maximum(corners.max(axis=0) - box_min + 1 - crop_size, 0.0)  # box size in pixels minus the crop
    u = rng.random(2)
    # Fix (a): the crop's top-left is uniform inside the transformed image's bounding box (at its top-left, zero
    # padded right/bottom, when the image is smaller than the crop). Non-interpolating modes take one of the
    # `spare + 1` integer positions so the father is an exact copy of input pixels.
    offset = box_min + (u * spare if affine else np.minimum(np.floor(u * (spare + 1)), spare))
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = -linear @ centre - offset
    return _Transform(mode, index, drawn, matrix)


def random_augment(
    ims: Sequence[np.ndarray],
    base_scales: Sequence[float | Sequence[float]],
    rng: np.random.Generator,
    *,
    leave_as_is_probability: float = 0.05,
    no_interpolate_probability: float = 0.45,
    min_scale: float = 0.5,
    max_scale: float | Sequence[float] = 1.0,
    allow_rotation: bool = True,
    scale_diff_sigma: float = 0.25,
    shear_sigma: float = 0.1,
    crop_size: int = 128,
) -> np.ndarray:
    """Draws one HR father from the father sources (the original's `random_augment`).

    Mode: 'leave_as_is' (probability `leave_as_is_probability`) is an integer crop of the input; 'no_interp'
    (`no_interpolate_probability`) an integer crop of one of the 8 rotations/mirrors of the chosen source;
    'affine' (the rest) a cubic warp with random scale in [min_scale, max_scale] (relative to the source's base
    scale), scale difference between the axes, mirror, rotation and shear. The source is the first image whose
    base scale is >= the drawn scale.

    Args:
      ims: the hr_fathers_sources, each float of shape (H_i, W_i, C) with values in [0, 1], C in {1, 3}.
      base_scales: each image's scale relative to the input, a scalar or a (vertical, horizontal) pair (a pair counts
        by its minimum); at least len(ims) entries, extra ones are ignored.
      rng: the only source of randomness.
      leave_as_is_probability: probability of the 'leave_as_is' mode.
      no_interpolate_probability: probability of the 'no_interp' mode.
      min_scale: lower bound of the scale draw.
      max_scale: upper bound of the scale draw; a pair counts by its minimum.
      allow_rotation: whether mirrors and rotations are drawn.
      scale_diff_sigma: std of the difference between the horizontal and vertical scales (affine mode).
      shear_sigma: std of each shear coefficient (affine mode).
      crop_size: side of the father in pixels.

    Returns:
      float32 array of shape (crop_size, crop_size, C), values in [0, 1]; pixels outside the source are 0.

    Raises:
      ValueError: if there are fewer base scales than images.
    """
    transform = draw_transform(
        [im.shape[:2] for im in ims], base_scales, rng,
        leave_as_is_probability=leave_as_is_probability, no_interpolate_probability=no_interpolate_probability,
        min_scale=min_scale, max_scale=max_scale, allow_rotation=allow_rotation, scale_diff_sigma=scale_diff_sigma,
        shear_sigma=shear_sigma, crop_size=crop_size,
    )  # fmt: skip
    im = np.ascontiguousarray(ims[transform.source_index], dtype=np.float32)
    father = cv2.warpPerspective(
        im, transform.matrix, (crop_size, crop_size), flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    # cv2 drops a singleton channel axis; restore the input's channel layout.
    return np.clip(father.reshape((crop_size, crop_size) + im.shape[2:]), 0.0, 1.0)
