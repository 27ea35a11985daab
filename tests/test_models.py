import numpy as np
import pytest

from zssr_tf.models import GENERATORS, build_zssr_generator


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(16, 16), (24, 40)])
def test_shapes_follow_the_input(channels, size):
    model = build_zssr_generator(channels=channels, depth=3, width=8, seed=0)
    x = np.random.default_rng(0).random((2, *size, channels), dtype=np.float32)
    assert model(x).shape == (2, *size, channels)


def test_default_architecture_is_the_papers():
    model = build_zssr_generator(seed=0)
    convs = [layer for layer in model.layers if layer.name.startswith("filter_")]
    assert len(convs) == 8
    assert model.count_params() == 3 * 3 * (3 * 64 + 6 * 64 * 64 + 64 * 3)  # 224,640, no biases
    assert all(not layer.use_bias for layer in convs)
    assert [layer.activation.__name__ for layer in convs] == ["relu"] * 7 + ["linear"]
    assert GENERATORS["zssr"] is build_zssr_generator


def test_initialisation_statistics():
    model = build_zssr_generator(seed=1)
    first = model.get_layer("filter_0").kernel.numpy()
    hidden = np.concatenate([model.get_layer(f"filter_{i}").kernel.numpy().ravel() for i in range(1, 8)])
    # N(0, sqrt(0.1 / (3 * 3 * c_in))): 0.06086 for c_in = 3, 0.013176 for c_in = 64.
    assert first.std() == pytest.approx(np.sqrt(0.1 / 27), rel=0.1)
    assert hidden.std() == pytest.approx(np.sqrt(0.1 / 576), rel=0.02)
    assert abs(hidden.mean()) < 2e-4


def test_residual_network_starts_near_the_identity():
    model = build_zssr_generator(seed=0)
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    assert np.abs(model(x).numpy() - x).mean() < 0.02
    plain = build_zssr_generator(seed=0, learn_residual=False, depth=2, width=4)
    assert np.abs(plain(x).numpy()).mean() < 0.1


def test_seed_fixes_the_weights():
    a, b = build_zssr_generator(seed=3, depth=2, width=4), build_zssr_generator(seed=3, depth=2, width=4)
    c = build_zssr_generator(seed=4, depth=2, width=4)
    assert np.array_equal(a.get_weights()[0], b.get_weights()[0])
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
