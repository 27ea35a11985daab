"""Pictures of a run, readable without the README: with ground truth, its training curves and a labelled
bicubic | SR | ground truth comparison; an estimated kernel as a heat map; a depth map and the near / far split it
makes for DGDML-SR's patches.

All are PNG files written atomically. The figures are a bare `matplotlib.figure.Figure`, not pyplot: it draws
off-screen without a display and leaves the caller's backend alone (a notebook keeps showing its own figures).
"""

from __future__ import annotations

import io
import math
import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from zssr_tf.image_io import write_bytes_atomically
from zssr_tf.metrics import psnr, psnr_of_mse

MIN_PANEL_PIXELS = 160  # width of a comparison panel at least, so that its label fits


def plot_training(history: Sequence, path: str | os.PathLike, final_psnr: tuple[float, float] | None = None,
                  final_test: str = "the final test") -> None:
    """`training_figure`, written as a PNG."""
    _save(training_figure(history, final_psnr, final_test), path)


def training_figure(history: Sequence, final_psnr: tuple[float, float] | None = None,
                    final_test: str = "the final test") -> Figure:
    """Reconstruction error and PSNR against the ground truth over the iterations of every stage, with the
    learning-rate drops and the stage boundaries drawn, and the final output's PSNR marked.

    Args:
      history: the trainer's `StageHistory` list (its `test_steps`, `reconstruction_mse`, `true_mse`,
        `learning_rate_change_iters`, `iterations`, `scale_factor`).
      final_psnr: the final output's PSNR against the ground truth over all channels (the curve's measure) and
        of the luma (the printed one), or None.
      final_test: what made the final output from the network (e.g. its self-ensemble and back-projections),
        which is why it scores above the curve's single passes.
    """
    figure = Figure(figsize=(12, 4.2))
    error_axis, psnr_axis = figure.subplots(1, 2)
    offset = 0
    for index, stage in enumerate(history):
        label = "x".join(f"{s:g}" for s in stage.scale_factor)
        steps = np.add(stage.test_steps, offset)
        error_axis.plot(steps, stage.reconstruction_mse, marker=".", label=f"stage {label}")
        if stage.true_mse:
            psnr_axis.plot(steps, [psnr_of_mse(m) for m in stage.true_mse], marker=".",
                           label=f"one pass of the network, stage {label}")
        for axis in (error_axis, psnr_axis):
            for drop in stage.learning_rate_change_iters:
                axis.axvline(offset + drop, color="grey", linestyle=":", linewidth=1.2)
            if index:
                axis.axvline(offset, color="black", linestyle="--", linewidth=1)
        offset += stage.iterations
    # Legend entries for the vertical lines, once each.
    drops = any(stage.learning_rate_change_iters for stage in history)
    for axis in (error_axis, psnr_axis):
        if drops:
            axis.plot([], [], color="grey", linestyle=":", label="learning-rate drop")
        if len(history) > 1:
            axis.plot([], [], color="black", linestyle="--", label="next stage starts")
    errors = [m for stage in history for m in stage.reconstruction_mse if m > 0]
    if errors and max(errors) > 10 * min(errors):  # a log axis only where it shows something: over a decade
        error_axis.set_yscale("log")
    else:
        error_axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    error_axis.set(xlabel="iteration", ylabel="mean squared error",
                   title="quick test: the input reconstructed from its downscaled son")
    if final_psnr is not None:
        channels, y = final_psnr
        psnr_axis.plot([offset], [channels], marker="*", markersize=14, color="crimson", linestyle="none",
                       label=f"final output ({final_test}): {channels:.2f} dB\n"
                             f"(printed: its Y-PSNR, of the luma in 8 bits, {y:.2f} dB)")
    psnr_axis.set(xlabel="iteration", ylabel="PSNR (dB, all channels)", title="against the ground truth")
    for axis, corner in ((error_axis, "upper right"), (psnr_axis, "best")):
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7, loc=corner)
    figure.tight_layout()
    return figure


def comparison_crop(bicubic: np.ndarray, sr: np.ndarray, gt: np.ndarray, path: str | os.PathLike,
                    method: str = "ZSSR", crop_size: int = 96, zoom: int = 2) -> None:
    """`comparison_figure`, written as a PNG."""
    _save(comparison_figure(bicubic, sr, gt, method, crop_size, zoom), path)


