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
    sons, fathers = data.make_zsrgan_example(image, (2.0, 2.0), "cubic", Config(), 64, np.random.default_rng(0))
    assert sons.shape == fathers.shape == (12, 64, 64, 3) and fathers.dtype == np.float32
    assert np.array_equal(fathers[1], np.fliplr(fathers[0])) and np.array_equal(fathers[3], np.rot90(fathers[0]))
    assert np.array_equal(fathers[7], np.fliplr(np.rot90(fathers[0], 2)))
    assert np.array_equal(fathers[8], np.flipud(np.rot90(fathers[0], 2)))
    # The son is the father downscaled x2 and interpolated back, with no noise (the generator draws its own).
    assert 0 < np.abs(sons - fathers).mean() < 0.01


def test_fixed_crop_fathers_favour_the_inputs_and_never_go_below_the_crop():
    rng = np.random.default_rng(0)
    shapes = [data.draw_zsrgan_father_shape((100, 150), 64, 64, rng, "fixed_crop") for _ in range(2000)]
    shorter = np.array([min(s) for s in shapes])
    assert shorter.min() >= 64 and shorter.max() == 100
    assert all(abs(w / h - 1.5) < 0.02 for h, w in shapes)  # the input's aspect ratio
    # Probability proportional to the area: the upper half of the sides is drawn 2.9x as often as the lower half.
    upper = np.mean(shorter > 82)
    assert upper == pytest.approx(np.sum(np.arange(83, 101) ** 2) / np.sum(np.arange(64, 101) ** 2), abs=0.03)
    assert data.draw_zsrgan_father_shape((50, 80), 50, 64, rng, "fixed_crop") == (50, 80)  # the input itself


def test_authors_fathers_go_down_to_64_with_even_sides_and_the_crop_follows():
    rng = np.random.default_rng(0)
    shapes = np.array([data.draw_zsrgan_father_shape((128, 128), 128, 64, rng) for _ in range(3000)])
    assert shapes.min() == 64 and shapes.max() == 128 and np.all(shapes % 2 == 0)
    sides = np.arange(64, 129, 2)
    assert np.mean(shapes[:, 0] < 96) == pytest.approx(np.sum(sides[sides < 96] ** 2) / np.sum(sides**2), abs=0.03)
    # A 128-px input: the crop is the father's side, so real batches are no longer all the whole input.
    conf = Config().replace(zsrgan_crop_size=128)
    crops = {data.make_zsrgan_example(smooth_image(128, 128), (2.0, 2.0), "cubic", conf, 128,
                                      np.random.default_rng(i))[1].shape[1] for i in range(12)}
    assert len(crops) > 3 and min(crops) >= 64 and max(crops) <= 128
    wide = data.draw_zsrgan_father_shape((100, 151), 128, 64, rng)
    assert wide[0] % 2 == 0 and wide[1] % 2 == 0 and abs(wide[1] / wide[0] - 1.51) < 0.03


@pytest.mark.parametrize("fathers", ["authors", "fixed_crop"])
def test_the_dataset_is_seeded(fathers):
    image = smooth_image(64, 72)
    conf = Config().replace(zsrgan_fathers=fathers)

    def make():
        return data.build_zsrgan_dataset(image, (2.0, 2.0), "cubic", conf, 64, (0, 2, 0), 3)

    first, second = list(make()), list(make())
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, second))
    side = 64 if fathers == "fixed_crop" else None  # one step trace either way: unknown sides are one signature
    assert make().element_spec[0].shape.as_list() == [12, side, side, 3]


def test_noise_is_in_the_convolution_branch_only_and_at_test_when_asked():
    from zssr_tf.models import build_zssr_generator

    image = tf.constant(smooth_image(16, 16)[None])
    for at_test in (False, True):
        generator = build_zssr_generator(width=4, depth=3, seed=0, branch_range="-1,1", branch_noise_std=0.1,
                                         branch_noise_at_test=at_test)
        assert not np.array_equal(generator(image, training=True), generator(image, training=True))
        same = np.array_equal(generator(image, training=False), generator(image, training=False))
        assert same != at_test
        generator.set_weights([np.zeros_like(w) if w.ndim == 4 else w for w in generator.get_weights()])
        np.testing.assert_array_equal(generator(image, training=True), image)  # no noise on the residual


