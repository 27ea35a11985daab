import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import smooth_image
from zssr_tf import ZSSR, Config, imresize
from zssr_tf.image_io import read_image
from zssr_tf.inference import final_test
from zssr_tf.metrics import psnr
from zssr_tf.engine import StageHistory, Trainer
from zssr_tf.methods import zssr as zssr_method
from zssr_tf.methods.zssr import learning_rate_should_drop, running_median

STEPS = [0, 50, 100, 150, 200]


def test_policy_keeps_the_rate_while_the_error_falls():
    errors = [1e-3 - 1e-6 * s + n for s, n in zip(STEPS, [1e-7, -1e-7, 0, 1e-7, -1e-7])]
    assert not learning_rate_should_drop(STEPS, errors, 1.5)


def test_policy_drops_on_a_plateau_or_a_rise():
    assert learning_rate_should_drop(STEPS, [5e-4, 4e-4, 6e-4, 4e-4, 5e-4], 1.5)  # slope 0
    assert learning_rate_should_drop(STEPS, [1.0, 1.1, 1.2, 1.35, 1.4], 1.5)


def test_policy_slope_against_its_standard_error():
    # Errors e = 10 - s/50 + r with residuals r = (+1, -1, 0, -1, +1) * 0.05, s = 0..200: least squares gives slope
    # -1/50 = -0.02 exactly (r is orthogonal to 1 and s) and residual sum of squares 4 * 0.0025 = 0.01; with
    # numpy's N - 2 = 3 scaling the slope's variance is 0.01 / 3 / sum((s - 100)^2) = 0.01 / 3 / 25000, so its
    # standard error is 3.651e-4. -1.5 * -0.02 = 0.03 > 3.651e-4: keep. Slope -2e-4 instead: 3e-4 < 3.651e-4: drop.
    r = np.array([1, -1, 0, -1, 1]) * 0.05
    assert not learning_rate_should_drop(STEPS, 10 - np.array(STEPS) / 50 + r, 1.5)
    assert learning_rate_should_drop(STEPS, 10 - np.array(STEPS) * 2e-4 + r, 1.5)


def simulate_policy(conf, error_at):
    """Runs the real `learning_rate_policy` on a synthetic reconstruction-error curve."""
    zssr = ZSSR(smooth_image(8, 8), conf.replace(width=2, depth=1))
    zssr.history.append(StageHistory(scale_factor=(2.0, 2.0)))
    zssr.start_stage(0)
    for zssr.iter in range(conf.zssr.max_iters):
        if zssr.iter % conf.zssr.run_test_every == 0:
            zssr.history[-1].test_steps.append(zssr.iter)
            zssr.history[-1].reconstruction_mse.append(error_at(zssr.iter))
        zssr.learning_rate_policy()
        if zssr.learning_rate < conf.zssr.min_learning_rate:
            break
    return zssr.history[-1].learning_rate_change_iters, zssr.iter + 1, zssr.learning_rate


def test_policy_schedule_on_a_flat_curve_is_the_originals():
    # Checks at (iter + 1) % 60 == 0 and more than 256 iterations after the last change: 299, then 599, 899; the
    # third drop takes 1e-3 to 1e-6 < 9e-6 and stops training after 900 iterations.
    rng = np.random.default_rng(0)
    drops, iterations, rate = simulate_policy(Config(), lambda i: 1e-3 + rng.normal(0, 1e-7))
    assert drops == [299, 599, 899] and iterations == 900 and rate == pytest.approx(1e-6)


def test_policy_never_drops_on_a_falling_curve():
    drops, iterations, _ = simulate_policy(Config().replace(max_iters=1000), lambda i: 1.0 / (1 + i))
    assert drops == [] and iterations == 1000


def falling(i: int, spikes: tuple[int, ...] = ()) -> float:
    """A reconstruction error that falls steadily, 50% higher at the quick tests in `spikes`."""
    return 1e-3 * np.exp(-i / 600) * (1.5 if i in spikes else 1.0)


@pytest.mark.parametrize("spikes", [(250,), (300,), (250, 500, 750, 1000, 1250)])
def test_robust_policy_is_not_fooled_by_single_spikes_of_a_falling_error(spikes):
    # The original rule drops on each of these curves at the first check that has the spike among its points.
    conf = Config().replace(max_iters=1500)
    assert simulate_policy(conf, lambda i: falling(i, spikes))[0]
    assert simulate_policy(conf.replace(policy="robust"), lambda i: falling(i, spikes))[:2] == ([], 1500)


