"""Tests of zssr_tf.degradations: the paper's Table 2 kernels and Table 3 degradations."""

import math

import numpy as np
import pytest

from zssr_tf.degradations import (
    DEGRADATIONS,
    MIN_KERNEL_SIZE,
    anisotropic_gaussian_kernel,
    degrade,
    random_degradation,
    random_gaussian_kernel,
)


def kernel_covariance(kernel: np.ndarray) -> np.ndarray:
    """The (x, y) covariance of the kernel as a density on its centred integer grid."""
    r = kernel.shape[0] // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    mean_x, mean_y = (kernel * x).sum(), (kernel * y).sum()
    dx, dy = x - mean_x, y - mean_y
    return np.array([[(kernel * dx * dx).sum(), (kernel * dx * dy).sum()],
                     [(kernel * dx * dy).sum(), (kernel * dy * dy).sum()]])


def sigma(lambda1: float, lambda2: float, theta: float) -> np.ndarray:
    u = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return u @ np.diag([lambda1, lambda2]) @ u.T


@pytest.mark.parametrize("scale_factor", [2, 3, 4])
def test_random_kernel_sums_to_one_is_odd_and_point_symmetric(scale_factor):
    rng = np.random.default_rng(scale_factor)
    for _ in range(5):
        k = random_gaussian_kernel(scale_factor, rng)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and k.shape[0] >= MIN_KERNEL_SIZE
        assert k.shape[0] <= 2 * math.ceil(3 * scale_factor) + 1  # lambda <= s^2
        assert np.all(k >= 0)
        np.testing.assert_allclose(k.sum(), 1.0, atol=1e-12)
        np.testing.assert_allclose(k, np.rot90(k, 2), atol=1e-15)


def test_kernel_covariance_matches_sigma():
    lambda1, lambda2, theta = 2.0, 0.8, 0.6
    wanted = sigma(lambda1, lambda2, theta)
    # On a generous grid the sampled Gaussian's moments are Sigma (a sampled Gaussian with std >= ~0.9 px has the
    # continuous variance to well under 1e-3).
    np.testing.assert_allclose(kernel_covariance(anisotropic_gaussian_kernel(lambda1, lambda2, theta, 31)), wanted,
                               atol=2e-3)
    # The default grid (3.5 std of the long axis here) truncates the tails a little.
    default = anisotropic_gaussian_kernel(lambda1, lambda2, theta)
    np.testing.assert_allclose(kernel_covariance(default), wanted, rtol=0.05, atol=0.02)
    # The long axis is along theta (x right, y down the rows).
    eigenvalues, eigenvectors = np.linalg.eigh(kernel_covariance(default))
    long_axis = eigenvectors[:, np.argmax(eigenvalues)]
    assert abs(abs(long_axis @ [math.cos(theta), math.sin(theta)]) - 1) < 1e-3


def test_tiny_lambdas_give_a_delta_and_bad_arguments_raise():
    k = anisotropic_gaussian_kernel(0.0, 0.0, 0.3)
    assert k.shape == (MIN_KERNEL_SIZE, MIN_KERNEL_SIZE)
    assert k[MIN_KERNEL_SIZE // 2, MIN_KERNEL_SIZE // 2] > 1 - 1e-12
    with pytest.raises(ValueError):
        anisotropic_gaussian_kernel(1.0, 1.0, 0.0, size=10)
    with pytest.raises(ValueError):
        anisotropic_gaussian_kernel(-1.0, 1.0, 0.0)


def test_random_kernel_and_degradation_are_reproducible_from_the_seed():
    a = random_gaussian_kernel(2, np.random.default_rng(7))
    np.testing.assert_array_equal(a, random_gaussian_kernel(2, np.random.default_rng(7)))
    assert not np.array_equal(a, random_gaussian_kernel(2, np.random.default_rng(8)))
    image = np.full((8, 8, 3), 0.5, np.float32)
    np.testing.assert_array_equal(degrade(image, "speckle", np.random.default_rng(1)),
                                  degrade(image, "speckle", np.random.default_rng(1)))
    kinds = [random_degradation(np.random.default_rng(seed)) for seed in range(60)]
    assert set(kinds) == set(DEGRADATIONS)
    assert kinds == [random_degradation(np.random.default_rng(seed)) for seed in range(60)]


def test_gaussian_noise_has_std_0_05_and_keeps_the_range():
    image = np.full((128, 128, 3), 0.5, np.float32)
    out = degrade(image, "gaussian_noise", np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == image.shape
    assert abs(float(np.std(out - image)) - 0.05) < 0.002
    assert abs(float(np.mean(out - image))) < 0.002
    np.testing.assert_array_equal(image, 0.5)  # input untouched
    bright = degrade(np.ones((16, 16, 1), np.float32), "gaussian_noise", np.random.default_rng(0))
    assert bright.min() >= 0 and bright.max() == 1.0  # clipped


def test_speckle_scales_with_intensity():
    dark = np.full((128, 128, 1), 0.2, np.float32)
    light = np.full((128, 128, 1), 0.8, np.float32)
    dark_std = float(np.std(degrade(dark, "speckle", np.random.default_rng(0)) - dark))
    light_std = float(np.std(degrade(light, "speckle", np.random.default_rng(0)) - light))
    assert abs(dark_std - 0.2 * 0.05) < 0.001 and abs(light_std - 0.8 * 0.05) < 0.002
    black = np.zeros((8, 8, 3), np.float32)
    np.testing.assert_array_equal(degrade(black, "speckle", np.random.default_rng(0)), black)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_changes_the_image_but_keeps_shape_and_range(channels):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64] / 64.0
    image = np.clip(np.stack([0.5 + 0.4 * np.sin(9 * x + c) * np.cos(7 * y) for c in range(channels)], axis=2)
                    + rng.uniform(-0.05, 0.05, (48, 64, channels)), 0, 1).astype(np.float32)
    out = degrade(image, "jpeg", rng)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    error = np.abs(out - image)
    assert 0.002 < error.mean() < 0.05  # visibly compressed, still the same picture
    np.testing.assert_array_equal(np.round(out * 255), out * np.float32(255))  # on the 8-bit grid


def test_unknown_kind_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(np.zeros((4, 4, 3)), "blur", np.random.default_rng(0))
    with pytest.raises(ValueError):
        degrade(np.zeros((4, 4)), "jpeg", np.random.default_rng(0))
