"""Tests for zssr_tf.augment: father shapes, reproducibility, mode/source statistics and the two fixes."""

import numpy as np
import pytest

from zssr_tf.augment import AUGMENT_MODES, draw_transform, random_augment

LEAVE = dict(leave_as_is_probability=1.0, no_interpolate_probability=0.0)
NO_INTERP = dict(leave_as_is_probability=0.0, no_interpolate_probability=1.0)
AFFINE = dict(leave_as_is_probability=0.0, no_interpolate_probability=0.0)


def _image(h: int, w: int, c: int, seed: int = 0, low: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, 1.0, size=(h, w, c)).astype(np.float32)


def _dihedral(im: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(m, k) for m in (im, im[:, ::-1]) for k in range(4)]


def _find_window(big: np.ndarray, small: np.ndarray) -> bool:
    """Whether `small` equals big[y:y + h, x:x + w] exactly for some y, x."""
    h, w = small.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(big, (h, w), axis=(0, 1))  # (Y, X, C, h, w)
    return bool(np.any(np.all(windows == np.moveaxis(small, -1, 0), axis=(2, 3, 4))))


@pytest.mark.parametrize("c", [1, 3])
def test_shape_dtype_range(c):
    rng = np.random.default_rng(0)
    im = _image(70, 90, c)
    before = im.copy()
    for _ in range(20):
        father = random_augment([im], [1.0], rng, crop_size=32)
        assert father.shape == (32, 32, c) and father.dtype == np.float32
        assert father.min() >= 0.0 and father.max() <= 1.0
    np.testing.assert_array_equal(im, before)


def test_float64_input_and_pair_scales():
    rng = np.random.default_rng(1)
    ims = [_image(40, 40, 3).astype(np.float64), _image(60, 60, 3)]
    father = random_augment(ims, [[1.0, 1.0], [1.5, 1.5]], rng, max_scale=[1.5, 2.0], crop_size=24)
    assert father.shape == (24, 24, 3) and father.dtype == np.float32


@pytest.mark.parametrize("mode", [LEAVE, NO_INTERP, AFFINE], ids=["leave_as_is", "no_interp", "affine"])
def test_crop_bigger_than_image(mode):
    im = _image(20, 30, 3, low=0.5)
    for seed in range(5):
        father = random_augment([im], [1.0], np.random.default_rng(seed), crop_size=64, **mode)
        assert father.shape == (64, 64, 3)
        # The (possibly rotated/sheared) image sits at the top-left; the bottom/right is zero padding.
        assert np.all(father[48:] == 0) and np.all(father[:, 48:] == 0)
    father = random_augment([im], [1.0], np.random.default_rng(0), crop_size=64, **LEAVE)
    np.testing.assert_array_equal(father[:20, :30], im)


def test_seed_reproducibility():
    ims = [_image(50, 60, 3), _image(75, 90, 3, seed=1)]

    def fathers(seed):
        rng = np.random.default_rng(seed)
        return [random_augment(ims, [1.0, 1.5], rng, max_scale=1.5, crop_size=32) for _ in range(50)]

    a, b, c = fathers(123), fathers(123), fathers(124)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_mode_frequencies():
    rng = np.random.default_rng(2)
    n = 4000
    modes = [draw_transform([(64, 64)], [1.0], rng, crop_size=32).mode for _ in range(n)]
    freq = {m: modes.count(m) / n for m in AUGMENT_MODES}
    # Binomial std is at most sqrt(0.25 / 4000) = 0.008; allow ~3 std.
    assert freq == pytest.approx({"leave_as_is": 0.05, "no_interp": 0.45, "affine": 0.50}, abs=0.025)


def test_leave_as_is_is_exact_crop():
    im = _image(48, 56, 3)
    for seed in range(10):
        father = random_augment([im], [1.0], np.random.default_rng(seed), crop_size=24, **LEAVE)
        assert _find_window(im, father)


