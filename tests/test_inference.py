import numpy as np
import pytest

from tests.conftest import smooth_image
from zssr_tf.imresize import imresize
from zssr_tf.inference import back_projection, dihedral, final_test, undo_dihedral


def bicubic(x, sf=(2.0, 2.0)):
    return np.clip(imresize(x, sf), 0, 1)


@pytest.mark.parametrize("k", range(8))
def test_undo_dihedral_inverts(k):
    x = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    assert np.array_equal(undo_dihedral(dihedral(x, k), k), x)


def test_the_eight_transforms_are_distinct():
    x = np.arange(9).reshape(3, 3, 1)
    assert len({dihedral(x, k).tobytes() for k in range(8)}) == 8


def test_back_projection_lowers_the_lr_error_and_keeps_inputs():
    lr = smooth_image(20, 24)
    sr = np.clip(bicubic(lr) + np.random.default_rng(0).normal(0, 0.05, (40, 48, 3)), 0, 1)
    before = sr.copy()
    error = lambda y: np.abs(imresize(y, 0.5) - lr).mean()  # noqa: E731
    projected = back_projection(sr, lr, "cubic", "cubic", (2.0, 2.0))
    assert error(projected) < 0.5 * error(sr)
    assert np.array_equal(sr, before)
    assert projected.min() >= 0 and projected.max() <= 1


def test_self_ensemble_of_an_identity_network_is_back_projected_bicubic():
    lr = smooth_image(15, 18)
    expected = bicubic(lr)
    for _ in range(2 * 3):  # 3 iterations on each output, 3 more after the median
        expected = back_projection(expected, lr, "cubic", "cubic", (2.0, 2.0))
    result = final_test(bicubic, lr, (2.0, 2.0), back_projection_iters=3)
    assert result.shape == (30, 36, 3) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-6)


def test_anisotropic_scale_uses_four_transforms_and_keeps_axes():
    lr = smooth_image(10, 12)
    calls = []

    def forward(x):
        calls.append(x.shape)
        return bicubic(x, (1.0, 1.5))

    out = final_test(forward, lr, (1.0, 1.5), back_projection_iters=1)
    assert len(calls) == 4 and all(shape == (10, 12, 3) for shape in calls)
    assert out.shape == (10, 18, 3)


def test_no_flip_runs_the_network_once():
    calls = []
    final_test(lambda x: calls.append(1) or bicubic(x), smooth_image(8, 8), (2.0, 2.0), output_flip=False)
    assert len(calls) == 1


def test_median_rejects_one_outlying_transform():
    lr = smooth_image(8, 8)
    outputs = iter(range(8))

    def forward(x):
        y = bicubic(x)
        return np.ones_like(y) if next(outputs) == 0 else y  # one broken output of eight

    result = final_test(forward, lr, (2.0, 2.0), back_projection_iters=0)
    np.testing.assert_allclose(result, bicubic(lr), atol=1e-6)


def test_tiled_prediction_equals_untiled():
    from zssr_tf.inference import predict_tiled
    from zssr_tf.models import build_zssr_generator

    model = build_zssr_generator(depth=4, width=8, seed=0, init_variance=2.0)
    predict = lambda x: model(x[None]).numpy()[0]  # noqa: E731
    image = smooth_image(45, 70)
    whole = predict(image)
    for tile in (16, 25, 64):
        np.testing.assert_allclose(predict_tiled(predict, image, tile, margin=4), whole, atol=1e-5)
    assert np.abs(predict_tiled(predict, image, 16, margin=0) - whole).max() > 1e-3  # the margin matters


def _local_network(scale_factor):
    """A stand-in SR network: bicubic interpolation, then a 3x3 mix and a nonlinearity (local, like a CNN)."""
    from zssr_tf import data
    from zssr_tf.imresize import fix_scale_and_shape

    def forward_pass(lr):
        up = data.interpolate(lr, scale_factor, fix_scale_and_shape(lr.shape, scale_factor)[1], "cubic")
        padded = np.pad(up, ((1, 1), (1, 1), (0, 0)))
        mixed = sum(padded[i:i + up.shape[0], j:j + up.shape[1]] * (0.1 * i + 0.05 * j + 0.1)
                    for i in range(3) for j in range(3))
        return np.clip(np.tanh(1.3 * mixed / 1.35), 0, 1).astype(np.float32)

    return forward_pass


KERNEL_9 = np.outer(np.hanning(9), np.hanning(9)) / np.outer(np.hanning(9), np.hanning(9)).sum()


@pytest.mark.parametrize("shape, scale_factor, kernel", [
    ((97, 110, 3), (2.0, 2.0), "cubic"), ((96, 90, 1), (2.0, 2.0), KERNEL_9), ((91, 89, 3), (1.5, 1.5), "cubic"),
    ((90, 101, 3), (2.0, 1.5), "cubic"), ((81, 73, 3), (4.0, 4.0), "cubic")])
def test_the_streamed_final_test_equals_the_one_piece_one(shape, scale_factor, kernel):
    from zssr_tf import inference

    lr = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    forward_pass = _local_network(scale_factor)
    whole = final_test(forward_pass, lr, scale_factor, kernel, "cubic", 2)
    tile = 60  # 3 x 3 to 5 x 5 tiles
    rows, cols = inference._tile_grids(lr.shape, scale_factor, kernel, "cubic", 2, tile)
    assert rows.tile + 2 * rows.margin < rows.lr_len  # the margins do not make a tile the whole image
    streamed = final_test(forward_pass, lr, scale_factor, kernel, "cubic", 2, tile_size=tile, network_margin=4)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_the_streamed_final_tests_margin_matters(monkeypatch):
    import dataclasses

    from zssr_tf import inference

    lr = np.random.default_rng(0).uniform(0, 1, (97, 110, 3)).astype(np.float32)
    forward_pass = _local_network((2.0, 2.0))
    grids = inference._tile_grids
    monkeypatch.setattr(inference, "_tile_grids",
                        lambda *args: (g := grids(*args)) and tuple(dataclasses.replace(x, margin=2) for x in g))
    streamed = final_test(forward_pass, lr, (2.0, 2.0), "cubic", "cubic", 2, tile_size=60, network_margin=4)
    assert np.abs(streamed - final_test(forward_pass, lr, (2.0, 2.0), "cubic", "cubic", 2)).max() > 1e-3


def test_scales_whose_grids_never_line_up_are_done_in_one_piece():
    from zssr_tf import inference

    assert inference._tile_grids((50, 50, 3), (1.37251, 1.37251), "cubic", "cubic", 2, 16) is None
    assert inference._tile_grids((50, 50, 3), (1.5, 1.5), KERNEL_9, "cubic", 2, 16) is None  # numeric kernel
    assert inference._tile_grids((50, 50, 3), (2.0, 2.0), "cubic", "cubic", 2, 100) is None  # fits one tile


def test_without_back_projections_the_network_margin_makes_the_tiles_exact():
    lr = np.random.default_rng(0).uniform(0, 1, (97, 110, 3)).astype(np.float32)
    forward_pass = _local_network((2.0, 2.0))  # reaches 1 + 3 (its 3x3 mix, the cubic interpolation) LR pixels
    whole = final_test(forward_pass, lr, (2.0, 2.0), "cubic", "cubic", 0)
    streamed = final_test(forward_pass, lr, (2.0, 2.0), "cubic", "cubic", 0, tile_size=60, network_margin=4)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    cut = final_test(forward_pass, lr, (2.0, 2.0), "cubic", "cubic", 0, tile_size=60, network_margin=0)
    assert np.abs(cut - whole).max() > 1e-3