def test_running_median_of_the_last_values():
    assert running_median([1, 9, 2, 3, 8, 4], 3, 3) == [3, 3, 4]  # of (9, 2, 3), (2, 3, 8), (3, 8, 4)
    assert running_median([1, 2, 3, 4], 3, 3) == []  # needs 3 + 2 values


def test_robust_policy_drops_on_a_plateau():
    # The first check with the 7 quick tests that 5 running medians of 3 need (0 ... 300) is at 359; at the lower
    # learning rates the rule is the original's, min_iters after the last drop.
    rng = np.random.default_rng(0)
    drops, iterations, rate = simulate_policy(Config().replace(policy="robust"),
                                              lambda i: 1e-3 + rng.normal(0, 1e-7))
    assert drops[:2] == [359, 659] and len(drops) == 3 and rate == pytest.approx(1e-6)


def test_robust_policy_waits_for_a_fall_after_an_early_plateau():
    # Flat until iteration 250, then falling: at 299 the original sees four flat points and drops.
    curve = lambda i: 1e-3 * np.exp(-max(i - 250, 0) / 400)  # noqa: E731
    assert simulate_policy(Config().replace(max_iters=1500), curve)[0] == [299]
    assert simulate_policy(Config().replace(max_iters=1500, policy="robust"), curve)[0] == []


def test_sync_iterations_are_the_loops_events():
    conf = Config().replace(max_iters=130, width=2, depth=1)  # loss lines every 20, quick tests every 50, policy
    zssr = ZSSR(smooth_image(8, 8), conf)  # checks at 59, 119
    syncs, first = [], 0
    while first < conf.zssr.max_iters:
        syncs.append(zssr.next_sync_iteration(first))
        first = syncs[-1] + 1
    assert syncs == [0, 20, 40, 50, 59, 60, 80, 100, 119, 120, 129]
    assert ZSSR(smooth_image(8, 8), conf.replace(run_test=False)).next_sync_iteration(41) == 60  # loss lines only


def test_chunked_steps_equal_one_step_per_call(tiny_conf, monkeypatch):
    # Several steps per tf.function call must not change what the loop sees: same examples, losses, tests, drops.
    lr = smooth_image(30, 34)
    conf = tiny_conf.replace(max_iters=60, display_every=7)
    chunked = ZSSR(lr, conf)
    chunked_sr = chunked.run()
    monkeypatch.setattr(Trainer, "next_sync_iteration", lambda self, first: first)
    single = ZSSR(lr, conf)
    assert np.array_equal(chunked_sr, single.run())
    assert chunked.history[0].learning_rate_change_iters  # the policy acted, so its timing was compared too
    assert dataclasses.asdict(chunked.history[0]) | {"train_seconds": 0, "final_test_seconds": 0} == \
        dataclasses.asdict(single.history[0]) | {"train_seconds": 0, "final_test_seconds": 0}


