"""Colour spaces: BT.601 YCbCr (MATLAB `rgb2ycbcr`, studio range) for methods that work on luminance only.

Pure numpy functions on float images in [0, 1]: Y in [16/255, 235/255], Cb and Cr in [16/255, 240/255].
"""

from __future__ import annotations

import numpy as np

# Rows: Y, Cb, Cr from R, G, B in [0, 1], in 0..255 units (ITU-R BT.601, as MATLAB's rgb2ycbcr).
_RGB_TO_YCBCR = np.array([[65.481, 128.553, 24.966],
                          [-37.797, -74.203, 112.0],
                          [112.0, -93.786, -18.214]])
_OFFSET = np.array([16.0, 128.0, 128.0])
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
# The luminance of scikit-image's rgb2gray (Rec. 709 weights), which the DGDML-SR authors' contrast filter used.
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB in [0, 1] -> H x W x 3 YCbCr in [0, 1] (float32)."""
    return ((rgb[..., :3].astype(np.float64) @ _RGB_TO_YCBCR.T + _OFFSET) / 255.0).astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_ycbcr`, clipped to [0, 1] (float32)."""
    rgb = (ycbcr.astype(np.float64) * 255.0 - _OFFSET) @ _YCBCR_TO_RGB.T
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def luminance(image: np.ndarray, kind: str = "ycbcr") -> np.ndarray:
    """H x W luminance in [0, 1] of an H x W x C image: BT.601 Y (`ycbcr`) or rgb2gray's (`rgb2gray`); a
    one-channel image is its own luminance."""
    if image.shape[2] == 1:
        return image[:, :, 0]
    if kind == "ycbcr":
        return rgb_to_ycbcr(image)[:, :, 0]
    if kind == "rgb2gray":
        return (image[..., :3].astype(np.float64) @ _GRAY_WEIGHTS).astype(np.float32)
    raise ValueError(f"luminance: unknown kind {kind!r} (ycbcr or rgb2gray)")
