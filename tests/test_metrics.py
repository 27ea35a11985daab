import math

import numpy as np
import pytest

from zssr_tf.metrics import psnr, rgb_to_y


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