def test_the_branch_computes_in_minus_one_one():
    from zssr_tf.models import build_zssr_generator

    image = tf.constant(smooth_image(16, 16)[None])
    a = build_zssr_generator(width=4, depth=2, seed=0, learn_residual=True, branch_range="-1,1")
    b = build_zssr_generator(width=4, depth=2, seed=0, learn_residual=False)
    np.testing.assert_allclose(a(image), image + 0.5 * b(image * 2 - 1), atol=1e-6)


def tiny_quiet_gan(update="d_then_g", value_range="-1,1"):
    conf = Config().replace(**TINY_GAN, zsrgan_noise_std=0.0, zsrgan_update=update, zsrgan_value_range=value_range)
    gan = ZSRGAN(smooth_image(64, 64), conf)
    return (gan, *next(iter(gan.example_dataset(1))))


@pytest.mark.parametrize("value_range", ["-1,1", "0,1"])
def test_the_l1_is_computed_in_the_value_range(value_range):
    gan, lr_son, hr_father = tiny_quiet_gan(value_range=value_range)
    sr = gan.networks["generator"](lr_son, training=True)
    scale = 2.0 if value_range == "-1,1" else 1.0
    scalars = gan._train_step(lr_son, hr_father)
    assert float(scalars["reconstruction_loss"]) == pytest.approx(scale * float(tf.reduce_mean(tf.abs(sr - hr_father))),
                                                                   rel=1e-5)


@pytest.mark.parametrize("update", ["d_then_g", "joint"])
def test_the_generator_sees_the_updated_discriminator_as_the_authors(update):
    from zssr_tf.losses import binary_cross_entropy

    gan, lr_son, hr_father = tiny_quiet_gan(update)
    generator, discriminator = gan.networks["generator"], gan.networks["discriminator"]
    fake = generator(lr_son, training=True) * 2 - 1
    before = float(binary_cross_entropy(discriminator(fake, training=True), real=True))
    adversarial = float(gan._train_step(lr_son, hr_father)["adversarial_loss"])
    after = float(binary_cross_entropy(discriminator(fake, training=True), real=True))
    assert abs(before - after) > 1e-4
    assert adversarial == pytest.approx(after if update == "d_then_g" else before, rel=1e-5)


def test_one_step_lowers_both_losses_on_a_fixed_batch(gan_conf):
    """Each network's loss, the other network held at its weights before the step, falls (at 1e-4: Adam's first
    step of 1e-3 on every weight overshoots this 8-channel discriminator's minimum)."""
    gan = ZSRGAN(smooth_image(64, 64), gan_conf.replace(vgg_weights="none", zsrgan_noise_std=0.0,
                                                        zsrgan_learning_rate=1e-4))
    gan.vgg = build_vgg_features("random", "block1_conv2")  # the perceptual term too, with random weights
    lr_son, hr_father = next(iter(gan.example_dataset(1)))
    generator, discriminator = gan.networks["generator"], gan.networks["discriminator"]

    def losses(g_weights, d_weights):
        generator.set_weights(g_weights)
        discriminator.set_weights(d_weights)
        sr = generator(lr_son, training=True)
        # Batch statistics, as the step computes them (its batch norm never runs on moving averages).
        fake = discriminator(sr * 2 - 1, training=True)
        real = discriminator(hr_father * 2 - 1, training=True)
        g = 2 * tf.reduce_mean(tf.abs(sr - hr_father)) + perceptual_loss(gan.vgg, sr, hr_father) \
            - tf.reduce_mean(tf.math.log(fake))
        d = -0.5 * (tf.reduce_mean(tf.math.log(real)) + tf.reduce_mean(tf.math.log(1 - fake)))
        return float(g), float(d)

    g_old, d_old = generator.get_weights(), discriminator.get_weights()
    scalars = gan._train_step(lr_son, hr_father)
    g_new, d_new = generator.get_weights(), discriminator.get_weights()
    g_before, d_before = losses(g_old, d_old)
    assert losses(g_new, d_old)[0] < g_before and losses(g_old, d_new)[1] < d_before
    assert set(scalars) == {"loss", "reconstruction_loss", "perceptual_loss", "adversarial_loss",
                            "discriminator_loss", "discriminator_real", "discriminator_fake"}
    assert float(scalars["perceptual_loss"]) > 0


