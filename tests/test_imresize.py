"""Tests for zssr_tf.imresize: hand-worked MATLAB goldens, shape rules, properties and the numpy/TF match."""

import numpy as np
import pytest
import tensorflow as tf

from zssr_tf.imresize import KERNEL_NAMES, fix_scale_and_shape, imresize, imresize_tf, resize_weights

# Hand values of Keys' cubic (a = -0.5), used by the goldens below:
#   |x| <= 1:     1.5|x|^3 - 2.5|x|^2 + 1
#   1 < |x| <= 2: -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2
#   cubic(0.25) = 0.0234375 - 0.15625 + 1                 =  0.8671875
#   cubic(0.75) = 0.6328125 - 1.40625 + 1                 =  0.2265625
#   cubic(1.25) = -0.9765625 + 3.90625 - 5 + 2            = -0.0703125
#   cubic(1.75) = -2.6796875 + 7.65625 - 7 + 2            = -0.0234375
#   cubic(2.25) = cubic(2.75) = 0 (outside the support)
ROW = np.array([[1.0, 2.0, 4.0, 8.0]])  # [a, b, c, d] as a 1x4 image; scale (1, s) leaves the single row alone.


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------------------------
# 1. Golden values from MATLAB's formula.


def test_golden_cubic_upscale_borders():
    # n = 4, scale 2, out = 8, width 4, P = 6 taps, u = x/2 + 0.25, mirror aux = [1 2 3 4 4 3 2 1].
    # x = 1: u = 0.75, left = floor(-1.25) = -2, idx -2..3, u - idx = 2.75 1.75 0.75 -0.25 -1.25 -2.25
    #        weights 0, -0.0234375, 0.2265625, 0.8671875, -0.0703125, 0 (sum 1);
    #        idx -1 -> aux(mod(-2, 8) + 1) = aux(7) = 2, idx 0 -> aux(8) = 1
    #        out1 = (0.2265625 + 0.8671875) a + (-0.0234375 - 0.0703125) b = 1.09375 a - 0.09375 b = 0.90625
    # x = 2: u = 1.25, idx -1..4, u - idx = 2.25 1.25 0.25 -0.75 -1.75 -2.75, idx 0 -> 1
    #        out2 = (-0.0703125 + 0.8671875) a + 0.2265625 b - 0.0234375 c = 0.796875 + 0.453125 - 0.09375 = 1.15625
    # x = 8: u = 4.25, idx 2..7, u - idx = 2.25 1.25 0.25 -0.75 -1.75 -2.75, idx 5 -> aux(5) = 4, idx 6 -> aux(6) = 3
    #        out8 = -0.0703125 c + (0.8671875 + 0.2265625) d - 0.0234375 c = 1.09375 d - 0.09375 c = 8.375
    out = imresize(ROW, scale_factor=(1, 2), kernel="cubic")
    assert out.shape == (1, 8)
    np.testing.assert_allclose(out[0, [0, 1, 7]], [0.90625, 1.15625, 8.375], rtol=0, atol=1e-12)


