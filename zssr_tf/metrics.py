"""Image-quality metrics as super-resolution papers report them.

PSNR and SSIM are computed on 8-bit values (peak 255), on the luma of MATLAB's `rgb2ycbcr` (ITU-R BT.601, studio
range) by default, with an optional border shave of `border` pixels on every side. SSIM is Wang et al.'s MATLAB
`ssim_index`; NIQE is the reference MATLAB release of Mittal et al. (2013) with its shipped pristine model
(`zssr_tf/resources/niqe_pris_params.npz`, Apache-2.0, see `zssr_tf/resources/NOTICE`).
"""

from __future__ import annotations

import functools
import importlib.resources

import numpy as np
import skimage.metrics
from scipy import ndimage
from scipy.special import gamma

from zssr_tf.imresize import imresize

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


def _compared_planes(metric: str, sr: np.ndarray, hr: np.ndarray, border: int,
                     y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """What full-reference metrics compare: 8-bit values, luma of RGB images when asked, border shaved."""
    sr, hr = to_8bit_values(sr), to_8bit_values(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"{metric}: shapes differ, {sr.shape} vs {hr.shape}")
    if y_channel and sr.ndim == 3 and sr.shape[2] >= 3:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    if border:
        sr, hr = sr[border:-border, border:-border], hr[border:-border, border:-border]
    return sr, hr


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
    sr, hr = _compared_planes("psnr", sr, hr, border, y_channel)
    if np.array_equal(sr, hr):
        return float("inf")
    return float(skimage.metrics.peak_signal_noise_ratio(hr, sr, data_range=255.0))


def uniform_ssim(sr: np.ndarray, hr: np.ndarray) -> float:
    """SSIM with `skimage.metrics.structural_similarity`'s defaults (a 7x7 uniform window) over the RGB channels of
    the 8-bit values: ZSRGAN's report and its authors' test compute it so (`ssim` is SR papers' Gaussian one)."""
    sr, hr = _compared_planes("uniform_ssim", sr, hr, 0, False)
    return float(skimage.metrics.structural_similarity(hr, sr, channel_axis=2 if hr.ndim == 3 else None,
                                                       data_range=255))


def psnr_of_mse(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error (of [0, 1] images by default); capped at 200 dB for identical images."""
    return float(10 * np.log10(peak**2 / max(mse, 1e-20 * peak**2)))


# SSIM constants of Wang et al.'s MATLAB ssim_index: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255.
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
# fspecial('gaussian', 11, 1.5) is separable: the outer product of this normalised 1-D kernel with itself.
_SSIM_TAPS = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
_SSIM_TAPS /= _SSIM_TAPS.sum()


def _ssim_valid_filter(x: np.ndarray) -> np.ndarray:
    """MATLAB `filter2(window, x, 'valid')` with the 11x11 SSIM window: filter, then drop the 5 pixels per side
    whose windows reach past the image (the boundary mode never matters for the kept pixels)."""
    y = ndimage.correlate1d(ndimage.correlate1d(x, _SSIM_TAPS, axis=0), _SSIM_TAPS, axis=1)
    return y[5:-5, 5:-5]


def _ssim_single(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = _ssim_valid_filter(a), _ssim_valid_filter(b)
    # Population (not sample) moments, as in the MATLAB code.
    var_a = _ssim_valid_filter(a * a) - mu_a**2
    var_b = _ssim_valid_filter(b * b) - mu_b**2
    cov_ab = _ssim_valid_filter(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov_ab + _SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    )
    return float(ssim_map.mean())


def ssim(sr: np.ndarray, hr: np.ndarray, border: int = 0, y_channel: bool = True) -> float:
    """SSIM as SR papers report it (Wang et al.'s MATLAB `ssim_index`, mean of the 'valid' SSIM map).

    Equal to `skimage.metrics.structural_similarity(hr, sr, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255)` on the same 8-bit plane: skimage filters the whole image and then
    drops (11 - 1) / 2 = 5 pixels per side from the map, which leaves exactly MATLAB's 'valid' map.

    Args:
      sr, hr: H x W or H x W x C images, uint8 or float in [0, 1] (floats are rounded to 8 bits first). After the
        border shave both sides must be at least 11 pixels.
      border: pixels shaved off every side before comparing (SR papers shave `scale`).
      y_channel: compare the MATLAB luma of RGB images; otherwise the mean SSIM over the channels.

    Returns:
      SSIM, 1.0 for identical images.

    Raises:
      ValueError: the shapes differ or the (shaved) image is smaller than the 11x11 window.
    """
    sr, hr = _compared_planes("ssim", sr, hr, border, y_channel)
    if min(sr.shape[:2]) < 11:
        raise ValueError(f"ssim: needs at least 11x11 pixels after the border shave, got {sr.shape[:2]}")
    if sr.ndim == 2:
        return _ssim_single(sr, hr)
    return float(np.mean([_ssim_single(sr[..., c], hr[..., c]) for c in range(sr.shape[2])]))


NIQE_BLOCK_SIZE = 96
# The moment-matching grid of the MATLAB estimateaggdparam: gam = 0.2:0.001:10 and its ratio
# r(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)). Built from integers so that no step drifts.
_AGGD_ALPHAS = np.arange(200, 10001) / 1000.0
_AGGD_RATIOS = gamma(2 / _AGGD_ALPHAS) ** 2 / (gamma(1 / _AGGD_ALPHAS) * gamma(3 / _AGGD_ALPHAS))


@functools.lru_cache(maxsize=1)
def _niqe_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pristine model (mu 36, cov 36x36) and the 7x7 Gaussian window, loaded once from the package data."""
    resource = importlib.resources.files("zssr_tf") / "resources" / "niqe_pris_params.npz"
    with resource.open("rb") as f, np.load(f) as params:
        return params["mu_pris_param"].ravel(), params["cov_pris_param"], params["gaussian_window"]


def _aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AGGD moment-matching fit of each row of `x` (blocks x samples), vectorised MATLAB estimateaggdparam.

    Returns:
      (alpha, beta_left, beta_right), each of shape (blocks,). A block without negative (or positive) samples gets
      NaN betas, as in MATLAB, and NIQE drops it later.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(np.sum(np.where(x < 0, x * x, 0), axis=1) / np.sum(x < 0, axis=1))
        right_std = np.sqrt(np.sum(np.where(x > 0, x * x, 0), axis=1) / np.sum(x > 0, axis=1))
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(x), axis=1) ** 2 / np.mean(x * x, axis=1)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
        # First minimum, like MATLAB's min; a NaN estimate picks the first grid point (its betas stay NaN).
        alpha = _AGGD_ALPHAS[np.argmin((_AGGD_RATIOS[None, :] - r_hat_norm[:, None]) ** 2, axis=1)]
        scale = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * scale, right_std * scale


def _niqe_block_features(mscn: np.ndarray, block: int) -> np.ndarray:
    """The 18 NIQE features (MATLAB computefeature) of every `block` x `block` tile; returns (tiles, 18)."""
    h, w = mscn.shape
    tiles = mscn.reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(-1, block, block)
    alpha, beta_l, beta_r = _aggd_fit(tiles.reshape(len(tiles), -1))
    features = [alpha, (beta_l + beta_r) / 2]
    # Products of neighbours (horizontal, vertical, two diagonals), circularly shifted within each tile as MATLAB's
    # circshift on the block does.
    for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        pairs = tiles * np.roll(tiles, shift, axis=(1, 2))
        alpha, beta_l, beta_r = _aggd_fit(pairs.reshape(len(tiles), -1))
        mean = (beta_r - beta_l) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, beta_l, beta_r]
    return np.stack(features, axis=1)


def niqe(img: np.ndarray, border: int = 0) -> float:
    """NIQE (no-reference; lower is better), as the reference MATLAB release computes it.

    The luma is MATLAB's `rgb2ycbcr` Y of the 8-bit image rounded to integers (what MATLAB returns for uint8 input);
    the image is cropped to a multiple of 96 and cut into 96x96 blocks; each block gives 18 AGGD features of its
    MSCN coefficients (7x7 Gaussian window, C = 1) at full size and 18 more after MATLAB `imresize` by 0.5. The
    score is the Mahalanobis-like distance between the blocks' (NaN-free) feature Gaussian and the pristine one.

    Args:
      img: H x W, H x W x 1 or H x W x 3 image, uint8 or float in [0, 1] (floats are rounded to 8 bits first).
      border: pixels cropped from every side first (as BasicSR's `crop_border`).

    Returns:
      The NIQE score.

    Raises:
      ValueError: fewer than two 96x96 blocks fit (a covariance needs two), or fewer than two blocks have finite
        features (e.g. a flat image).
    """
    plane = to_8bit_values(img)
    if plane.ndim == 3:
        plane = np.round(rgb_to_y(plane)) if plane.shape[2] >= 3 else plane[..., 0]
    if border:
        plane = plane[border:-border, border:-border]
    rows, cols = plane.shape[0] // NIQE_BLOCK_SIZE, plane.shape[1] // NIQE_BLOCK_SIZE
    if rows * cols < 2:
        raise ValueError(
            f"niqe: needs at least two {NIQE_BLOCK_SIZE}x{NIQE_BLOCK_SIZE} blocks, got an image of {plane.shape[:2]}"
        )
    mu_pris, cov_pris, window = _niqe_params()
    plane = plane[: rows * NIQE_BLOCK_SIZE, : cols * NIQE_BLOCK_SIZE]
    features = []
    for block in (NIQE_BLOCK_SIZE, NIQE_BLOCK_SIZE // 2):
        # imfilter(..., 'replicate') is scipy's 'nearest'; the window is symmetric, so correlate == convolve.
        mu = ndimage.correlate(plane, window, mode="nearest")
        sigma = np.sqrt(np.abs(ndimage.correlate(plane * plane, window, mode="nearest") - mu * mu))
        features.append(_niqe_block_features((plane - mu) / (sigma + 1), block))
        plane = imresize(plane, 0.5)
    features = np.concatenate(features, axis=1)
    # MATLAB's nancov drops every row with a NaN; nanmean ignores NaNs per column.
    finite = features[~np.isnan(features).any(axis=1)]
    if len(finite) < 2:
        raise ValueError("niqe: fewer than two blocks have finite features (is the image flat?)")
    mu_dist = np.nanmean(features, axis=0)
    cov_dist = np.cov(finite, rowvar=False)
    diff = mu_pris - mu_dist
    return float(np.sqrt(diff @ np.linalg.pinv((cov_pris + cov_dist) / 2) @ diff))
