"""The course report's ZSSR variants: pixel-shuffle upsampling, the hybrid (L1 + content) loss, a pretrained backbone,
and `zssr pretrain` (which also makes ZSSR networks to fine-tune)."""

import os

import keras
import numpy as np
import pytest

import zssr_tf.methods.zssr as zssr_method
from tests.conftest import smooth_image
from tests.test_cli import zssr
from zssr_tf import ZSSR, Config, data, pretrain
from zssr_tf.config import ConfigError
from zssr_tf.imresize import imresize
from zssr_tf.image_io import write_image
from zssr_tf.losses import l1_loss, vgg_preprocess
from zssr_tf.models import build_vdsr, build_vgg_features, build_zssr_generator
from zssr_tf.models.generators import Interpolate, receptive_field_radius
from zssr_tf.models.weights import save_model


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kernel", ["cubic", "linear", "lanczos3"])
def test_interpolate_layer_is_matlab_imresize_on_any_size(scale, kernel):
    image = smooth_image(13, 17)
    out = Interpolate(scale, kernel)(image[None]).numpy()[0]
    np.testing.assert_allclose(out, imresize(image, scale, kernel=kernel), atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pixel_shuffle_generator_shapes_on_odd_sizes(scale):
    net = build_zssr_generator(channels=3, depth=3, width=8, upsampler="pixel_shuffle", scale=scale, seed=0)
    assert net.scale == scale and net.receptive_field_radius >= 3
    assert net.get_layer("filter_2").filters == 3 * scale**2
    out = net(smooth_image(11, 7)[None]).numpy()
    assert out.shape == (1, 11 * scale, 7 * scale, 3)
    # The residual is the interpolated input: with the last layer at zero the network is MATLAB's imresize.
    last = net.get_layer("filter_2")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    np.testing.assert_allclose(net(smooth_image(11, 7)[None]).numpy()[0], imresize(smooth_image(11, 7), scale),
                               atol=1e-5)
    gray = build_zssr_generator(channels=1, depth=2, width=4, upsampler="pixel_shuffle", scale=scale)
    assert gray(np.zeros((1, 5, 6, 1), np.float32)).shape == (1, 5 * scale, 6 * scale, 1)


def test_pixel_shuffle_refuses_non_integer_scales():
    with pytest.raises(ValueError, match="integer scale factor"):
        build_zssr_generator(upsampler="pixel_shuffle", scale=1)
    with pytest.raises(ConfigError, match="upsampler=pixel_shuffle: the scale factor 1.5x1.5 is not an integer"):
        Config().replace(upsampler="pixel_shuffle", scale_factors="1.5,2", back_projection_iters="2,2")
    with pytest.raises(ConfigError, match="not an integer"):
        Config().replace(upsampler="pixel_shuffle", scale_factors="2x1")
    with pytest.raises(ConfigError, match="upsampler"):
        Config().replace(upsampler="transpose")
    assert Config().replace(upsampler="pixel_shuffle", scale_factors="2,4", back_projection_iters="1,1")


def test_pixel_shuffle_examples_are_sons_at_the_lr_size(tiny_conf):
    image = smooth_image(40, 50)
    conf = tiny_conf.replace(crop_size=30)
    for builder in data.PIPELINE_BUILDERS.values():
        son, father = next(iter(builder([image], ((1.0, 1.0), (3.0, 3.0)), (3.0, 3.0), "cubic", conf, 30,
                                        seed=(0, 0, 0), num_examples=1, interpolated=False)))
        assert son.shape == (1, 10, 10, 3) and father.shape == (1, 30, 30, 3)
        np.testing.assert_allclose(son[0], data.father_to_son(father[0].numpy(), (3.0, 3.0)), atol=2e-3)


def test_pixel_shuffle_zssr_trains_tiles_and_goes_through_integer_stages(tiny_conf):
    image = smooth_image(37, 41)
    conf = tiny_conf.replace(upsampler="pixel_shuffle", scale_factors="3", crop_size=25, tile_size=16)
    net = ZSSR(image, conf)
    assert net.crop_size == 24  # a multiple of the scale: the son is a third of the father exactly
    out = net.run()
    assert out.shape == (111, 123, 3) and net.model.scale == 3
    # Prediction on 16-pixel tiles gives the one-piece result.
    whole = np.clip(net.model(image[None]).numpy()[0], 0, 1)
    np.testing.assert_allclose(net.forward_pass(image), whole, atol=1e-5)
    # x2 then x4: the x4 network keeps the x2 network's hidden layers and gets a new last layer.
    gradual = ZSSR(image, tiny_conf.replace(upsampler="pixel_shuffle", scale_factors="2,4",
                                            back_projection_iters="1,1", max_iters=10))
    kept = []
    original_build = gradual.build_network

    def build_network(stage, restart=0, keep_from=None):
        if keep_from is not None:
            kept.append(keep_from.get_layer("filter_0").get_weights()[0])
        original_build(stage, restart, keep_from)

    gradual.build_network = build_network
    assert gradual.run().shape == (148, 164, 3)
    assert gradual.model.scale == 4 and len(kept) == 1
    # The hidden layer went on training from the x2 network's weights (not from new random ones).
    fresh = build_zssr_generator(3, 3, 8, seed=gradual.conf.run.seed * 1000 + 100, upsampler="pixel_shuffle",
                                 scale=4)
    assert not np.allclose(kept[0], fresh.get_layer("filter_0").get_weights()[0])


@pytest.fixture
def random_vgg(monkeypatch):
    """The content loss with random VGG16 weights (tests only: never a reported number)."""
    monkeypatch.setattr(zssr_method, "build_vgg_features", lambda weights, layers: build_vgg_features("random", layers))


@pytest.mark.parametrize("upsampler", ["interpolate", "pixel_shuffle"])
def test_hybrid_loss_is_l1_plus_weighted_content_of_the_whole_image(tiny_conf, random_vgg, upsampler):
    image = smooth_image(30, 34)
    weight = 0.01
    net = ZSSR(image, tiny_conf.replace(perceptual_weight=weight, upsampler=upsampler,
                                        perceptual_layers="block1_conv2,block2_conv2"))
    son, father = next(iter(net.example_dataset(1)))
    generator = net.model
    before = [w.numpy() for w in generator.trainable_weights]
    # What the step must compute, from the weights before it.
    whole_son = data.father_to_son(image, (2.0, 2.0))
    if upsampler == "interpolate":
        whole_son = data.interpolate(whole_son, (2.0, 2.0), image.shape)
    output = generator(whole_son[None])[:, :30, :34]
    features = net._vgg(vgg_preprocess(output))
    targets = net._vgg(vgg_preprocess(image[None]))
    content = np.mean([l1_loss(f, t).numpy() for f, t in zip(features, targets)])
    l1 = l1_loss(generator(son), father).numpy()
    scalars = net.train_step(son, father)
    assert scalars["content_loss"].numpy() == pytest.approx(content, rel=1e-4)
    assert scalars["l1_loss"].numpy() == pytest.approx(l1, rel=1e-5)
    assert scalars["loss"].numpy() == pytest.approx(l1 + weight * content, rel=1e-5)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, generator.trainable_weights))