def test_golden_antialiased_cubic_downscale():
    # n = 8, scale 0.5, out = 4; antialiased h(x) = 0.5 cubic(x/2), width 8, P = 10 taps, u = 2x - 0.5.
    # x = 1: u = 1.5, left = floor(-2.5) = -3, idx -3..6, u - idx = 4.5 3.5 ... -4.5, halves 2.25 1.75 1.25 0.75 0.25
    #   h = 0, -0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875, 0
    #   (the 8 non-zero taps sum to 1). Mirror (aux of length 16): idx -2 -> 3, -1 -> 2, 0 -> 1, so per input pixel
    #   1: 0.11328125 + 0.43359375 = 0.546875     2: -0.03515625 + 0.43359375 = 0.3984375
    #   3: -0.01171875 + 0.11328125 = 0.1015625   4: -0.03515625   5: -0.01171875
    # x = 2: u = 3.5, idx -1..8; idx -1 and 8 get 0, idx 0 (-0.01171875) mirrors onto pixel 1 next to idx 1:
    #   1: -0.046875  2: 0.11328125  3, 4: 0.43359375  5: 0.11328125  6: -0.03515625  7: -0.01171875
    # x = 3, 4 are the mirror images of x = 2, 1 (the mirror is symmetric on both sides).
    # Resizing the rows of the identity gives the transposed weight matrix.
    col0 = [0.546875, 0.3984375, 0.1015625, -0.03515625, -0.01171875, 0, 0, 0]
    col1 = [-0.046875, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875, 0]
    expected = np.array([col0, col1, col1[::-1], col0[::-1]]).T
    out = imresize(np.eye(8), scale_factor=(1, 0.5), kernel="cubic", antialiasing=True)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_golden_linear_upscale():
    # Triangle kernel, width 2, P = 4, u = x/2 + 0.25:
    # x = 1: u = 0.75, idx -1..2, u - idx = 1.75 0.75 -0.25 -1.25 -> 0 0.25 0.75 0, idx 0 -> 1: out = a = 1
    # x = 2: u = 1.25, idx 0..3 -> 0 0.75 0.25 0: 0.75 a + 0.25 b = 1.25
    # x = 3..7 interpolate likewise (0.25a+0.75b, 0.75b+0.25c, 0.25b+0.75c, 0.75c+0.25d, 0.25c+0.75d)
    # x = 8: u = 4.25, idx 4 weight 0.75, idx 5 -> aux(5) = 4 weight 0.25: out = d = 8
    out = imresize(ROW, scale_factor=(1, 2), kernel="linear")
    np.testing.assert_allclose(out[0], [1, 1.25, 1.75, 2.5, 3.5, 5, 7, 8], rtol=0, atol=1e-12)


def test_golden_box():
    # Downscale x0.5 with antialiasing: h(x) = 0.5 box(x/2), width 2, P = 4, u = 2x - 0.5.
    # x = 1: u = 1.5, idx 0..3, (u - idx)/2 = 0.75 0.25 -0.25 -0.75 -> 0 0.5 0.5 0: (a + b)/2 = 1.5
    # x = 2: u = 3.5: (c + d)/2 = 6
    np.testing.assert_allclose(imresize(ROW, (1, 0.5), kernel="box")[0], [1.5, 6.0], rtol=0, atol=1e-12)
    # Upscale x2: width 1, u = 0.75 -> only idx 1 has |u - idx| < 0.5; u = 1.25 -> idx 1: nearest neighbour.
    np.testing.assert_allclose(imresize(ROW, (1, 2), kernel="box")[0], [1, 1, 2, 2, 4, 4, 8, 8], rtol=0, atol=1e-12)


def test_golden_numeric_kernel():
    # 5x5 image x[i, j] = 10 i + j. Correlation with origin at the kernel centre:
    #   out[i, j] = 0.5 x[i, j] + 0.25 x[i - 1, j] + 0.25 x[i, j + 1], with x[-1, j] = x[0, j] (half-sample reflect).
    #   i = 0: 0.5 j + 0.25 j + 0.25 (j + 1) = j + 0.25
    #   i > 0: 0.5 (10i + j) + 0.25 (10i - 10 + j) + 0.25 (10i + j + 1) = 10 i + j - 2.25
    # Subsampling at scale 0.5: out size ceil(2.5) = 3, round(linspace(0, 5 - 2, 3)) = round([0, 1.5, 3]) = [0, 2, 3].
    image = 10.0 * np.arange(5)[:, None] + np.arange(5)[None, :]
    kernel = np.array([[0, 0.25, 0], [0, 0.5, 0.25], [0, 0, 0]])
    expected = [[0.25, 2.25, 3.25], [17.75, 19.75, 20.75], [27.75, 29.75, 30.75]]
    np.testing.assert_allclose(imresize(image, 0.5, kernel=kernel), expected, rtol=0, atol=1e-12)
    three = imresize(np.repeat(image[:, :, None], 3, axis=2), 0.5, kernel=kernel)
    np.testing.assert_allclose(three, np.repeat(np.array(expected)[:, :, None], 3, axis=2), rtol=0, atol=1e-12)