def test_psnr_selection_takes_the_best_test_and_says_it_is_an_oracle(gan_conf, caplog):
    from zssr_tf.methods.zsrgan import KeptTest

    lr, gt = smooth_image(64, 64), smooth_image(128, 128)
    gan = ZSRGAN(lr, gan_conf.replace(zsrgan_select="psnr", zsrgan_noise_std=0.0), ground_truth=gt)
    gan.run()
    last = gan.networks["generator"].get_weights()
    flat = [np.zeros_like(w) if w.ndim == 4 else w for w in last]  # the branch gives 0: the interpolation
    gan.kept_tests = [KeptTest(0, 4, None, last, 20.0), KeptTest(0, 8, None, flat, 25.0),
                      KeptTest(0, 12, None, last, 22.0)]
    with caplog.at_level("WARNING"):
        output = gan.final_test()
    np.testing.assert_allclose(output, np.clip(data.interpolate(lr, (2.0, 2.0), (128, 128)), 0, 1), atol=1e-6)
    assert gan.report["selected"][-1]["iterations"] == 8 and gan.report["selected"][-1]["last_psnr_rgb"] == 22.0
    assert "an oracle" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(gan.networks["generator"].get_weights(), last))
    with pytest.raises(ValueError, match="give --ground_truth"):
        ZSRGAN(lr, gan_conf.replace(zsrgan_select="psnr"))


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
    # A ZSSR run can start from the generator of a ZSRGAN computing as ZSSR does (in [0, 1], no noise).
    plain = gan_conf.replace(zsrgan_value_range="0,1", zsrgan_noise_std=0.0, zsrgan_max_iters=2)
    trained = ZSRGAN(lr, plain)
    trained.run()
    trained.export_model(tmp_path / "plain")
    zssr = ZSSR(lr, plain.replace(method="zssr", width=8, depth=3, init_weights=str(tmp_path / "plain")))
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
        "in_zsrgan_checkpoint", "in_zsrgan_tests", "tb"]
    # The authors' protocol: each test's output and generator, and its numbers in the log.
    assert sorted(os.listdir(tmp_path / "out" / "in_zsrgan_tests")) == [
        f"iter_{i:05d}.{ext}" for i in (4, 8, 12) for ext in ("keras", "png")]
    log = json.loads((tmp_path / "out" / "in_log.json").read_text())
    tests = log["report"]["tests"]
    assert [t["iterations"] for t in tests] == [4, 8, 12] and all(t["psnr_rgb"] > 10 for t in tests)
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


def test_cross_entropy_is_pytorchs_and_keeps_a_gradient_at_saturation():
    """nn.BCELoss: -log clamped at 100 in the value; d/dp = (p - y) / max(p (1 - p), 1e-12), never clipped to 0."""
    from zssr_tf.losses import binary_cross_entropy

    p = tf.Variable([0.99999988, 0.5, 1e-9], dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = binary_cross_entropy(tf.reshape(p, [1, 1, 3, 1]), real=False)
    values = p.numpy().astype(np.float64)
    expected = np.mean(-np.maximum(np.log(1 - values), -100))
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    grad = tape.gradient(loss, p).numpy()
    np.testing.assert_allclose(grad, values / np.maximum(values * (1 - values), 1e-12) / 3, rtol=1e-3)
    assert grad[0] > 1e6  # Keras's clip to 1 - 1e-7 would give 0 here