def comparison_figure(bicubic: np.ndarray, sr: np.ndarray, gt: np.ndarray, method: str = "ZSSR",
                      crop_size: int = 96, zoom: int = 2) -> Figure:
    """Side-by-side crops (bicubic | the method | ground truth) around the image centre, zoomed with nearest
    neighbours, each titled with its name and labelled underneath with its Y-PSNR over the whole image (the figure
    the command prints).

    Args:
      bicubic, sr, gt: H x W x C float images in [0, 1] of the same size.
      method: the method's name, the middle panel's title.
      crop_size: side of the crop in HR pixels (smaller images are shown whole).
      zoom: nearest-neighbour magnification, so that pixels stay visible (more where the crop is narrow).
    """
    h, w = gt.shape[:2]
    size_y, size_x = min(crop_size, h), min(crop_size, w)
    top, left = (h - size_y) // 2, (w - size_x) // 2
    zoom = max(zoom, math.ceil(MIN_PANEL_PIXELS / size_x))  # room for the labels under small images
    dpi = 100
    panel_w, panel_h = size_x * zoom / dpi, size_y * zoom / dpi
    figure = Figure(figsize=(3 * panel_w + 0.6, panel_h + 1.0), dpi=dpi)
    panels = (("bicubic", bicubic, f"Y-PSNR {psnr(bicubic, gt):.2f} dB"),
              (method, sr, f"Y-PSNR {psnr(sr, gt):.2f} dB"), ("ground truth", gt, "(the reference)"))
    for axis, (title, image, under) in zip(figure.subplots(1, 3), panels):
        crop = np.clip(image[top:top + size_y, left:left + size_x], 0, 1)
        gray = crop.shape[2] == 1
        axis.imshow(crop[..., 0] if gray else crop, cmap="gray" if gray else None, vmin=0, vmax=1,
                    interpolation="nearest")
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(under, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"centre {size_y}x{size_x} pixels, zoomed x{zoom}; PSNR of the whole image", fontsize=8,
                    y=0.02, va="bottom")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure


def plot_kernel(kernel: np.ndarray, path: str | os.PathLike, title: str) -> None:
    """A downscaling kernel as a heat map with its values' scale, its size and its centre of mass marked.

    Args:
      kernel: 2-D array.
      path: the PNG to write.
      title: the picture's title (e.g. which image and scale).
    """
    figure = Figure(figsize=(4.2, 3.6))
    axis = figure.subplots()
    shown = axis.imshow(kernel, cmap="viridis", interpolation="nearest")
    figure.colorbar(shown, ax=axis, label="weight")
    mass = np.sum(kernel)
    rows, cols = np.indices(kernel.shape)
    center = (np.sum(rows * kernel) / mass, np.sum(cols * kernel) / mass)
    axis.plot(center[1], center[0], "r+", markersize=10, label="centre of mass")
    axis.set(title=f"{title}\n{kernel.shape[0]}x{kernel.shape[1]}, sum {mass:.3f}", xlabel="column", ylabel="row")
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    _save(figure, path)


def plot_depth(image: np.ndarray, depth: np.ndarray, path: str | os.PathLike, title: str) -> None:
    """A depth map in a perceptual colour map (magma, near bright) beside the image with DGDML-SR's split: pixels
    nearer than the mean depth (where HR patches come from) and farther (LR patches); the patches themselves are
    the grid windows whose mean depth falls on each side (`patches.collect_patches`).

    Args:
      image: H x W x C in [0, 1].
      depth: H x W depth (larger = farther), NaN where unknown.
      path: the PNG to write.
      title: the picture's title (which image, which model).
    """
    figure = Figure(figsize=(9, 4.2))
    left, right = figure.subplots(1, 2)
    # Colours over the 2nd..98th percentile: an inverted disparity near 0 (the sky) would flatten the rest.
    low, high = (np.nanpercentile(depth, [2, 98]) if np.isfinite(depth).any() else (0.0, 1.0))
    shown = left.imshow(depth, cmap="magma_r", vmin=low, vmax=max(high, low + 1e-12))
    figure.colorbar(shown, ax=left, label="depth (larger = farther)", extend="both")
    left.set(title=f"{title}\ndepth (white: unknown)", xticks=[], yticks=[])
    mean = float(np.nanmean(depth))
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    tint = np.zeros_like(rgb)
    tint[depth < mean] = (1.0, 0.55, 0.0)  # near: orange
    tint[depth > mean] = (0.1, 0.45, 1.0)  # far: blue (unknown, NaN: neither)
    right.imshow(np.clip(0.6 * rgb + 0.4 * tint, 0, 1))
    right.set(title="near (orange): HR patches; far (blue): LR patches", xticks=[], yticks=[])
    figure.tight_layout()
    _save(figure, path)


def _save(figure: Figure, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_bytes_atomically(path, buffer.getvalue())
