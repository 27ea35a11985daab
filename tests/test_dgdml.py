"""DGDML-SR: depth maps, depth-guided patches, its four networks, its losses and step, and runs end to end."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import smooth_image
from tests.test_cli import zssr
from zssr_tf import DGDML, Config, patches
from zssr_tf.color import rgb_to_ycbcr, ycbcr_to_rgb
from zssr_tf.config import ConfigError
from zssr_tf.data import father_to_son
from zssr_tf.depth import DepthError, load_depth, read_depth_file, to_depth
from zssr_tf.engine import l1_step
from zssr_tf.image_io import read_image, write_image
from zssr_tf.losses import gradient_penalty
from zssr_tf.models import build_dsn, build_srn, build_vgg_features, build_wgan_critic
from zssr_tf.optimizers import TorchRMSprop

TINY_DG = dict(method="dgdml", dgdml_width=8, dgdml_srn_depth=2, dgdml_dsn_depth=1, dgdml_critic_width=4,
               dgdml_lr_patch_size=16, dgdml_batch_size=8, dgdml_epochs=1, dgdml_test_every_epochs=1,
               display_every=5, precision="float32", progress=False)


def noise_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)


def ramp(height: int, width: int) -> np.ndarray:
    """Depth 1..width from left (near) to right (far)."""
    return np.tile(np.arange(1, width + 1, dtype=np.float64), (height, 1))


@pytest.fixture
def dg_conf() -> Config:
    return Config().replace(**TINY_DG)


def test_ycbcr_round_trip_and_bt601_luma():
    image = noise_image(5, 7)
    ycbcr = rgb_to_ycbcr(image)
    assert np.allclose(ycbcr_to_rgb(ycbcr), image, atol=1e-5)
    assert np.allclose(ycbcr[..., 0], (16 + image @ np.array([65.481, 128.553, 24.966])) / 255, atol=1e-6)


def test_depth_guided_patches_split_near_from_far_and_drop_flat_ones():
    image = noise_image(128, 128)
    image[96:] = 0.5  # a flat band at the bottom: no patch lying wholly inside it survives the contrast filter
    collection = patches.collect_patches(image, scale=2, lr_size=16, min_contrast=0.05, depth=ramp(128, 128))
    counts = collection.counts
    # Grids of stride 16 (HR 32) and 8 (LR 16): 7x7 and 15x15 windows. The mean depth is 64.5; an HR window at
    # column l has mean depth l + 16.5 (near: l in 0, 16, 32), an LR one l + 8.5 (far: l in 64, 72, ..., 112).
    assert (counts["hr_grid"], counts["lr_grid"]) == (49, 225)
    assert (counts["hr_contrast_kept"], counts["lr_contrast_kept"]) == (49 - 7, 225 - 3 * 15)
    assert counts["mean_depth"] == pytest.approx(64.5)
    assert (counts["hr_patches"], counts["lr_patches"]) == (3 * 6, 7 * 12)
    assert collection.hr.shape == (18, 32, 32, 1) and collection.lr.shape == (84, 16, 16, 1)
    y = rgb_to_ycbcr(image)[..., 0]
    assert np.array_equal(collection.hr[0, ..., 0], y[:32, :32])  # the first near window, top left
    assert np.array_equal(collection.lr[0, ..., 0], y[:16, 64:80])  # the first far window
    assert collection.epoch_size == 8 * 18 and not collection.paired

    # Without depth guidance (the ablation None) every window that passes the contrast filter is on both sides.
    unguided = patches.collect_patches(image, 2, 16, 0.05, depth=None)
    assert (unguided.counts["hr_patches"], unguided.counts["lr_patches"]) == (42, 180)
    # Without a contrast threshold the flat windows stay; the authors' filter (rgb2gray, 0.10) drops them too.
    assert patches.collect_patches(image, 2, 16, 0.0, depth=None).counts["hr_patches"] == 49
    authors = patches.collect_patches(image, 2, 16, 0.10, depth=None, contrast_luminance="rgb2gray")
    assert authors.counts["hr_patches"] == 42


def test_unknown_depths_are_ignored_and_a_flat_depth_map_is_a_clear_error():
    image = noise_image(64, 64)
    depth = ramp(64, 64)
    depth[:, :16] = np.nan  # unknown: those windows have no mean depth and are on neither side
    collection = patches.collect_patches(image, 2, 16, 0.05, depth)
    assert collection.counts["mean_depth"] == pytest.approx(np.mean(np.arange(17, 65)))
    with pytest.raises(ValueError, match=r"^input: no HR training patches: .*flat\?\)$"):
        patches.collect_patches(image, 2, 16, 0.05, np.ones((64, 64)))
    with pytest.raises(ValueError, match="smaller than DGDML's HR patches"):
        patches.collect_patches(noise_image(20, 64), 2, 16, 0.05, None)


def test_patch_batches_cover_every_transform_and_reshuffle_each_epoch():
    collection = patches.collect_patches(noise_image(64, 64), 2, 16, 0.0, ramp(64, 64))
    n = collection.epoch_size
    batches = list(patches.build_patch_index_dataset(collection, batch_size=n // 2, seed=0, num_batches=4))
    first_epoch = np.concatenate([b[0].numpy() for b in batches[:2]])
    second_epoch = np.concatenate([b[0].numpy() for b in batches[2:]])
    assert sorted(first_epoch) == sorted(second_epoch) == list(range(n))  # each HR example once per epoch
    assert not np.array_equal(first_epoch, second_epoch)
    lr_indices = np.concatenate([b[1].numpy() for b in batches[:2]])
    assert len(set(lr_indices)) == n and lr_indices.max() < 8 * len(collection.lr)  # unpaired, without repeats
    gathered = patches.gather_patches(tf.constant(collection.hr), tf.constant(np.arange(16), tf.int32)).numpy()
    assert all(np.array_equal(gathered[i], patches.transform_numpy(collection.hr[i // 8], i)) for i in range(16))
    assert len({gathered[i].tobytes() for i in range(8)}) == 8  # 8 different rotations and mirrors


def test_bicubic_pairs_are_fathers_and_their_sons():
    collection = patches.bicubic_patches(noise_image(64, 64), 2, 16, 0.05)
    assert collection.paired and collection.hr.shape[1:] == (32, 32, 1) and collection.lr.shape[1:] == (16, 16, 1)
    assert all(np.array_equal(son, father_to_son(father, (2, 2))) for son, father in zip(collection.lr, collection.hr))
    batch = next(iter(patches.build_patch_index_dataset(collection, 4, seed=0, num_batches=1)))
    assert np.array_equal(batch[0], batch[1])  # a father and its son stay together, in the same transform


def test_network_shapes_at_x2_and_x4():
    lr = np.random.rand(2, 16, 24, 1).astype(np.float32)
    for scale in (2, 4):
        srn = build_srn(scale, width=8, depth=2, seed=0)
        assert srn(lr).shape == (2, 16 * scale, 24 * scale, 1) and srn.scale == scale
        assert build_dsn(scale, width=8, depth=2, seed=0)(np.zeros((2, 64, 64, 1))).shape == (2, 64 // scale,
                                                                                              64 // scale, 1)
        assert build_wgan_critic(32 * scale, width=4, seed=0)(np.zeros((3, 32 * scale, 32 * scale, 1))).shape == (3, 1)
    with pytest.raises(ValueError, match="powers of two"):
        build_dsn(3)


def torch_bicubic_upsample(image: np.ndarray, scale: int, a: float = -0.75) -> np.ndarray:
    """PyTorch's `upsample_bicubic2d` (align_corners=False) on an H x W array, pixel by pixel as its source does
    it: source x = (o + 0.5) / scale - 0.5, Keys' cubic of `a` on the 4 pixels from floor(x) - 1, indices clamped."""

    def cubic(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a if t < 2 else 0.0

    def taps(o: int, n: int) -> list[tuple[int, float]]:
        x = (o + 0.5) / scale - 0.5
        first = int(np.floor(x))
        return [(min(max(first + k, 0), n - 1), cubic(x - (first + k))) for k in range(-1, 3)]

    h, w = image.shape
    out = np.zeros((h * scale, w * scale))
    for i in range(h * scale):
        for j in range(w * scale):
            out[i, j] = sum(wy * wx * image[y, x] for y, wy in taps(i, h) for x, wx in taps(j, w))
    return out


@pytest.mark.parametrize("scale", [2, 4])
def test_the_srn_adds_its_high_frequencies_to_pytorchs_bicubic(scale):
    lr = np.random.default_rng(0).random((1, 6, 7, 1)).astype(np.float32)
    srn = build_srn(scale, width=8, depth=2, seed=0)
    srn.get_layer("f_out").kernel.assign(tf.zeros_like(srn.get_layer("f_out").kernel))  # no high frequencies
    expected = torch_bicubic_upsample(lr[0, ..., 0].astype(np.float64), scale)
    np.testing.assert_allclose(srn(lr).numpy()[0, ..., 0], expected, atol=1e-6)
    # Not TensorFlow's bicubic (Keys a = -0.5, the border renormalised).
    assert np.abs(tf.image.resize(lr, (6 * scale, 7 * scale), "bicubic").numpy()[0, ..., 0] - expected).max() > 1e-3


def test_torch_rmsprop_is_pytorchs_update_and_keras_rmsprop_is_not():
    """v <- 0.99 v + 0.01 g^2; w <- w - lr g / (sqrt(v) + 1e-8), on hand-made gradients down to 1e-8."""
    gradients = [np.array([1e-8, 1e-7, 1e-6, 0.5], np.float32), np.array([2e-8, 1e-7, -3e-6, 0.0], np.float32),
                 np.array([-1e-8, 1e-7, 1e-6, -0.25], np.float32)]
    lr, rho, eps = 1e-4, 0.99, 1e-8
    w, v, expected = np.zeros(4), np.zeros(4), []
    for g in gradients:
        v = rho * v + (1 - rho) * g.astype(np.float64) ** 2
        w = w - lr * g / (np.sqrt(v) + eps)
        expected.append(w.copy())

    def run(optimizer: keras.optimizers.Optimizer) -> list[np.ndarray]:
        variable = tf.Variable(np.zeros(4, np.float32))
        trajectory = []
        for g in gradients:
            optimizer.apply([tf.constant(g)], [variable])
            trajectory.append(variable.numpy().copy())
        return trajectory

    for got, want in zip(run(TorchRMSprop(lr)), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    # Three gradients of 1e-7 move the weight by 1.3e-3 (the first step by lr g / (sqrt(0.01 g^2) + eps) = 5e-4);
    # Keras's sqrt(v + eps) >= 1e-4 moves it by at most 1e-7 / 1e-4 times the learning rate a step.
    assert abs(expected[-1][1]) > 1e-3
    keras_moves = run(keras.optimizers.RMSprop(lr, rho=0.99, epsilon=1e-8))[-1]
    assert abs(keras_moves[1]) < abs(expected[-1][1]) / 1000
    with pytest.raises(ValueError, match="no momentum"):
        TorchRMSprop(lr, momentum=0.9)


def test_the_gradient_penalty_of_a_linear_critic_is_its_closed_form():
    weights = np.random.default_rng(0).normal(size=(8 * 8, 1)).astype(np.float32)
    image = keras.Input((8, 8, 1))
    critic = keras.Model(image, keras.layers.Dense(1, use_bias=False)(keras.layers.Flatten()(image)))
    critic.layers[-1].kernel.assign(weights)
    real, fake = tf.random.uniform((4, 8, 8, 1)), tf.random.uniform((4, 8, 8, 1))
    # D(x) = <w, x>: the gradient is w everywhere, so the penalty is (||w|| - 1)^2 whatever the samples.
    penalty = gradient_penalty(critic, real, fake, tf.random.uniform((4, 1, 1, 1)))
    assert float(penalty) == pytest.approx((np.linalg.norm(weights) - 1) ** 2, rel=1e-5)
    critic.layers[-1].kernel.assign(weights / np.linalg.norm(weights))
    assert float(gradient_penalty(critic, real, fake, tf.random.uniform((4, 1, 1, 1)))) == pytest.approx(0, abs=1e-6)


def fixed_batch(trainer: DGDML) -> tuple[tf.Tensor, tf.Tensor]:
    trainer.start_stage(0)
    hr_index, lr_index = next(iter(trainer.example_dataset(1)))
    return (patches.gather_patches(trainer._patches["lr"], lr_index),
            patches.gather_patches(trainer._patches["hr"], hr_index))


def bicycle_step(trainer: DGDML, y: tf.Tensor, x: tf.Tensor) -> dict[str, float]:
    """One step of the configured update (`--dgdml_update`) on a fixed batch; its scalars."""
    step = trainer._joint_step if trainer.conf.dgdml.update == "joint" else trainer._authors_step
    return {k: float(v) for k, v in step(y, x).items()}


def sgd_step(trainer: DGDML, learning_rates: dict, y: tf.Tensor, x: tf.Tensor) -> tuple[dict, dict]:
    """The step's scalars before and after one plain gradient step with these learning rates per network
    (RMSprop's first step is about 10 x its learning rate on every weight, whatever the gradient)."""
    trainer.set_networks(trainer.networks, {name: keras.optimizers.SGD(learning_rates[name])
                                            for name in trainer.networks})
    before = bicycle_step(trainer, y, x)
    trainer.set_networks(trainer.networks, {name: keras.optimizers.SGD(0.0) for name in trainer.networks})
    after = bicycle_step(trainer, y, x)
    return before, after


GENERATORS_ONLY = {"generator": 1e-3, "dsn": 1e-3, "critic_hr": 0.0, "critic_lr": 0.0}
CRITICS_ONLY = {"generator": 0.0, "dsn": 0.0, "critic_hr": 1e-3, "critic_lr": 1e-3}


def test_the_joint_step_moves_every_loss_the_right_way(dg_conf):
    # No Lipschitz constraint here, so that every loss is deterministic (the penalty's draws are random) and
    # unclipped: the penalty and the clipping have tests of their own.
    unconstrained = dg_conf.replace(dgdml_wgan="gp", dgdml_gradient_penalty_weight=0.0, dgdml_update="joint")
    # Eqs. 5 and 7 alone: the SRN and the DSN each lower their critic's score of their fakes (the generators
    # minimise E[D(fake)]), so each critic's estimated distance shrinks: generators and critics pull opposite ways.
    trainer = DGDML(noise_image(64, 80), unconstrained.replace(dgdml_bicycle=False), depth=ramp(64, 80))
    y, x = fixed_batch(trainer)
    before, after = sgd_step(trainer, GENERATORS_ONLY, y, x)
    assert after["wasserstein_hr"] < before["wasserstein_hr"] and after["wasserstein_lr"] < before["wasserstein_lr"]
    # The critics alone: each separates real from fake better, so the estimated distances grow.
    before, after = sgd_step(trainer, CRITICS_ONLY, y, x)
    assert after["critic_hr_loss"] < before["critic_hr_loss"] and after["critic_lr_loss"] < before["critic_lr_loss"]
    assert after["wasserstein_hr"] > before["wasserstein_hr"] and after["wasserstein_lr"] > before["wasserstein_lr"]
    # With the cycles (eqs. 6 and 8): the generators' whole loss falls, and the cycles come back closer.
    trainer = DGDML(noise_image(64, 80), unconstrained, depth=ramp(64, 80))
    before, after = sgd_step(trainer, GENERATORS_ONLY, *fixed_batch(trainer))
    assert after["loss"] < before["loss"] and after["cycle_loss"] < before["cycle_loss"]


def test_the_authors_steps_move_every_loss_the_right_way(dg_conf):
    unconstrained = dg_conf.replace(dgdml_wgan="gp", dgdml_gradient_penalty_weight=0.0)
    trainer = DGDML(noise_image(64, 80), unconstrained, depth=ramp(64, 80))
    y, x = fixed_batch(trainer)
    # The critics alone (steps 1 and 2): each separates real from fake better.
    before, after = sgd_step(trainer, CRITICS_ONLY, y, x)
    assert after["critic_hr_loss"] < before["critic_hr_loss"] and after["critic_lr_loss"] < before["critic_lr_loss"]
    # The generators alone (steps 3-6): both cycles come back closer.
    before, after = sgd_step(trainer, GENERATORS_ONLY, y, x)
    assert after["srn_cycle_loss"] < before["srn_cycle_loss"] and after["dsn_cycle_loss"] < before["dsn_cycle_loss"]
    # Steps 3 and 4 alone (the cycles' steps also move the generators): each lowers its critic's score of its fakes.
    trainer = DGDML(noise_image(64, 80), unconstrained.replace(dgdml_bicycle=False), depth=ramp(64, 80))
    before, after = sgd_step(trainer, GENERATORS_ONLY, *fixed_batch(trainer))
    assert after["srn_adversarial_loss"] < before["srn_adversarial_loss"]
    assert after["dsn_adversarial_loss"] < before["dsn_adversarial_loss"]


def test_the_authors_last_step_carries_the_hr_cycles_gradient_into_the_dsn(dg_conf):
    """PyTorch accumulates gradients, and the authors clear G^L's only after G^L's own steps: step 6 applies the
    gradient of step 5's loss (G^H's cycle, through G^L) too. With SGD on the DSN alone and a tiny learning rate
    its change is -lr (g3 + g5 + g6), to first order in lr."""
    unconstrained = dg_conf.replace(dgdml_wgan="gp", dgdml_gradient_penalty_weight=0.0)
    trainer = DGDML(noise_image(64, 80), unconstrained, depth=ramp(64, 80))
    y, x = fixed_batch(trainer)
    srn, dsn = trainer.networks["generator"], trainer.networks["dsn"]
    critic_hr, critic_lr = trainer.networks["critic_hr"], trainer.networks["critic_lr"]
    with tf.GradientTape(persistent=True) as tape:
        fake_lr = dsn(x)
        g3 = tf.reduce_mean(critic_lr(fake_lr))
        cycle_hr = srn(fake_lr)
        g5 = trainer._cycle_loss(cycle_hr, x) + tf.reduce_mean(critic_hr(cycle_hr))
        cycle_lr = dsn(cycle_hr)
        g6 = trainer._cycle_loss(cycle_lr, tf.stop_gradient(fake_lr)) + tf.reduce_mean(critic_lr(cycle_lr))
    grads = {name: tape.gradient(loss, dsn.trainable_variables) for name, loss in (("g3", g3), ("g5", g5), ("g6", g6))}
    start = [v.numpy() for v in dsn.trainable_variables]
    lr = 1e-6
    sgd_step(trainer, {"generator": 0.0, "dsn": lr, "critic_hr": 0.0, "critic_lr": 0.0}, y, x)
    moved = np.concatenate([(v.numpy() - w).ravel() for v, w in zip(dsn.trainable_variables, start)])

    def expected(*names: str) -> np.ndarray:
        return -lr * np.concatenate([sum(grads[n][i] for n in names).numpy().ravel() for i in range(len(start))])

    with_step5, without = expected("g3", "g5", "g6"), expected("g3", "g6")
    assert np.linalg.norm(moved - with_step5) < 0.01 * np.linalg.norm(with_step5)
    assert np.linalg.norm(moved - without) > 0.1 * np.linalg.norm(with_step5)


def test_the_authors_steps_move_the_critics_over_100x_more_than_the_joint_keras_step(dg_conf):
    """The issue this update fixes: clipped critics' gradients are ~1e-8..1e-6, which Keras's RMSprop
    (sqrt(v + eps)) turns into almost no move, PyTorch's (sqrt(v) + eps) into about the learning rate."""

    def critic_moves(update: str, optimizer: type) -> float:
        trainer = DGDML(noise_image(64, 80), dg_conf.replace(dgdml_update=update), depth=ramp(64, 80))
        y, x = fixed_batch(trainer)
        critics = ("critic_hr", "critic_lr")
        step = trainer._joint_step if update == "joint" else trainer._authors_step
        step(y, x)  # clips the critics into +-0.01, where their gradients are as small as in a run
        trainer.set_networks(trainer.networks, {name: optimizer(1e-4, rho=0.99, epsilon=1e-8)
                                                for name in trainer.networks})
        start = [v.numpy() for name in critics for v in trainer.networks[name].trainable_variables]
        for _ in range(3):
            step(y, x)
        now = [v.numpy() for name in critics for v in trainer.networks[name].trainable_variables]
        return float(np.mean([np.abs(a - b).mean() for a, b in zip(now, start)]))

    authors, joint = critic_moves("authors", TorchRMSprop), critic_moves("joint", keras.optimizers.RMSprop)
    assert authors > 100 * joint, (authors, joint)


def test_the_authors_depth_scale_of_the_learning_rate(dg_conf, caplog):
    depth = ramp(64, 80)
    trainer = DGDML(noise_image(64, 80), dg_conf.replace(dgdml_depth_learning_rate_scale=True), depth=depth)
    collection = trainer.collection
    # Each patch's mean inverse depth: the first near (HR, 32 px) window is columns 0..31 of the ramp 1..80.
    assert collection.hr_inverse_depth[0] == pytest.approx(np.mean(1.0 / np.arange(1, 33)))
    trainer.start_stage(0)
    hr_index, lr_index = next(iter(trainer.example_dataset(1)))
    trainer._train_step(hr_index, lr_index)
    ratio = collection.hr_inverse_depth[hr_index.numpy() // 8] / collection.lr_inverse_depth[lr_index.numpy() // 8]
    scale = 1 / (1 + np.exp(-ratio.mean()))  # sigmoid(mean(Hd / Ld)), near over far: > sigmoid(1)
    assert float(trainer._learning_rate_scale) == pytest.approx(scale, rel=1e-5) and scale > 0.73
    optimizer = trainer.optimizers["critic_hr"].optimizer
    assert float(optimizer.learning_rate) == pytest.approx(1e-4 * scale, rel=1e-5)
    # Off by default; without depth guidance it cannot apply, and the log says so.
    assert float(DGDML(noise_image(64, 80), dg_conf, depth=depth)._learning_rate_scale) == 1.0
    caplog.set_level("WARNING")
    DGDML(noise_image(64, 80), dg_conf.replace(dgdml_depth_learning_rate_scale=True))
    assert "depth_learning_rate_scale needs depth-guided patches" in caplog.text


@pytest.mark.parametrize("update", ["authors", "joint"])
def test_weight_clipping_holds_and_the_ablation_without_bicycle_has_no_cycle(dg_conf, update):
    trainer = DGDML(noise_image(64, 80), dg_conf.replace(dgdml_bicycle=False, dgdml_update=update),
                    depth=ramp(64, 80))
    critic = trainer.networks["critic_hr"]
    # The authors' initialisation, N(0, sqrt(2 / (k k C_out))): larger than the clipping.
    assert max(float(tf.reduce_max(tf.abs(v))) for v in critic.trainable_variables) > 0.01
    scalars = bicycle_step(trainer, *fixed_batch(trainer))
    if update == "joint":
        assert scalars["cycle_loss"] == 0
    else:
        assert not any("cycle" in name for name in scalars)
    for network in (trainer.networks["critic_hr"], trainer.networks["critic_lr"]):
        largest = max(float(tf.reduce_max(tf.abs(v))) for v in network.trainable_variables)
        assert largest == pytest.approx(0.01)


def test_paired_bicubic_training_lowers_its_l1(dg_conf):
    trainer = DGDML(smooth_image(64, 64), dg_conf.replace(dgdml_pairing="bicubic", dgdml_learning_rate=1e-3))
    assert trainer.networks.keys() == {"generator"}
    lr_son, hr_father = fixed_batch(trainer)
    losses = [float(l1_step(trainer.networks["generator"], trainer.optimizers["generator"], lr_son, hr_father)["loss"])
              for _ in range(5)]
    assert losses[-1] < losses[0]


def test_a_run_reports_its_patches_and_tiles_like_one_piece(dg_conf):
    image, gt = noise_image(64, 72), noise_image(128, 144, seed=1)
    trainer = DGDML(image, dg_conf.replace(dgdml_depth_kind="disparity"), ground_truth=gt,
                    depth=1.0 / ramp(64, 72))  # disparity: the same ramp
    out = trainer.run()
    assert out.shape == (128, 144, 3) and out.dtype == np.float32
    h = trainer.history[0]
    assert h.iterations == trainer.steps_per_epoch and h.test_steps == [h.iterations - 1] and h.true_mse
    assert {"srn_cycle_loss", "dsn_cycle_loss", "critic_hr_loss", "wasserstein_lr"} <= set(h.scalars)
    assert trainer.report["depth"] == "given" and trainer.report["patches"]["hr_patches"] > 0
    tiled = DGDML(image, dg_conf.replace(tile_size=16), depth=ramp(64, 72))
    tiled.networks["generator"].set_weights(trainer.networks["generator"].get_weights())
    assert np.allclose(tiled.forward_pass(image), trainer.forward_pass(image), atol=1e-5)


def test_checkpoint_holds_the_four_networks(dg_conf, tmp_path):
    trainer = DGDML(noise_image(64, 64), dg_conf, depth=ramp(64, 64))
    trainer.export_model(tmp_path / "checkpoint")
    saved = {name.split("/")[0] for name, _ in tf.train.list_variables(str(tmp_path / "checkpoint"))}
    assert {f"{name}_optimizer" for name in trainer.networks} <= saved  # and the four optimizers
    restored = DGDML(noise_image(64, 64), dg_conf.replace(seed=5, init_weights=str(tmp_path / "checkpoint")),
                     depth=ramp(64, 64))
    for name in ("generator", "dsn", "critic_hr", "critic_lr"):
        assert all(np.array_equal(a, b) for a, b in zip(trainer.networks[name].get_weights(),
                                                        restored.networks[name].get_weights()))


def test_a_depth_model_on_disk_estimates_the_depth(dg_conf, tmp_path):
    # A stand-in estimator: "depth" is the red channel, which ramps from left to right.
    rgb = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(1, 1, use_bias=False)
    model = keras.Model(rgb, conv(rgb))
    conv.kernel.assign(np.array([1.0, 0.0, 0.0], np.float32).reshape(1, 1, 3, 1))
    model.save(tmp_path / "depth.keras")
    image = noise_image(64, 64)
    image[..., 0] = np.linspace(0.1, 1.0, 64)[None, :]
    trainer = DGDML(image, dg_conf.replace(dgdml_depth_model=str(tmp_path / "depth.keras")))
    assert trainer.report["depth"] == str(tmp_path / "depth.keras")
    assert trainer.collection.counts["depth_guided"]
    # A SavedModel's serving signature (it takes its input by name) works the same.
    module = tf.Module()
    module.estimate = tf.function(lambda image: {"depth": image[..., :1]},
                                  input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures=module.estimate)
    trainer = DGDML(image, dg_conf.replace(dgdml_depth_model=str(tmp_path / "saved")))
    assert trainer.collection.counts["depth_guided"] and trainer.collection.counts["hr_patches"] > 0
    with pytest.raises(DepthError, match="^dgdml_depth_model: .* is not a loadable"):
        (tmp_path / "bad.keras").write_text("no")
        DGDML(image, dg_conf.replace(dgdml_depth_model=str(tmp_path / "bad.keras")))


def test_without_depth_the_log_says_it_is_the_ablation_none(dg_conf, caplog):
    caplog.set_level("WARNING")
    trainer = DGDML(noise_image(64, 64), dg_conf)
    assert trainer.report["depth"] == "none" and not trainer.collection.counts["depth_guided"]
    assert "ablation BCN" in caplog.text  # no depth guidance, bi-cycle training on
    trainer = DGDML(noise_image(64, 64), dg_conf.replace(dgdml_bicycle=False))
    assert "ablation None" in caplog.text
    with pytest.raises(ValueError, match="gray or RGB images, not 4 channels"):
        DGDML(np.zeros((64, 64, 4), np.float32), dg_conf)


@pytest.mark.fault("9 malformed depth maps (missing, corrupt, RGB, 3-D, negative, zeros, text, empty, .npz)",
                   "a one-line DepthError each")
def test_depth_files_are_read_and_their_errors_are_one_line(tmp_path, record_property):
    disparity = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000)
    write_image(tmp_path / "d16.png", disparity[..., None].astype(np.float32) / 65535, bit_depth=16)
    assert np.array_equal(read_depth_file(tmp_path / "d16.png"), disparity)
    depth = to_depth(disparity, "disparity")
    assert np.isnan(depth[0, 0]) and depth[1, 0] == pytest.approx(1 / 4000)
    np.save(tmp_path / "d.npy", np.ones((6, 8)))
    assert load_depth(str(tmp_path / "d.npy"), "depth", (12, 16, 3)).shape == (12, 16)  # resized, with a warning
    write_image(tmp_path / "rgb.png", noise_image(4, 4))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    np.save(tmp_path / "cube.npy", np.ones((2, 3, 4)))
    np.save(tmp_path / "negative.npy", -np.ones((3, 3)))
    np.save(tmp_path / "zeros.npy", np.zeros((3, 3)))
    (tmp_path / "depth.txt").write_text("1 2 3")
    (tmp_path / "empty.png").write_bytes(b"")
    np.savez(tmp_path / "archive.npz", a=np.ones((3, 3)))
    os.replace(tmp_path / "archive.npz", tmp_path / "archive.npy")
    cases = {"missing.png": "no such depth file", "corrupt.png": "not a readable depth image",
             "rgb.png": "3 different ones", "cube.npy": "one H x W plane", "negative.npy": "negative depth",
             "zeros.npy": "no known depth", "depth.txt": "depth maps are", "empty.png": "the file is empty",
             "archive.npy": "not one .npy array"}
    for name, message in cases.items():
        with pytest.raises(DepthError, match=message) as error:
            load_depth(str(tmp_path / name), "depth", (3, 3, 3))
        assert "\n" not in str(error.value)
    record_property("observed", f"{len(cases)} one-line errors, e.g. '{error.value}'".replace(str(tmp_path), "DIR"))


def test_scale_factors_dgdml_cannot_do_are_config_errors(dg_conf):
    image = noise_image(64, 64)
    for scale_factors, message in (("3", "powers of two"), ("2,4", "one scale factor"), ("2.5", "integer"),
                                   ("2x4", "integer")):
        with pytest.raises(ConfigError, match=message):
            DGDML(image, dg_conf.replace(scale_factors=scale_factors))
    with pytest.raises(ConfigError, match="VGG19"):
        DGDML(image, dg_conf.replace(dgdml_cycle_loss="vgg", vgg_weights="none"))
    DGDML(image, dg_conf.replace(scale_factors="3", dgdml_pairing="bicubic"))  # the SRN alone does x3


def test_vgg19_features_for_the_authors_cycle_loss():
    features = build_vgg_features("random", "block5_conv4", arch="vgg19")
    assert features.name == "vgg19_features" and features(np.zeros((1, 32, 32, 3))).shape == (1, 2, 2, 512)


def test_command_line_folder_run_takes_depth_maps_beside_images(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "scene.png", noise_image(64, 72))
    write_image(folder / "scene_depth.png", (ramp(64, 72) / 72)[..., None].astype(np.float32), bit_depth=16)
    write_image(folder / "gray.png", smooth_image(64, 64, channels=1))  # no depth map: the ablation None
    status, out, err = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}",
                            "--flagfile=flags/dgdml_quick.cfg", "--dgdml_epochs=1", "--dgdml_lr_patch_size=16",
                            "--checkpoint_every=2", "--noprogress")
    assert status == 0, err
    assert not list((tmp_path / "out").glob("*_resume"))  # the flag is taken; the folder goes when done
    assert read_image(tmp_path / "out" / "scene_dgdml_X2.00X2.00.png").pixels.shape == (128, 144, 3)
    assert read_image(tmp_path / "out" / "gray_dgdml_X2.00X2.00.png").pixels.shape == (128, 128, 1)
    with open(tmp_path / "out" / "results.csv") as f:
        assert sorted(row["name"] for row in csv.DictReader(f)) == ["gray", "scene"]
    log = json.loads((tmp_path / "out" / "scene_log.json").read_text())
    assert log["depth"].endswith("scene_depth.png") and log["report"]["depth"] == "given"
    assert json.loads((tmp_path / "out" / "gray_log.json").read_text())["report"]["depth"] == "none"


def test_command_line_depth_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    write_image(tmp_path / "in.png", noise_image(64, 64))
    np.save(tmp_path / "flat.npy", np.ones((64, 64)))
    for args, message in (([f"--depth_map={tmp_path / 'nope.png'}"], "no such depth file"),
                          ([f"--depth_map={tmp_path / 'flat.npy'}"], "no HR training patches"),
                          ([f"--depth_map={tmp_path / 'flat.npy'}", "--method=zssr"], "takes no depth map")):
        out_dir = tmp_path / "out"
        status, _, err = zssr(capsys, f"--input={tmp_path / 'in.png'}", f"--output_dir={out_dir}",
                              "--flagfile=flags/dgdml_quick.cfg", "--dgdml_lr_patch_size=16", *args)
        assert status == 1 and err.count("\n") == 1 and message in err, err
        assert not out_dir.exists()
