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
