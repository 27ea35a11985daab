"""DGDML-SR's training data: patches of the test image itself, chosen by depth (the paper's 3.1).

Patches lie on a grid whose stride is half a patch. Low-contrast patches are dropped: the contrast is the 99th
minus the 1st percentile of the luminance (in [0, 1], i.e. the paper's (Y_max - Y_min) / 255). With a depth map,
HR patches (scale x the LR side) are those whose mean depth is below the image's mean depth (near: objects look
larger, sharper) and LR patches those above it (far); unknown depths are left out of every mean. Without depth
guidance (the paper's ablation "None") every patch that passes the contrast filter may be HR or LR. The two sets
are unpaired; `bicubic_patches` makes ZSSR-style pairs instead (HR crops and their downscaled sons).

The patches, in their 8 rotations and mirrors, are indexed by a `tf.data` pipeline of index batches that
reshuffles every epoch; the train step gathers and transforms them on the accelerator (`gather_patches`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from zssr_tf.color import luminance
from zssr_tf.data import father_to_son

NUM_TRANSFORMS = 8  # rotations by 90 degrees, each as is and mirrored


@dataclasses.dataclass(frozen=True)
class PatchCollection:
    """The training patches of one image (single-channel planes, float32 in [0, 1])."""

    hr: np.ndarray  # [N_hr, S, S, 1]
    lr: np.ndarray  # [N_lr, s, s, 1]; with `paired`, lr[i] is hr[i]'s son
    paired: bool
    counts: dict[str, Any]  # what was found and kept, for the log and log.json
    # Each patch's mean inverse depth (1 / depth, i.e. nearness), with a depth map: the authors' per-batch
    # learning-rate scale uses them.
    hr_inverse_depth: np.ndarray | None = None  # [N_hr]
    lr_inverse_depth: np.ndarray | None = None  # [N_lr]

    @property
    def epoch_size(self) -> int:
        """Examples per epoch: one pass over the smaller side, in all its rotations and mirrors."""
        return NUM_TRANSFORMS * min(len(self.hr), len(self.lr))


def grid_windows(plane: np.ndarray, size: int) -> np.ndarray:
    """The size x size windows of an H x W plane on a grid of stride size // 2, [N, size, size] (views)."""
    stride = max(size // 2, 1)
    windows = np.lib.stride_tricks.sliding_window_view(plane, (size, size))[::stride, ::stride]
    return windows.reshape(-1, size, size)


def patch_contrast(windows: np.ndarray) -> np.ndarray:
    """[N, s, s] luminance windows in [0, 1] -> [N] contrasts: the 99th minus the 1st percentile."""
    flat = windows.reshape(len(windows), -1)
    low, high = np.percentile(flat, [1, 99], axis=1)
    return high - low


def patch_mean_depth(windows: np.ndarray) -> np.ndarray:
    """[N, s, s] depth windows (NaN unknown) -> [N] means of the known depths (NaN where none is known)."""
    flat = windows.reshape(len(windows), -1)
    known = np.isfinite(flat)
    sums = np.where(known, flat, 0.0).sum(axis=1)
    counts = known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def collect_patches(
    image: np.ndarray,
    scale: int,
    lr_size: int,
    min_contrast: float,
    depth: np.ndarray | None,
    contrast_luminance: str = "ycbcr",
) -> PatchCollection:
    """The unpaired HR/LR patch sets of an image.

    Args:
      image: H x W x C in [0, 1] (RGB or one channel).
      scale: integer scale factor: HR patches are `scale * lr_size` on a side.
      lr_size: side of the LR patches.
      min_contrast: patches of lower contrast are dropped.
      depth: H x W depth (larger = farther, NaN unknown), or None for the ablation "None" (no depth guidance).
      contrast_luminance: `ycbcr` (the paper) or `rgb2gray` (the authors' code) for the contrast filter.

    Returns:
      The collection; the patches are of the BT.601 Y channel (the plane itself for one-channel images).

    Raises:
      ValueError: the image is smaller than an HR patch, or one side has no patch (one line saying why).
    """
    hr_size = scale * lr_size
    height, width = image.shape[:2]
    if min(height, width) < hr_size:
        raise ValueError(f"input: {height}x{width} is smaller than DGDML's HR patches ({hr_size}x{hr_size} at "
                         f"x{scale}); lower dgdml_lr_patch_size")
    y = luminance(image, "ycbcr")
    contrast_plane = y if contrast_luminance == "ycbcr" else luminance(image, contrast_luminance)
    counts: dict[str, Any] = {"hr_size": hr_size, "lr_size": lr_size, "depth_guided": depth is not None}
    sides = {}
    for side, size in (("hr", hr_size), ("lr", lr_size)):
        keep = patch_contrast(grid_windows(contrast_plane, size)) >= min_contrast
        counts[f"{side}_grid"] = int(keep.size)
        counts[f"{side}_contrast_kept"] = int(keep.sum())
        sides[side] = (keep, None if depth is None else patch_mean_depth(grid_windows(depth, size)))
    if depth is not None:
        mean_depth = float(np.nanmean(depth))  # the paper's eq. 2, over the known pixels
        counts["mean_depth"] = mean_depth
        hr_keep = sides["hr"][0] & (sides["hr"][1] < mean_depth)  # near: comparisons with NaN are False
        lr_keep = sides["lr"][0] & (sides["lr"][1] > mean_depth)  # far
    else:
        hr_keep, lr_keep = sides["hr"][0], sides["lr"][0]
    counts["hr_patches"], counts["lr_patches"] = int(hr_keep.sum()), int(lr_keep.sum())
    for side, kept, where in (("HR", hr_keep, "nearer"), ("LR", lr_keep, "farther")):
        if not kept.any():
            reason = (f"none of the {counts[side.lower() + '_contrast_kept']} patches with contrast >= "
                      f"{min_contrast:g} is {where} than the mean depth (is the depth map flat?)"
                      if depth is not None else f"no patch has contrast >= {min_contrast:g} (a flat image?)")
            raise ValueError(f"input: no {side} training patches: {reason}")
    hr = grid_windows(y, hr_size)[hr_keep][..., None].astype(np.float32)
    lr = grid_windows(y, lr_size)[lr_keep][..., None].astype(np.float32)
    if depth is None:
        return PatchCollection(hr=hr, lr=lr, paired=False, counts=counts)
    inverse = 1.0 / depth  # depths are > 0 or NaN (unknown)
    return PatchCollection(hr=hr, lr=lr, paired=False, counts=counts,
                           hr_inverse_depth=patch_mean_depth(grid_windows(inverse, hr_size))[hr_keep],
                           lr_inverse_depth=patch_mean_depth(grid_windows(inverse, lr_size))[lr_keep])


def bicubic_patches(image: np.ndarray, scale: int, lr_size: int, min_contrast: float,
                    kernel: Any = "cubic", contrast_luminance: str = "ycbcr") -> PatchCollection:
    """ZSSR-style pairs for the SRN alone: every HR grid window of the Y channel that passes the contrast filter,
    and its son downscaled by `scale` with `kernel` (bicubic by default)."""
    hr_size = scale * lr_size
    if min(image.shape[:2]) < hr_size:
        raise ValueError(f"input: {image.shape[0]}x{image.shape[1]} is smaller than DGDML's HR patches "
                         f"({hr_size}x{hr_size} at x{scale}); lower dgdml_lr_patch_size")
    y = luminance(image, "ycbcr")
    contrast_plane = y if contrast_luminance == "ycbcr" else luminance(image, contrast_luminance)
    keep = patch_contrast(grid_windows(contrast_plane, hr_size)) >= min_contrast
    if not keep.any():
        raise ValueError(f"input: no training patches: no patch has contrast >= {min_contrast:g} (a flat image?)")
    hr = grid_windows(y, hr_size)[keep][..., None].astype(np.float32)
    lr = np.stack([father_to_son(patch, (scale, scale), kernel) for patch in hr])
    counts = {"hr_size": hr_size, "lr_size": lr_size, "depth_guided": False, "hr_grid": int(keep.size),
              "hr_patches": len(hr), "lr_patches": len(lr)}
    return PatchCollection(hr=hr, lr=lr, paired=True, counts=counts)


def build_patch_index_dataset(collection: PatchCollection, batch_size: int, seed: int,
                              num_batches: int) -> tf.data.Dataset:
    """Batches of (hr_index, lr_index) into the patches' 8 transforms (index = 8 * patch + transform); each
    epoch (`epoch_size` examples) reshuffles both sides independently (pairs stay pairs with `paired`).

    Returns:
      A dataset of `num_batches` pairs of int32 [batch_size] tensors.
    """
    n = collection.epoch_size

    def side(count: int, offset: int) -> tf.data.Dataset:
        total = NUM_TRANSFORMS * count
        return (tf.data.Dataset.range(total)
                .shuffle(total, seed=seed + offset, reshuffle_each_iteration=True).take(n))

    hr = side(len(collection.hr), 0)
    pairs = hr.map(lambda i: (i, i)) if collection.paired else tf.data.Dataset.zip(hr, side(len(collection.lr), 1))
    batches = pairs.batch(batch_size, drop_remainder=True).repeat()
    return batches.map(lambda h, l: (tf.cast(h, tf.int32), tf.cast(l, tf.int32))).take(num_batches).prefetch(2)


def gather_patches(patches: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """[N, S, S, 1] patches, [B] indices into their 8 transforms -> [B, S, S, 1]: patch index // 8, rotated by
    90 degrees (index % 4) times, mirrored left-right when index % 8 >= 4."""
    base = tf.gather(patches, indices // NUM_TRANSFORMS)
    transform = indices % NUM_TRANSFORMS
    # np.rot90's counter-clockwise turns by transposes and flips (tf.image.rot90's shape asserts would stop
    # Grappler from optimising the loop the step runs in); square patches keep one shape.
    transposed = tf.transpose(base, [0, 2, 1, 3])
    rotations = tf.stack([base, tf.reverse(transposed, [1]), tf.reverse(base, [1, 2]), tf.reverse(transposed, [2])])
    rotated = tf.gather_nd(rotations, tf.stack([transform % 4, tf.range(tf.shape(indices)[0])], axis=1))
    return tf.where((transform >= 4)[:, None, None, None], tf.reverse(rotated, axis=[2]), rotated)


def transform_numpy(patch: np.ndarray, index: int) -> np.ndarray:
    """`gather_patches`'s transform of one patch in numpy (for tests and pictures)."""
    rotated = np.rot90(patch, index % 4)
    return np.fliplr(rotated) if index % NUM_TRANSFORMS >= 4 else rotated

