"""ZSRGAN on the engine: its examples, its step, its checkpoint, its scalars in every report, its schedule."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import smooth_image
from tests.test_summaries import read_events
from zssr_tf import ZSRGAN, ZSSR, Config, data
from zssr_tf.image_io import write_image
from zssr_tf.losses import perceptual_loss
from zssr_tf.models import build_vgg_features

TINY_GAN = dict(method="zsrgan", zsrgan_width=8, zsrgan_depth=3, zsrgan_discriminator_width=8,
                zsrgan_crop_size=64, vgg_weights="none", zsrgan_max_iters=12, zsrgan_test_every=4,
                zsrgan_learning_rate_decay_every=5, display_every=3, precision="float32")


@pytest.fixture
def gan_conf() -> Config:
    return Config().replace(**TINY_GAN)


def test_a_batch_is_one_crop_in_its_12_rotations_and_mirrors():
    image = smooth_image(70, 90)
    quiet = Config().replace(zsrgan_noise_std=0.0)
    sons, fathers = data.make_zsrgan_example(image, (2.0, 2.0), "cubic", quiet, 64, np.random.default_rng(0))
    assert sons.shape == fathers.shape == (12, 64, 64, 3) and fathers.dtype == np.float32
    assert np.array_equal(fathers[1], np.fliplr(fathers[0])) and np.array_equal(fathers[3], np.rot90(fathers[0]))
    assert np.array_equal(fathers[7], np.fliplr(np.rot90(fathers[0], 2)))
    assert np.array_equal(fathers[8], np.flipud(np.rot90(fathers[0], 2)))
    # The son is the father downscaled x2 and interpolated back: close to it, smoother than it.
    assert 0 < np.abs(sons - fathers).mean() < 0.05
    noisy, _ = data.make_zsrgan_example(image, (2.0, 2.0), "cubic", Config(), 64, np.random.default_rng(0))
    assert np.std(noisy - sons) == pytest.approx(0.05, rel=0.05)


def test_father_sizes_favour_the_inputs_and_never_go_below_the_crop():
    rng = np.random.default_rng(0)
    shapes = [data.draw_zsrgan_father_shape((100, 150), 64, 64, rng) for _ in range(2000)]
    shorter = np.array([min(s) for s in shapes])
    assert shorter.min() >= 64 and shorter.max() == 100
    assert all(abs(w / h - 1.5) < 0.02 for h, w in shapes)  # the input's aspect ratio
    # Probability proportional to the area: the upper half of the sides is drawn 2.9x as often as the lower half.
    upper = np.mean(shorter > 82)
    assert upper == pytest.approx(np.sum(np.arange(83, 101) ** 2) / np.sum(np.arange(64, 101) ** 2), abs=0.03)
    assert data.draw_zsrgan_father_shape((50, 80), 50, 64, rng) == (50, 80)  # small inputs: the input itself


def test_the_dataset_is_seeded_and_static():
    image = smooth_image(64, 72)

    def make():
        return data.build_zsrgan_dataset(image, (2.0, 2.0), "cubic", Config(), 64, (0, 2, 0), 3)

    first, second = list(make()), list(make())
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, second))
    assert make().element_spec[0].shape == (12, 64, 64, 3)


def test_one_step_lowers_both_losses_on_a_fixed_batch(gan_conf):
    gan = ZSRGAN(smooth_image(64, 64), gan_conf.replace(vgg_weights="none"))
    gan.vgg = build_vgg_features("random", "block1_conv2")  # the perceptual term too, with random weights
    lr_son, hr_father = next(iter(gan.example_dataset(1)))

    def losses():
        sr = gan.networks["generator"](lr_son, training=False)
        fake = gan.networks["discriminator"](sr, training=False)
        real = gan.networks["discriminator"](hr_father, training=False)
        g = tf.reduce_mean(tf.abs(sr - hr_father)) + perceptual_loss(gan.vgg, sr, hr_father) \
            - tf.reduce_mean(tf.math.log(fake))
        d = -0.5 * (tf.reduce_mean(tf.math.log(real)) + tf.reduce_mean(tf.math.log(1 - fake)))
        return float(g), float(d)

    gan._train_step(lr_son, hr_father)  # one step first: batch norm's moving statistics leave their start values
    g_before, d_before = losses()
    scalars = gan._train_step(lr_son, hr_father)
    g_after, d_after = losses()
    assert g_after < g_before and d_after < d_before
    assert set(scalars) == {"loss", "reconstruction_loss", "perceptual_loss", "adversarial_loss",
                            "discriminator_loss", "discriminator_real", "discriminator_fake"}
    assert float(scalars["perceptual_loss"]) > 0


def test_perceptual_loss_of_equal_images_is_zero_and_gray_is_repeated():
    features = build_vgg_features("random", "block1_conv2")
    image = tf.constant(smooth_image(16, 16)[None])
    assert float(perceptual_loss(features, image, image)) == 0.0
    gray = image[..., :1]
    assert float(perceptual_loss(features, gray, tf.repeat(gray, 3, axis=-1))) == pytest.approx(0.0, abs=1e-6)


def test_checkpoint_round_trip_restores_both_networks_and_optimizers_exactly(gan_conf, tmp_path):
    lr = smooth_image(64, 70)
    trained = ZSRGAN(lr, gan_conf)
    trained.run()
    trained.export_model(tmp_path / "ckpt")
    other = ZSRGAN(lr, gan_conf.replace(seed=5))
    other.checkpoint.read(tf.train.latest_checkpoint(tmp_path / "ckpt")).assert_existing_objects_matched()
    for name in ("generator", "discriminator"):
        a = trained.networks[name].weights + trained.optimizers[name].optimizer.variables
        b = other.networks[name].weights + other.optimizers[name].optimizer.variables
        assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b, strict=True)), name
        assert int(other.optimizers[name].optimizer.iterations) == gan_conf.zsrgan.max_iters
    # A ZSSR run can start from ZSRGAN's generator (same architecture): init_weights takes what fits.
    zssr = ZSSR(lr, gan_conf.replace(method="zssr", width=8, depth=3, init_weights=str(tmp_path / "ckpt")))
    assert np.array_equal(zssr.model.get_weights()[0], trained.networks["generator"].get_weights()[0])


def test_gan_run_writes_its_outputs_scalars_and_events(gan_conf, tmp_path, capsys):
    from tests.test_cli import zssr as run_command

    write_image(tmp_path / "in.png", smooth_image(64, 66))
    write_image(tmp_path / "in_gt.png", smooth_image(128, 132))
    flags = [f"--{name}={value}" for name, value in TINY_GAN.items()]
    status, out, err = run_command(capsys, f"--input={tmp_path / 'in.png'}", f"--ground_truth={tmp_path / 'in_gt.png'}",
                                   f"--output_dir={tmp_path / 'out'}", "--tensorboard", "--export_model", *flags)
    assert status == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == [
        "config.json", "in_comparison.png", "in_log.json", "in_record.json", "in_training.png",
        "in_zsrgan_X2.00X2.00.png",
        "in_zsrgan_checkpoint", "tb"]
    log = json.loads((tmp_path / "out" / "in_log.json").read_text())
    stage = log["stages"][0]
    assert log["method"] == "zsrgan" and stage["iterations"] == 12
    assert stage["loss_steps"] == [0, 3, 6, 9] and stage["test_steps"] == [0, 4, 8]
    assert set(stage["scalars"]) >= {"reconstruction_loss", "adversarial_loss", "discriminator_loss"}
    assert all(len(v) == 4 for v in stage["scalars"].values())
    assert stage["learning_rates"] == [1e-3, 1e-3, 5e-4, 5e-4] and stage["learning_rate_change_iters"] == [4, 9]
    assert stage["skipped_steps"] == {"generator": 0, "discriminator": 0}
    events = read_events(tmp_path / "out" / "tb" / "in")
    assert {"train/loss", "train/discriminator_loss", "train/adversarial_loss", "train/learning_rate",
            "quick_test/true_psnr"} <= set(events)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["method"] == "zsrgan"


@pytest.mark.parametrize("method", ["zssr", "zsrgan"])
def test_the_learning_rate_starts_again_at_each_gradual_stage(method, gan_conf):
    conf = gan_conf.replace(method=method, scale_factors="1.5,2", back_projection_iters="0,0", width=8, depth=3,
                            zsrgan_max_iters=6,
                            crop_size=32, max_iters=130, min_iters=10, run_test_every=5,
                            learning_rate_slope_range=20, learning_rate_policy_check_every=10,
                            learning_rate_change_ratio=0.0)  # ZSSR drops at every policy check
    trainer = (ZSSR if method == "zssr" else ZSRGAN)(smooth_image(64, 64), conf)
    rates = []
    original_start = trainer.start_stage

    def start_stage(stage):
        original_start(stage)
        rates.append(trainer.learning_rate if method == "zssr" else
                     float(trainer.optimizers["generator"].optimizer.learning_rate))

    trainer.start_stage = start_stage
    trainer.run()
    assert rates == pytest.approx([1e-3, 1e-3])
    assert all(h.learning_rate_change_iters for h in trainer.history)  # each stage lowered it before the next


def test_adam_settings_are_pinned():
    zssr = ZSSR(smooth_image(8, 8), Config().replace(width=2, depth=1))
    adam = zssr.optimizer
    assert (adam.beta_1, adam.beta_2, adam.epsilon) == (0.9, 0.999, 1e-8)  # TF1's epsilon, not Keras's 1e-7
    gan = ZSRGAN(smooth_image(64, 64), Config().replace(**TINY_GAN))
    for optimizer in gan.optimizers.values():
        adam = optimizer.optimizer
        assert (adam.beta_1, adam.beta_2, adam.epsilon) == (0.5, 0.999, 1e-8)
        assert float(adam.learning_rate) == pytest.approx(1e-3)


def test_small_inputs_and_missing_vgg_weights_fail_in_one_line(gan_conf, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="too small for zsrgan"):
        ZSRGAN(smooth_image(40, 80), gan_conf)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="vgg_weights=imagenet: no VGG16 ImageNet weights"):
        ZSRGAN(smooth_image(64, 64), gan_conf.replace(vgg_weights="imagenet"))


def test_a_wrong_ground_truth_fails_before_any_training(tiny_conf):
    conf = tiny_conf.replace(scale_factors="1.5,2", back_projection_iters="1,1")
    with pytest.raises(ValueError, match="ground truth 39x44 is smaller than the output 40x44"):
        ZSSR(smooth_image(20, 22), conf, ground_truth=smooth_image(39, 44))


def test_the_folder_scan_skips_what_this_project_wrote(tmp_path):
    from zssr_tf.app import find_inputs

    for name in ("a", "a_gt", "a_zssr_X2.00X2.00", "a_zsrgan_X1.50X1.50", "a_training", "a_comparison",
                 "b_training", "c_zssr_X2.00X2.00"):
        write_image(tmp_path / f"{name}.png", smooth_image(8, 8))
    inputs = [os.path.basename(path) for path, _, _ in find_inputs(str(tmp_path), 1)]
    # b_training and c_zssr_... have no image of their own beside them: they are someone's inputs.
    assert inputs == ["a.png", "b_training.png", "c_zssr_X2.00X2.00.png"]
