"""Tests for zssr_tf.warp: an independent float64 reference, cv2 agreement, exact integer maps, graph use, augment."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import smooth_image
from zssr_tf.augment import draw_transform, random_augment
from zssr_tf.warp import warp_image

CROP = 16


def _kernel(t: float, a: float = -0.75) -> float:
    """OpenCV's cubic convolution kernel, written from its textbook definition."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def _reference_cubic(image: np.ndarray, matrix: np.ndarray, crop: int) -> tuple[np.ndarray, float]:
    """Continuous cubic warp in float64, one output pixel at a time, zero for every tap outside the source.

    Returns the output and the fraction of output pixels with at least one tap outside the source.
    """
    h, w = image.shape[:2]
    inverse = np.linalg.inv(matrix)
    out = np.zeros((crop, crop, image.shape[2]))
    touched = 0
    for y in range(crop):
        for x in range(crop):
            sx, sy, sw = inverse @ np.array([x, y, 1.0])
            sx, sy = sx / sw, sy / sw
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            outside = False
            for j in range(y0 - 1, y0 + 3):
                for i in range(x0 - 1, x0 + 3):
                    if 0 <= j < h and 0 <= i < w:
                        out[y, x] += _kernel(sy - j) * _kernel(sx - i) * image[j, i]
                    else:
                        outside = True
            touched += outside
    return out, touched / crop**2


def _random_matrix(rng: np.random.Generator, shape: tuple[int, int], perspective: bool) -> np.ndarray:
    """Rotation, per-axis scale in [0.5, 1.5], shear, translation (partly off the source), optional perspective."""
    theta = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    shear = np.array([[1.0, rng.normal(0, 0.2)], [rng.normal(0, 0.2), 1.0]])
    linear = shear @ rotation @ np.diag(rng.uniform(0.5, 1.5, size=2))
    centre = np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = -linear @ centre + (CROP - 1) / 2 + rng.uniform(-6, 6, size=2)
    if perspective:
        matrix[2, :2] = rng.normal(0, 0.01, size=2)
    return matrix


MATRICES = [_random_matrix(np.random.default_rng(seed), (20, 24), perspective=seed >= 3) for seed in range(6)]


def _cv2_warp(image: np.ndarray, matrix: np.ndarray, crop: int, flags: int) -> np.ndarray:
    out = cv2.warpPerspective(image, matrix, (crop, crop), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape((crop, crop, image.shape[2]))


def test_cubic_matches_float64_reference():
    image = np.random.default_rng(0).uniform(size=(20, 24, 3))
    partial = []
    for matrix in MATRICES:
        expected, fraction = _reference_cubic(image, matrix, CROP)
        partial.append(fraction)
        np.testing.assert_allclose(warp_image(image.astype(np.float32), matrix, CROP).numpy(), expected, atol=1e-5)
    # The matrices exercise the constant border: some outputs straddle or leave the source.
    assert max(partial) > 0.2


@pytest.mark.parametrize("interpolation, flags", [("cubic", cv2.INTER_CUBIC), ("bilinear", cv2.INTER_LINEAR)])
def test_agrees_with_cv2(interpolation, flags):
    # cv2 4.x quantises positions to 1/32 px, hence the loose bounds; the cv2 5.0 build agrees to ~3e-6.
    image = smooth_image(20, 24, seed=1)
    for matrix in MATRICES:
        ours = warp_image(image, matrix, CROP, interpolation=interpolation).numpy()
        diff = np.abs(ours - _cv2_warp(image, matrix, CROP, flags))
        assert diff.mean() < 2e-3 and diff.max() < 3e-2


def _signed_permutations() -> list[np.ndarray]:
    """The 8 rotations/mirrors as 2x2 integer matrices."""
    out = []
    for swap in (False, True):
        for sx in (1, -1):
            for sy in (1, -1):
                linear = np.diag([sx, sy]).astype(float)
                out.append(linear[::-1] if swap else linear)
    return out


@pytest.mark.parametrize("interpolation", ["cubic", "bilinear"])
def test_integer_maps_copy_pixels_exactly(interpolation):
    image = np.random.default_rng(2).uniform(size=(20, 24, 3)).astype(np.float32)
    rng = np.random.default_rng(3)
    cases = [np.eye(2)] + _signed_permutations()
    for k, linear in enumerate(cases):
        matrix = np.eye(3)
        matrix[:2, :2] = linear
        # k == 0 is the identity; the rest get integer offsets that keep part of the output off the source.
        matrix[:2, 2] = 0 if k == 0 else rng.integers(-8, 32, size=2)
        expected = np.zeros((CROP, CROP, 3), np.float32)
        inverse = np.linalg.inv(matrix)
        for y in range(CROP):
            for x in range(CROP):
                sx, sy = np.rint(inverse @ [x, y, 1])[:2].astype(int)
                if 0 <= sx < 24 and 0 <= sy < 20:
                    expected[y, x] = image[sy, sx]
        ours = warp_image(image, matrix, CROP, interpolation=interpolation).numpy()
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_far_outside_is_zero_and_never_wraps():
    image = np.random.default_rng(4).uniform(0.5, 1.0, size=(20, 24, 3)).astype(np.float32)
    for tx, ty in [(24, 0), (-24, 0), (0, 20), (1e7, -1e7)]:
        # Samples at x in [-24, -9] (or beyond the right edge) of valid rows: a flattened-index wrap would hit pixels.
        matrix = np.array([[1.0, 0, tx], [0, 1, ty], [0, 0, 1]])
        assert np.all(warp_image(image, matrix, CROP).numpy() == 0)
    # A horizon inside the output (perspective divide of 0 at x = 5) gives finite values, not NaN.
    inverse = np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, -5]])
    assert np.all(np.isfinite(warp_image(image, np.linalg.inv(inverse), CROP).numpy()))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("interpolation", ["cubic", "bilinear"])