def test_hybrid_loss_with_weight_zero_is_zssr_l1_and_every_n_skips(tiny_conf, random_vgg):
    image = smooth_image(30, 34)
    plain = ZSSR(image, tiny_conf)
    zero = ZSSR(image, tiny_conf.replace(perceptual_weight=0.0, perceptual_every=3))
    assert zero._vgg is None
    np.testing.assert_array_equal(plain.run(), zero.run())
    sparse = ZSSR(image, tiny_conf.replace(perceptual_weight=0.1, perceptual_every=3))
    examples = iter(sparse.example_dataset(4))
    contents = [float(sparse._train_step(*next(examples))["content_loss"]) for _ in range(4)]
    assert contents[0] > 0 and contents[1] == contents[2] == 0 and contents[3] > 0
    with pytest.raises(ConfigError, match="perceptual_layers"):
        tiny_conf.replace(perceptual_layers="block9_conv1")


def test_hybrid_loss_without_vgg_weights_fails_in_one_line(tiny_conf, tmp_path):
    with pytest.raises(ValueError, match="no VGG16 ImageNet weights at"):
        ZSSR(smooth_image(30, 34), tiny_conf.replace(perceptual_weight=0.1, vgg_weights=str(tmp_path / "v.h5")))


@pytest.fixture
def backbone_path(tmp_path) -> str:
    path = str(tmp_path / "backbone.keras")
    save_model(build_vdsr(3, depth=3, width=8, seed=0), path)
    return path