def test_golden_scale_one_with_new_size_is_resized():
    # Scale 1 but 10 rows requested from 8: u = x, cubic at integer distances is a pick;
    # row 9 (1-based) takes idx 9 -> aux(9) = 8, row 10 takes idx 10 -> aux(10) = 7.
    image = _rng().random((8, 6))
    out = imresize(image, scale_factor=1, output_shape=(10, 6))
    np.testing.assert_allclose(out[:8], image, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[8:], image[[7, 6]], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# 2. Output shape rules.


@pytest.mark.parametrize(
    "in_shape, scale, expected",
    [((125, 125), 0.5, (63, 63)), ((30, 30), 0.1, (3, 3)), ((9, 9), 1 / 3, (3, 3)), ((10, 10), (1.0, 1.5), (10, 15))],
)
def test_output_shape_is_ceil_of_scaled(in_shape, scale, expected):
    assert imresize(np.zeros(in_shape), scale).shape == expected
    assert fix_scale_and_shape(in_shape, scale)[1] == expected


def test_scale_and_shape_both_given():
    # ZSSR's round trip 9 -> 5 -> 9: scale 2 sets the geometry, the shape only crops the pixel count.
    son = _rng().random((5, 5))
    full = imresize(son, 2)
    forced = imresize(son, scale_factor=2, output_shape=(9, 9))
    assert full.shape == (10, 10) and forced.shape == (9, 9)
    np.testing.assert_allclose(forced, full[:9, :9], rtol=0, atol=1e-12)
    assert fix_scale_and_shape((5, 5, 3), 2, (9, 9, 3)) == ((2.0, 2.0), (9, 9))


def test_shape_only_and_channels():
    image = _rng().random((12, 8, 3))
    assert fix_scale_and_shape(image.shape, output_shape=(6, 16)) == ((0.5, 2.0), (6, 16))
    assert imresize(image, output_shape=(6, 16, 3)).shape == (6, 16, 3)
    assert imresize(image, 0.5).shape == (6, 4, 3)
    assert imresize(image[:, :, 0], 2).shape == (24, 16)
    for c in range(3):  # channels are resized independently
        np.testing.assert_allclose(imresize(image, 0.5)[:, :, c], imresize(image[:, :, c], 0.5), atol=1e-12)


def test_dtype_and_no_mutation():
    image = _rng().integers(0, 256, (8, 8, 3)).astype(np.uint8)
    before = image.copy()
    out = imresize(image, 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(image, before)
    same = np.ones((4, 4))
    assert imresize(same, 1) is not same  # even a no-op returns a new array


# ---------------------------------------------------------------------------------------------------------------
# 3. Properties.


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("scale", [0.5, 0.3, 2, 3, (1.0, 1.5), (0.5, 2.0)])
def test_constant_image_stays_constant(kernel, scale):
    out = imresize(np.full((13, 10, 2), 0.7), scale, kernel=kernel)
    np.testing.assert_allclose(out, 0.7, rtol=0, atol=1e-12)


def test_constant_image_numeric_kernel():
    kernel = _rng().random((7, 7))
    out = imresize(np.full((13, 10), 0.7), 0.5, kernel=kernel / kernel.sum())
    np.testing.assert_allclose(out, 0.7, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", ["cubic", "lanczos3", "linear"])
@pytest.mark.parametrize("scale", [0.5, 2])
def test_rot90_and_flip_commute(kernel, scale):
    # Exact when in * scale is an integer: the sampling grid is then symmetric about the image centre.
    image = _rng(1).random((12, 16, 2))
    out = imresize(image, scale, kernel=kernel)
    np.testing.assert_allclose(imresize(np.rot90(image), scale, kernel=kernel), np.rot90(out), atol=1e-12)
    np.testing.assert_allclose(imresize(image[::-1], scale, kernel=kernel), out[::-1], atol=1e-12)
    np.testing.assert_allclose(imresize(image[:, ::-1], scale, kernel=kernel), out[:, ::-1], atol=1e-12)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("in_len, out_len, scale", [(10, 20, 2.0), (10, 5, 0.5), (9, 3, 1 / 3), (7, 12, 1.7)])
def test_resize_weights_rows_sum_to_one(kernel, in_len, out_len, scale):
    weights = resize_weights(in_len, out_len, scale, kernel)
    assert weights.shape == (out_len, in_len)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert not weights.flags.writeable
    # The dense matrix and the sparse taps used by imresize are the same linear map.
    np.testing.assert_allclose(imresize(np.eye(in_len), (1, scale), (in_len, out_len), kernel), weights.T, atol=1e-12)


def test_antialiasing_is_per_dimension():
    image = _rng(2).random((16, 16))
    # (1.0, 0.5): the horizontal dimension alone is downscaled, hence antialiased.
    out = imresize(image, (1.0, 0.5))
    np.testing.assert_allclose(out, image @ resize_weights(16, 8, 0.5, antialiasing=True).T, atol=1e-12)
    assert not np.allclose(out, imresize(image, (1.0, 0.5), antialiasing=False))
    np.testing.assert_allclose(out, imresize(image.T, (0.5, 1.0)).T, atol=1e-12)
    # (2.0, 0.5): the upscaled vertical dimension does not switch antialiasing off for the horizontal one.
    separate = imresize(imresize(image, (1.0, 0.5)), (2.0, 1.0))
    np.testing.assert_allclose(imresize(image, (2.0, 0.5)), separate, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# 4. numpy reference vs TF port.

TOLERANCE = {tf.float64: 1e-6, tf.float32: 1e-5}


def _numpy_batch(images, **kwargs):
    return np.stack([imresize(image, **kwargs) for image in images])


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("scale", [0.5, 2, (1.0, 1.5), (0.4, 1.0)])
def test_tf_matches_numpy_named(dtype, kernel, scale):
    image = _rng(3).random((11, 14, 3))
    out = imresize_tf(tf.constant(image, dtype), scale, kernel=kernel)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), imresize(image, scale, kernel=kernel), rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
def test_tf_matches_numpy_batched_in_tf_function(dtype):
    images = _rng(4).random((2, 9, 12, 3))
    kwargs = dict(scale_factor=2, output_shape=(17, 24))

    @tf.function
    def resize(x):
        return imresize_tf(x, **kwargs)

    out = resize(tf.constant(images, dtype))
    assert out.shape == (2, 17, 24, 3)
    np.testing.assert_allclose(out.numpy(), _numpy_batch(images, **kwargs), rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
# The last two: kernels larger than twice the image (tiny inputs with 13..17-tap given kernels) pad repeatedly.
@pytest.mark.parametrize("image_hw, kernel_size", [((17, 21), 9), ((16, 16), 9), ((16, 15), 8), ((5, 6), 3),
                                                   ((4, 5), 17), ((3, 2), 12)])
def test_tf_matches_numpy_numeric_kernel(dtype, image_hw, kernel_size):
    rng = _rng(5)
    kernel = rng.random((kernel_size, kernel_size)) + 0.01
    kernel /= kernel.sum()
    images = rng.random((2, *image_hw, 3))
    expected = _numpy_batch(images, scale_factor=0.5, kernel=kernel)
    out = tf.function(lambda x: imresize_tf(x, 0.5, kernel=kernel))(tf.constant(images, dtype))
    assert out.dtype == dtype and out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=TOLERANCE[dtype])
    single = imresize_tf(tf.constant(images[0], dtype), 0.5, kernel=kernel)
    np.testing.assert_allclose(single.numpy(), expected[0], rtol=0, atol=TOLERANCE[dtype])


# ---------------------------------------------------------------------------------------------------------------
# 5. Errors.


def test_errors():
    image = np.zeros((8, 8))
    with pytest.raises(ValueError, match="valid names: cubic"):
        imresize(image, 2, kernel="bicubic")
    with pytest.raises(ValueError, match="valid names"):
        resize_weights(8, 16, 2.0, kernel="nearest")
    with pytest.raises(ValueError, match="numeric kernels only downscale"):
        imresize(image, 2, kernel=np.ones((3, 3)) / 9)
    with pytest.raises(ValueError, match="numeric kernels only downscale"):
        imresize_tf(tf.zeros((8, 8, 1)), (0.5, 2), kernel=np.ones((3, 3)) / 9)
    with pytest.raises(ValueError, match="scale_factor, output_shape"):
        imresize(image)
    with pytest.raises(ValueError, match="scale_factor, output_shape"):
        imresize_tf(tf.zeros((8, 8, 1)))