def test_shape_dtype_channels(channels, interpolation):
    image = smooth_image(20, 24, channels=channels, seed=5).astype(np.float64)  # float64 input is cast
    out = warp_image(image, MATRICES[0], 12, interpolation=interpolation)
    assert out.shape == (12, 12, channels) and out.dtype == tf.float32
    if channels == 1:
        flags = cv2.INTER_CUBIC if interpolation == "cubic" else cv2.INTER_LINEAR
        assert np.abs(out.numpy() - _cv2_warp(image.astype(np.float32), MATRICES[0], 12, flags)).mean() < 2e-3


def test_tf_function_traces_once_and_tf_data():
    image = tf.constant(smooth_image(20, 24, seed=6))
    traces = 0

    @tf.function
    def warp(matrix):
        nonlocal traces
        traces += 1  # runs only while tracing
        return warp_image(image, matrix, CROP)

    eager = [warp_image(image, m, CROP).numpy() for m in MATRICES]
    for m, expected in zip(MATRICES, eager):
        np.testing.assert_allclose(warp(tf.constant(m)).numpy(), expected, atol=1e-6)
    assert traces == 1

    # Dynamic H, W in the map: the images are ragged across elements.
    def make(matrix, height):
        return warp_image(tf.image.resize(image, [height, 24]), matrix, CROP, interpolation="bilinear")

    dataset = tf.data.Dataset.from_tensor_slices((np.stack(MATRICES), np.array([20, 17, 23, 20, 19, 21])))
    mapped = dataset.map(make)
    assert mapped.element_spec.shape == (CROP, CROP, 3)
    outputs = list(mapped.as_numpy_iterator())
    assert len(outputs) == len(MATRICES) and all(o.shape == (CROP, CROP, 3) for o in outputs)
    cubic = list(tf.data.Dataset.from_tensor_slices(np.stack(MATRICES)).map(lambda m: warp_image(image, m, CROP)))
    for got, expected in zip(cubic, eager):
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_matches_random_augment():
    image = smooth_image(40, 48, seed=7)
    draws, augments = np.random.default_rng(8), np.random.default_rng(8)
    for _ in range(20):
        transform = draw_transform([image.shape[:2]], [1.0], draws, crop_size=32)
        ours = np.clip(warp_image(image, transform.matrix, 32).numpy(), 0, 1)
        father = random_augment([image], [1.0], augments, crop_size=32)
        assert np.abs(ours - father).mean() < 2e-3


def test_rejects_bad_arguments():
    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="interpolation"):
        warp_image(image, np.eye(3), 4, interpolation="nearest")
    with pytest.raises(ValueError, match="crop_size"):
        warp_image(image, np.eye(3), 0)
    with pytest.raises(ValueError, match="H, W, C"):
        warp_image(image[None], np.eye(3), 4)