def test_backbone_is_frozen_and_the_zssr_network_trains(tiny_conf, backbone_path):
    image = smooth_image(30, 34)
    net = ZSSR(image, tiny_conf.replace(backbone=backbone_path))
    backbone = net._backbone
    assert not backbone.trainable and net.model.receptive_field_radius == 3 + 3
    frozen = [w.numpy() for w in backbone.weights]
    trained = [w.numpy() for w in net.model.trainable_weights]
    assert len(trained) == 3  # the ZSSR network's three convolutions only
    son, father = next(iter(net.example_dataset(1)))
    net.train_step(son, father)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(frozen, backbone.weights))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(trained, net.model.trainable_weights))
    # The ZSSR network refines the backbone's output of the interpolated input.
    interpolated = data.interpolate(image, (2.0, 2.0), (60, 68))
    zssr_part = net.model.get_layer("zssr_generator")
    np.testing.assert_allclose(net.model(interpolated[None]).numpy(),
                               zssr_part(backbone(interpolated[None])).numpy(), atol=1e-6)
    assert net.run().shape == (60, 68, 3)


def test_bad_backbones_fail_in_one_line(tiny_conf, backbone_path, tmp_path):
    with pytest.raises(ConfigError, match="not a .keras file"):
        tiny_conf.replace(backbone="net.h5")
    with pytest.raises(ConfigError, match="cannot go with --upsampler=pixel_shuffle"):
        tiny_conf.replace(backbone=backbone_path, upsampler="pixel_shuffle")
    with pytest.raises(ValueError, match="backbone: no such file"):
        ZSSR(smooth_image(30, 34), tiny_conf.replace(backbone=str(tmp_path / "none.keras")))
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a Keras model file"):
        ZSSR(smooth_image(30, 34), tiny_conf.replace(backbone=str(tmp_path / "junk.keras")))
    with pytest.raises(ValueError, match="takes 3-channel images; this image has 1 channel"):
        ZSSR(smooth_image(30, 34, channels=1), tiny_conf.replace(backbone=backbone_path))
    upscaling = str(tmp_path / "upscaling.keras")
    save_model(build_zssr_generator(3, 2, 4, upsampler="pixel_shuffle", scale=2), upscaling)
    with pytest.raises(ValueError, match="maps 16x16x3 images to 32x32x3; a backbone must keep the size"):
        ZSSR(smooth_image(30, 34), tiny_conf.replace(backbone=upscaling))


