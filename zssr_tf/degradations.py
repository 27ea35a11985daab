"""The paper's synthetic non-ideal LR recipes: random anisotropic Gaussian kernels (Table 2) and degradations (Table 3).

Pure functions; randomness comes in as an `np.random.Generator`, so a seeded benchmark makes the same LR images on
every run. `benchmarks/paper_tables.py` builds its Table 2 and Table 3 inputs from these.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# The inverse covariance must exist: U[0, s^2] can draw (almost) 0, a degenerate Gaussian. Below this the kernel is
# a delta on the integer grid anyway (a std of 0.1 px puts e^-50 on the neighbours), so the floor changes nothing.
MIN_LAMBDA = 1e-2
# The original code's estimated kernels are 9x9 (KernelGAN-era kernels are 13x13 or more); never smaller than that.
MIN_KERNEL_SIZE = 9
# Table 3: "Gaussian noise [sigma = 0.05], Speckle noise [sigma = 0.05], JPEG compression [quality = 45]".
NOISE_SIGMA = 0.05
SPECKLE_SIGMA = 0.05
JPEG_QUALITY = 45
DEGRADATIONS = ("gaussian_noise", "speckle", "jpeg")


def anisotropic_gaussian_kernel(lambda1: float, lambda2: float, theta: float, size: int | None = None) -> np.ndarray:
    """A Gaussian blur kernel with covariance Sigma = U diag(lambda1, lambda2) U^T, U the rotation by theta.

    Args:
      lambda1, lambda2: variances (px^2) along the two principal axes; values below MIN_LAMBDA are raised to it.
      theta: angle of the first axis, radians.
      size: odd side of the square grid; default max(MIN_KERNEL_SIZE, 2 * ceil(3 * sqrt(max lambda)) + 1), i.e.
        3 standard deviations of the longer axis on each side of the centre.

    Returns:
      float64 (size, size) kernel, >= 0, summing to 1, centred on the middle pixel (hence symmetric under a
      180-degree rotation: the quadratic form is even).

    Raises:
      ValueError: an even or non-positive size, or a negative or non-finite lambda.
    """
    lambdas = np.array([lambda1, lambda2], dtype=np.float64)
    if not np.all(np.isfinite(lambdas)) or np.any(lambdas < 0):
        raise ValueError(f"lambdas must be finite and >= 0, got {lambda1}, {lambda2}")
    lambdas = np.maximum(lambdas, MIN_LAMBDA)
    if size is None:
        size = max(MIN_KERNEL_SIZE, 2 * math.ceil(3 * math.sqrt(lambdas.max())) + 1)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inverse = rotation @ np.diag(1.0 / lambdas) @ rotation.T
    r = size // 2
    # Rows are y and columns x; the covariance is in (x, y) as the paper writes it.
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    xy = np.stack([x, y], axis=-1)
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", xy, inverse, xy))
    return kernel / kernel.sum()


def random_gaussian_kernel(scale_factor: float, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """The paper's Table 2 kernel: lambda1, lambda2 ~ U[0, s^2], theta ~ U[0, pi].

    Args:
      scale_factor: s, the HR-to-LR downscaling factor (> 0).
      rng: the random generator (three draws: lambda1, lambda2, theta).
      size: see `anisotropic_gaussian_kernel` (default: 3 std of the longer axis, at least 9x9; <= 13x13 for x2).

    Returns:
      float64 (size, size) kernel summing to 1, to be given to `kernel_shift` / `imresize(..., kernel=...)`.
    """
    if scale_factor <= 0:
        raise ValueError(f"scale_factor must be > 0, got {scale_factor}")
    lambda1, lambda2 = rng.uniform(0.0, scale_factor ** 2, size=2)
    theta = rng.uniform(0.0, math.pi)
    return anisotropic_gaussian_kernel(lambda1, lambda2, theta, size)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"expected an H x W x C image with C in {{1, 3}}, got shape {image.shape}")
    return image.astype(np.float32)


def degrade(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One of the paper's Table 3 degradations of an LR image.

    Sigma 0.05 is a standard deviation in [0, 1] units (about 13 grey levels). MATLAB's `imnoise` takes variances,
    and its 'speckle' noise is uniform; the paper gives sigmas, so both noises here are Gaussian with std 0.05.
    JPEG uses OpenCV's libjpeg quality, the IJG scale that MATLAB's `imwrite(..., 'Quality', 45)` also uses.

    Args:
      image: float H x W x C image in [0, 1], C in {1, 3} (RGB); not modified.
      kind: 'gaussian_noise' (image + n), 'speckle' (image + image * n), n ~ N(0, 0.05^2) per pixel and channel;
        or 'jpeg' (8-bit encode and decode at quality 45).
      rng: the random generator (unused by 'jpeg', which is deterministic).

    Returns:
      float32 H x W x C image in [0, 1] (noise is clipped; JPEG output is on the 8-bit grid).

    Raises:
      ValueError: an unknown kind or an unsupported shape.
    """
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; one of {', '.join(DEGRADATIONS)}")
    image = _check_image(image)
    if kind == "gaussian_noise":
        out = image + rng.normal(0.0, NOISE_SIGMA, image.shape)
    elif kind == "speckle":
        out = image + image * rng.normal(0.0, SPECKLE_SIGMA, image.shape)
    else:
        pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        pixels = pixels[:, :, 0] if pixels.shape[2] == 1 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("cv2 could not JPEG-encode the image")
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
        decoded = decoded[:, :, None] if decoded.ndim == 2 else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        out = decoded / 255.0
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_degradation(rng: np.random.Generator) -> str:
    """One of DEGRADATIONS, uniformly (the paper picks one per image)."""
    return DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