def test_a_stuck_network_gets_new_weights_and_learns(tiny_conf, monkeypatch):
    # Kill the first network: a second layer with only negative weights sees ReLU outputs (>= 0), so it outputs
    # zeros for every input, the residual is 0 and every gradient vanishes, as when the ReLUs die in training.
    build = ZSSR.build_network

    def build_dead_first(self, stage, restart=0):
        build(self, stage, restart)
        if not restart:
            kernel = self.model.layers[2].kernel
            kernel.assign(-tf.abs(kernel))

    monkeypatch.setattr(ZSSR, "build_network", build_dead_first)
    lr = np.random.default_rng(0).random((30, 34, 3), dtype=np.float32)  # texture: much for the net to learn
    zssr = ZSSR(lr, tiny_conf.replace(max_iters=80))
    zssr.run()
    h = zssr.history[0]
    every = tiny_conf.zssr.run_test_every
    assert len(h.restarts) == 1 and h.restarts[0] > tiny_conf.zssr.min_iters
    dead = h.reconstruction_mse[0]
    assert h.reconstruction_mse[:h.restarts[0] // every + 1] == \
        [dead] * (h.restarts[0] // every + 1)  # dead: the interpolation at every test
    assert h.reconstruction_mse[-1] < dead and zssr._residual_max > zssr_method.STUCK_RESIDUAL  # the new weights learn


def test_a_stuck_network_is_restarted_at_most_max_restarts_times(tiny_conf, monkeypatch):
    build = ZSSR.build_network

    def build_dead(self, stage, restart=0):
        build(self, stage, restart)
        kernel = self.model.layers[2].kernel
        kernel.assign(-tf.abs(kernel))

    monkeypatch.setattr(ZSSR, "build_network", build_dead)
    zssr = ZSSR(smooth_image(30, 34), tiny_conf.replace(max_iters=200))
    zssr.run()
    h = zssr.history[0]
    assert len(h.restarts) == zssr_method.MAX_RESTARTS
    assert h.learning_rate_change_iters  # after the last restart the policy drops the rate as before


def test_xla_step_trains_like_the_plain_step(tiny_conf):
    # XLA reorders float arithmetic, so equal up to rounding rather than bit-identical.
    lr = smooth_image(20, 18)
    conf = tiny_conf.replace(precision="float32")
    plain, xla = ZSSR(lr, conf), ZSSR(lr, conf.replace(jit_compile=True))
    np.testing.assert_allclose(xla.run(), plain.run(), atol=1e-5)
    np.testing.assert_allclose(xla.history[0].losses, plain.history[0].losses, rtol=1e-4)


def test_tiny_run_beats_bicubic_and_back_projected_bicubic(example_paths):
    lr, gt = (read_image(p).pixels for p in example_paths)
    conf = Config().replace(width=16, depth=4, crop_size=48, max_iters=150, min_iters=40, run_test_every=10,
                  learning_rate_slope_range=50, back_projection_iters=(2,), display_every=1000)
    zssr = ZSSR(lr, conf, ground_truth=gt)
    sr = zssr.run()
    bicubic = np.clip(imresize(lr, 2), 0, 1)
    anchor = final_test(lambda x: np.clip(imresize(x, 2), 0, 1), lr, (2.0, 2.0), back_projection_iters=2)
    assert sr.shape == gt.shape and sr.dtype == np.float32
    assert psnr(sr, gt) > psnr(bicubic, gt) + 1.0
    assert psnr(sr, gt) > psnr(anchor, gt) + 0.15  # the network, not only back-projection
    history = zssr.history[0]
    assert history.iterations == 150 and len(history.true_mse) == len(history.test_steps) == 15
    assert history.true_mse[-1] < history.true_mse[0]


def test_same_seed_same_output_other_seed_other_output(tiny_conf):
    lr = smooth_image(30, 34)
    a, b = ZSSR(lr, tiny_conf).run(), ZSSR(lr, tiny_conf).run()
    c = ZSSR(lr, tiny_conf.replace(seed=1)).run()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_gradual_stages_grow_the_father_sources(tiny_conf):
    conf = tiny_conf.replace(scale_factors=((1.0, 1.5), (2.0, 2.0)), back_projection_iters=(1, 2),
                               max_iters=20)
    zssr = ZSSR(smooth_image(20, 24), conf)
    out = zssr.run()
    assert [o.shape for o in zssr.outputs] == [(20, 36, 3), (40, 48, 3)]
    assert len(zssr.hr_fathers_sources) == 3 and out is zssr.outputs[-1]
    assert [h.scale_factor for h in zssr.history] == [(1.0, 1.5), (2.0, 2.0)]


def test_weights_and_adam_state_carry_over_unless_reinitialised(tiny_conf):
    conf = tiny_conf.replace(scale_factors=((1.5, 1.5), (2.0, 2.0)), back_projection_iters=(0, 0),
                               max_iters=5)
    zssr = ZSSR(smooth_image(16, 16), conf)
    model = zssr.model
    zssr.run()
    assert zssr.model is model and int(zssr.optimizer.iterations) == 10
    fresh = ZSSR(smooth_image(16, 16), conf.replace(init_net_for_each_sf=True))
    fresh.run()
    assert int(fresh.optimizer.iterations) == 5


def test_grayscale_arrays_stay_grayscale(tiny_conf):
    out = ZSSR(smooth_image(20, 20, channels=1)[:, :, 0], tiny_conf).run()
    assert out.shape == (40, 40)


def test_numeric_kernel_and_noise(tiny_conf):
    y, x = np.mgrid[-4:5, -4:5]
    kernel = np.exp(-(x**2 + 2 * y**2) / 4.0)
    conf = tiny_conf.replace(noise_std=0.01, output_flip=False)
    out = ZSSR(smooth_image(20, 22), conf, kernels=[kernel / kernel.sum()]).run()
    assert out.shape == (40, 44, 3) and np.isfinite(out).all()


def test_input_smaller_than_the_crop_shrinks_the_crop(tiny_conf):
    zssr = ZSSR(smooth_image(10, 13), tiny_conf.replace(crop_size=128, max_iters=3))
    assert zssr.crop_size == 10
    assert zssr.run().shape == (20, 26, 3)


@pytest.mark.parametrize("image, message", [
    (np.zeros((3, 40, 3), np.float32), "too small"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    (np.zeros((8, 8, 3), np.int32), "not supported"),
    (np.zeros((2, 8, 8, 3), np.float32), "shape"),
])
def test_bad_input_arrays(image, message, tiny_conf):
    with pytest.raises(ValueError, match=message):
        ZSSR(image, tiny_conf)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_every_precision_trains_with_float32_variables(precision, tiny_conf):
    zssr = ZSSR(smooth_image(24, 24), tiny_conf.replace(precision=precision, max_iters=10))
    out = zssr.run()
    assert zssr.precision == precision and np.isfinite(out).all()
    assert all(v.dtype == "float32" for v in zssr.model.trainable_variables)
    assert zssr.model.output.dtype == "float32" and zssr.history[0].skipped_steps == {"generator": 0}


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_a_non_finite_step_is_skipped(precision, tiny_conf):
    zssr = ZSSR(smooth_image(24, 24), tiny_conf.replace(precision=precision))
    before = [v.numpy().copy() for v in zssr.model.trainable_variables]
    father = np.full((1, 24, 24, 3), np.nan, np.float32)
    skipped = zssr.optimizers["generator"].skipped
    zssr._train_step(father, father)
    assert int(skipped.numpy()) == 1
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, zssr.model.trainable_variables))
    zssr._train_step(np.zeros_like(father), np.zeros_like(father))
    assert int(skipped.numpy()) == 1 and int(zssr.optimizer.iterations) == 1


def test_zssr_matches_its_golden_run():
    # tests/golden/zssr_tiny.npz was written by the ZSSR of the commit before the engine split (one process, float32,
    # an AVX2 CPU). The same machine gives byte-identical results; other CPU kinds (oneDNN's AVX-512 / AMX kernels)
    # round differently, hence the tolerances, which a change of examples, seeds, schedule or losses exceeds.
    golden = np.load(os.path.join(os.path.dirname(__file__), "golden", "zssr_tiny.npz"))
    conf = Config().replace(width=8, depth=3, crop_size=24, max_iters=60, min_iters=10, run_test_every=5,
                            learning_rate_slope_range=20, learning_rate_policy_check_every=10,
                            back_projection_iters=(2,), display_every=10, precision="float32")
    zssr = ZSSR(smooth_image(30, 34), conf)
    sr = zssr.run()
    h = zssr.history[0]
    assert h.learning_rate_change_iters == golden["learning_rate_change_iters"].tolist()
    np.testing.assert_allclose(h.losses, golden["losses"], rtol=1e-3)
    np.testing.assert_allclose(h.reconstruction_mse, golden["reconstruction_mse"], rtol=1e-3)
    np.testing.assert_allclose(sr, golden["sr"], atol=2e-3)


@pytest.mark.parametrize("upsampler", [pytest.param(upsampler, marks=pytest.mark.fault(
    f"a large output of a trained {upsampler} network (here 140x128 in 32-pixel tiles)",
    "the final test streamed in tiles equals the one-piece one within 1e-5")) for upsampler in ("interpolate",
                                                                                              "pixel_shuffle")])
def test_the_streamed_final_test_of_a_trained_network_equals_the_one_piece_one(upsampler, tiny_conf,
                                                                                record_property):
    # Without back-projections, whose margins would hide a too small network margin.
    zssr = ZSSR(smooth_image(70, 64), tiny_conf.replace(max_iters=20, back_projection_iters=(0,), upsampler=upsampler))
    zssr.run()
    whole = zssr.final_test()  # the default tile (1024) is larger than 140x128: one piece
    zssr.conf = zssr.conf.replace(final_test_tile=32)
    difference = float(np.abs(zssr.final_test() - whole).max())
    record_property("observed", f"largest difference {difference:.1e}")
    assert difference <= 1e-5


@pytest.mark.fault("an input larger than --quick_test_megapixels (a large photo)",
                   "the quick tests reconstruct its centre only; small inputs all of it")
def test_quick_tests_of_a_large_input_reconstruct_its_centre(tiny_conf, record_property):
    image = smooth_image(40, 60)
    conf = tiny_conf.replace(quick_test_megapixels=0.0006, max_iters=12)  # 600 of the 2400 pixels
    zssr = ZSSR(image, conf, ground_truth=imresize(image, 2.0))
    assert zssr._quick_test_region() == ((10, 15), (20, 30))
    zssr.run()
    h = zssr.history[-1]
    assert len(h.reconstruction_mse) == len(h.true_mse) >= 2 and np.all(np.isfinite(h.true_mse))
    assert ZSSR(image, tiny_conf)._quick_test_region() == ((0, 0), (40, 60))  # the default: all of a small input
    record_property("observed", f"40x60 input, 0.0006 MP: region {zssr._quick_test_region()}; by default "
                    f"{ZSSR(image, tiny_conf)._quick_test_region()}; {len(h.reconstruction_mse)} tests")
