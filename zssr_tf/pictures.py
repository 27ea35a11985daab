"""Pictures of a run: with ground truth, its training curves and a bicubic | SR | ground truth comparison; an
estimated kernel as a heat map.

All are PNG files written atomically. The figures are a bare `matplotlib.figure.Figure`, not pyplot: it draws
off-screen without a display and leaves the caller's backend alone (a notebook keeps showing its own figures).
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from zssr_tf.image_io import write_bytes_atomically, write_image
from zssr_tf.metrics import psnr_of_mse


def plot_training(history: Sequence, path: str | os.PathLike) -> None:
    """Reconstruction error, true PSNR and learning-rate drops over the iterations of every stage.

    Args:
      history: the trainer's `StageHistory` list (its `test_steps`, `reconstruction_mse`, `true_mse`,
        `learning_rate_change_iters`, `iterations`, `scale_factor`).
      path: the PNG to write.
    """
    figure = Figure(figsize=(11, 3.6))
    error_axis, psnr_axis = figure.subplots(1, 2)
    offset = 0
    for stage in history:
        label = "x".join(f"{s:g}" for s in stage.scale_factor)
        steps = np.add(stage.test_steps, offset)
        error_axis.semilogy(steps, stage.reconstruction_mse, label=f"reconstruction MSE, {label}")
        if stage.true_mse:
            psnr_axis.plot(steps, [psnr_of_mse(m) for m in stage.true_mse], label=f"true PSNR, {label}")
        for axis in (error_axis, psnr_axis):
            for drop in stage.learning_rate_change_iters:
                axis.axvline(offset + drop, color="grey", linestyle=":", linewidth=1)
            if offset:
                axis.axvline(offset, color="black", linestyle="--", linewidth=1)
        offset += stage.iterations
    error_axis.set(xlabel="iteration (dotted: learning rate / 10)", title="reconstruction of the input from its son")
    psnr_axis.set(xlabel="iteration", ylabel="dB", title="network output vs ground truth (before the final test)")
    for axis in (error_axis, psnr_axis):
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_bytes_atomically(path, buffer.getvalue())


def comparison_crop(bicubic: np.ndarray, sr: np.ndarray, gt: np.ndarray, path: str | os.PathLike,
                    crop_size: int = 96, zoom: int = 2) -> None:
    """Side-by-side crops (bicubic | SR | ground truth) around the image centre, zoomed with nearest neighbours.

    Args:
      bicubic, sr, gt: H x W x C float images in [0, 1] of the same size.
      path: the PNG to write.
      crop_size: side of the crop in HR pixels (smaller images are shown whole).
      zoom: nearest-neighbour magnification, so that pixels stay visible.
    """
    h, w = gt.shape[:2]
    size_y, size_x = min(crop_size, h), min(crop_size, w)
    top, left = (h - size_y) // 2, (w - size_x) // 2
    gap = np.ones((size_y * zoom, 4 * zoom, gt.shape[2]), np.float32)
    panels = []
    for image in (bicubic, sr, gt):
        crop = image[top:top + size_y, left:left + size_x]
        panels += [np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1), gap]
    write_image(path, np.concatenate(panels[:-1], axis=1))


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
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_bytes_atomically(path, buffer.getvalue())
