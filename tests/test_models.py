import numpy as np
import pytest

from zssr_tf.models import DISCRIMINATORS, GENERATORS, build_dcgan_discriminator, build_vgg_features, \
    build_zssr_generator


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


@pytest.mark.parametrize("crop, map_side", [(64, 1), (128, 5), (96, 3)])
@pytest.mark.parametrize("channels", [1, 3])
def test_discriminator_maps_a_crop_to_a_probability_map(crop, map_side, channels):
    model = build_dcgan_discriminator(channels=channels, seed=0)
    x = np.random.default_rng(0).random((2, crop, crop, channels), dtype=np.float32)
    out = model(x, training=False).numpy()
    assert out.shape == (2, map_side, map_side, 1) and out.dtype == np.float32
    assert np.all((out > 0) & (out < 1))
    assert DISCRIMINATORS["dcgan"] is build_dcgan_discriminator


def test_discriminator_is_dcgans_with_four_blocks():
    model = build_dcgan_discriminator(seed=0)
    convs = [layer for layer in model.layers if layer.name.startswith("conv_")]
    assert [c.filters for c in convs] == [64, 128, 256, 512]
    assert all(c.kernel_size == (4, 4) and c.strides == (2, 2) and not c.use_bias for c in convs)
    assert len([layer for layer in model.layers if layer.name.startswith("batch_norm_")]) == 4
    assert model.get_layer("logits").filters == 1 and model.get_layer("logits").kernel_size == (4, 4)
    assert model.get_layer("leaky_relu_0").negative_slope == pytest.approx(0.2)


def test_vgg_features_stop_at_the_chosen_layer_and_are_frozen():
    features = build_vgg_features("random", "block3_conv1")  # random weights: tests only, never a reported number
    assert features.output.shape[-1] == 256 and features.layers[-1].name == "block3_conv1"
    assert not features.trainable and not features.trainable_weights
    assert features(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 8, 8, 256)


def test_missing_imagenet_weights_is_one_line_that_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="put vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 in") as info:
        build_vgg_features("imagenet")
    assert "\n" not in str(info.value) and str(tmp_path / "models") in str(info.value)
    with pytest.raises(ValueError, match="check the path"):
        build_vgg_features(str(tmp_path / "vgg.h5"))


def test_vgg_weights_load_from_a_file(tmp_path):
    import keras

    source = keras.applications.VGG16(include_top=False, weights=None)
    source.save_weights(tmp_path / "vgg16.weights.h5")
    features = build_vgg_features(str(tmp_path / "vgg16.weights.h5"), "block1_conv2")
    assert np.array_equal(features.get_layer("block1_conv1").kernel.numpy(),
                          source.get_layer("block1_conv1").kernel.numpy())