@pytest.mark.parametrize("shape, crop", [((40, 52), 24), ((33, 45), 20), ((32, 32), 32), ((32, 44), 32)])
def test_no_interp_is_exact_dihedral_crop(shape, crop):
    im = _image(*shape, 3)
    seen = set()
    for seed in range(40):
        father = random_augment([im], [1.0], np.random.default_rng(seed), crop_size=crop, **NO_INTERP)
        matches = [i for i, d in enumerate(_dihedral(im)) if _find_window(d, father)]
        assert matches, f"seed {seed}: not an exact crop of a rotation/mirror"
        seen.update(matches)
    assert seen == set(range(8))  # every rotation/mirror occurs


def test_no_interp_square_crop_of_whole_image_has_no_black_border():
    # The original rotated about (W/2, H/2) and left a black row/column here; fix (b) makes it a permutation.
    im = _image(32, 32, 1, low=0.5)
    for seed in range(20):
        father = random_augment([im], [1.0], np.random.default_rng(seed), crop_size=32, **NO_INTERP)
        assert np.sort(father, axis=None).tolist() == np.sort(im, axis=None).tolist()


def test_affine_crop_stays_inside_scaled_image():
    # Fix (a): without rotation/shear, every crop of a 256^2 image scaled by 0.5..1 lies inside the scaled image.
    im = _image(256, 256, 3, low=0.5)
    rng = np.random.default_rng(3)
    for _ in range(30):
        father = random_augment(
            [im], [1.0], rng, allow_rotation=False, scale_diff_sigma=0.0, shear_sigma=0.0, crop_size=128, **AFFINE
        )
        assert np.all(father > 0)


def test_affine_matrix_without_rotation_is_diagonal_scale():
    rng = np.random.default_rng(4)
    for _ in range(50):
        t = draw_transform(
            [(256, 256)], [1.0], rng, allow_rotation=False, scale_diff_sigma=0.0, shear_sigma=0.0, **AFFINE
        )
        assert t.mode == "affine" and 0.5 <= t.scale <= 1.0
        np.testing.assert_allclose(t.matrix[:2, :2], t.scale * np.eye(2))
        np.testing.assert_allclose(t.matrix[2], [0, 0, 1])


def test_source_selection():
    rng = np.random.default_rng(5)
    picks = []
    for _ in range(400):
        t = draw_transform(
            [(40, 40), (60, 60)], [1.0, [1.5, 1.5]], rng, max_scale=[1.5, 1.5], scale_diff_sigma=0, shear_sigma=0
        )
        assert t.source_index == int(t.scale > 1.0 + 1e-6)
        # Affine warps scale relative to the chosen source's base scale; the other modes do not scale.
        relative = t.scale / (1.5 if t.source_index else 1.0) if t.mode == "affine" else 1.0
        assert abs(np.linalg.det(t.matrix[:2, :2])) == pytest.approx(relative**2)
        picks.append(t.source_index)
    assert 0 < np.mean(picks) < 1  # both sources occur
    # The original passes one base scale per stage, more than there are images: a draw above every existing
    # image's base scale falls back to the last image.
    t = draw_transform([(40, 40)], [1.0, 2.0], np.random.default_rng(0), min_scale=1.5, max_scale=2.0, **AFFINE)
    assert t.source_index == 0


def test_source_selection_end_to_end():
    # Constant sources tell which one a father came from.
    ims = [np.full((64, 64, 1), 0.25, np.float32), np.full((96, 96, 1), 0.75, np.float32)]
    rng = np.random.default_rng(6)
    for _ in range(20):
        father = random_augment(ims, [1.0, 1.5], rng, min_scale=1.2, max_scale=1.5, crop_size=16, **NO_INTERP)
        np.testing.assert_array_equal(father, 0.75)
    father = random_augment(ims, [1.0, 1.5], rng, max_scale=1.5, crop_size=16, **LEAVE)
    np.testing.assert_array_equal(father, 0.25)


def test_too_few_base_scales():
    with pytest.raises(ValueError, match="2 images"):
        random_augment([_image(8, 8, 1)] * 2, [1.0], np.random.default_rng(0), crop_size=4)
