"""Image-quality metrics as super-resolution papers report them.

PSNR is computed on 8-bit values (peak 255), on the luma of MATLAB's `rgb2ycbcr` (ITU-R BT.601, studio range) by
default, with an optional border shave of `border` pixels on every side.
"""

from __future__ import annotations

import numpy as np
import skimage.metrics

# MATLAB rgb2ycbcr luma for RGB in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B, in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def to_8bit_values(image: np.ndarray) -> np.ndarray:
    """uint8 images as they are; float images in [0, 1] rounded to the 8-bit grid; as float64 0..255."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64)
    return np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0)


def rgb_to_y(image_255: np.ndarray) -> np.ndarray:
    """Luma (MATLAB rgb2ycbcr, not rounded) of an H x W x 3 image in 0..255; float64 H x W in 16..235."""
    return 16.0 + image_255[..., :3] @ _Y_WEIGHTS / 255.0


def psnr(sr: np.ndarray, hr: np.ndarray, border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB between two images of the same size.

    Args:
      sr, hr: H x W or H x W x C images, uint8 or float in [0, 1] (floats are rounded to 8 bits first, as when
        the result is saved).
      border: pixels shaved off every side before comparing (SR papers shave `scale`).
      y_channel: compare the MATLAB luma of RGB images (ignored for single-channel images).

    Returns:
      PSNR in dB (inf for identical images).
    """
    sr, hr = to_8bit_values(sr), to_8bit_values(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"psnr: shapes differ, {sr.shape} vs {hr.shape}")
    if y_channel and sr.ndim == 3 and sr.shape[2] >= 3:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    if border:
        sr, hr = sr[border:-border, border:-border], hr[border:-border, border:-border]
    if np.array_equal(sr, hr):
        return float("inf")
    return float(skimage.metrics.peak_signal_noise_ratio(hr, sr, data_range=255.0))


def psnr_of_mse(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error (of [0, 1] images by default); capped at 200 dB for identical images."""
    return float(10 * np.log10(peak**2 / max(mse, 1e-20 * peak**2)))