def test_a_run_behind_a_backbone_exports_and_starts_another(tiny_conf, backbone_path, tmp_path):
    conf = tiny_conf.replace(backbone=backbone_path, max_iters=5)
    first = ZSSR(smooth_image(30, 34), conf)
    first.run()
    first.export_model(tmp_path / "trained.keras")
    second = ZSSR(smooth_image(30, 34, seed=1), conf.replace(init_weights=str(tmp_path / "trained.keras")))
    for a, b in zip(first.model.weights, second.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_receptive_field_radius_of_a_loaded_network(backbone_path):
    assert receptive_field_radius(keras.saving.load_model(backbone_path)) == 3


@pytest.fixture
def hr_dir(tmp_path) -> str:
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(2):
        write_image(folder / f"hr{i}.png", smooth_image(40, 48, seed=i))
    write_image(folder / "gray.png", smooth_image(36, 36, channels=1))
    return str(folder)


PRETRAIN = dict(pretrain_steps=6, pretrain_batch_size=2, pretrain_crop_size=16, pretrain_vdsr_depth=3,
                pretrain_vdsr_width=8, pretrain_checkpoint_every=3, progress=False, display_every=2)


def test_pretrain_resumes_from_its_checkpoint_as_if_never_stopped(hr_dir, tmp_path, monkeypatch):
    conf = Config().replace(**PRETRAIN)
    straight = pretrain.pretrain(conf, hr_dir, str(tmp_path / "straight.keras"))
    assert straight.steps == 6 and straight.resumed_from == 0
    # Killed while making batch 4 (after the checkpoint of step 3, during step 5), then started again.
    make_batch = pretrain.make_batch

    def failing(images, conf, crop_size, interpolated, index):
        if index == 4:
            raise RuntimeError("killed")
        return make_batch(images, conf, crop_size, interpolated, index)

    monkeypatch.setattr(pretrain, "make_batch", failing)
    with pytest.raises(Exception, match="killed"):
        pretrain.pretrain(conf, hr_dir, str(tmp_path / "resumed.keras"))
    assert not os.path.exists(tmp_path / "resumed.keras")
    monkeypatch.setattr(pretrain, "make_batch", make_batch)
    resumed = pretrain.pretrain(conf, hr_dir, str(tmp_path / "resumed.keras"))
    assert resumed.resumed_from == 3 and resumed.steps == 3
    a, b = (keras.saving.load_model(str(tmp_path / f"{n}.keras")) for n in ("straight", "resumed"))
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(wa.numpy(), wb.numpy(), atol=1e-6)
    # A complete checkpoint only writes the network again.
    assert pretrain.pretrain(conf, hr_dir, str(tmp_path / "resumed.keras")).steps == 0


def test_pretrain_refuses_a_checkpoint_of_other_flags_and_makes_gray_networks(hr_dir, tmp_path, tiny_conf):
    conf = Config().replace(**PRETRAIN)
    path = str(tmp_path / "new" / "folder" / "net.keras")  # folders are made
    pretrain.pretrain(conf.replace(pretrain_steps=3), hr_dir, path)
    with pytest.raises(ValueError, match="was made with other flags"):
        pretrain.pretrain(conf, hr_dir, path)
    assert pretrain.pretrain(conf.replace(pretrain_steps=3, pretrain_checkpoint_every=1), hr_dir, path).steps == 0
    gray = str(tmp_path / "gray.keras")
    pretrain.pretrain(conf.replace(pretrain_channels=1), hr_dir, gray)
    assert ZSSR(smooth_image(30, 34, channels=1), tiny_conf.replace(backbone=gray)).run().shape == (60, 68, 1)


def test_pretrained_zssr_network_starts_a_run(hr_dir, tmp_path, tiny_conf):
    conf = tiny_conf.replace(**PRETRAIN, pretrain_arch="zssr")
    path = str(tmp_path / "zssr.keras")
    pretrain.pretrain(conf, hr_dir, path)
    started = ZSSR(smooth_image(30, 34), tiny_conf.replace(init_weights=path))
    saved = keras.saving.load_model(path)
    for a, b in zip(saved.weights, started.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A pixel-shuffle ZSSR network pretrains at one integer scale.
    shuffle = tiny_conf.replace(**PRETRAIN, pretrain_arch="zssr", upsampler="pixel_shuffle", scale_factors="3")
    pretrain.pretrain(shuffle, hr_dir, str(tmp_path / "ps.keras"))
    assert keras.saving.load_model(str(tmp_path / "ps.keras")).output_shape[-1] == 3


def test_pretrain_command_line(hr_dir, tmp_path, capsys):
    flags = [f"--{name}={value}" for name, value in PRETRAIN.items() if name != "progress"]
    status, out, err = zssr(capsys, "pretrain", f"--input={hr_dir}", f"--output={tmp_path / 'net.keras'}",
                            "--arch=vdsr", *flags)
    assert status == 0 and "pretrain: wrote" in out and os.path.isfile(tmp_path / "net.keras")
    status, _, err = zssr(capsys, "pretrain", f"--input={hr_dir}")
    assert status == 2 and "needs --input=DIR" in err
    status, _, err = zssr(capsys, "pretrain", f"--input={hr_dir}", f"--output={tmp_path / 'big.keras'}",
                          "--pretrain_crop_size=64")
    assert status == 1 and "smaller than the crop" in err and len(err.strip().splitlines()) == 1
    status, _, err = zssr(capsys, "pretrain", f"--input={tmp_path / 'none'}", f"--output={tmp_path / 'n.keras'}")
    assert status == 1 and "not a folder" in err
    status, out, _ = zssr(capsys, "pretrain", f"--input={hr_dir}", f"--output={tmp_path / 'gradual.keras'}",
                          "--scale_factors=2,4", *flags)  # no --back_projection_iters needed
    assert status == 0 and "pretrain: wrote" in out
    status, _, err = zssr(capsys, "train", f"--input={hr_dir}")
    assert status == 2 and "the commands are pretrain and estimate-kernel" in err
