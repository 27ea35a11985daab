"""ZSSR (Shocher, Cohen, Irani, CVPR 2018): an image-specific network trained on the input's own father/son pairs.

`ZSSR(input_img, conf, ground_truth, kernels).run()` keeps the original's call shape and method names (`train`,
`quick_test`, `learning_rate_policy`, `father_to_son`, `forward_pass`, `final_test`) so porters recognise it. What
is ZSSR's own lives here: its network and Adam, its example pipeline, its L1 train step, and its schedule (quick
tests, the learning-rate policy and the restart of a stuck network). The loop, chunking, logging, precision,
checkpoint and tiled prediction are the engine's (`zssr_tf.engine.Trainer`).
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zssr_tf import data
from zssr_tf.engine import Trainer, l1_step, next_multiple
from zssr_tf.models import build_zssr_generator

# A network whose residual is still below a quarter of a gray level everywhere after `min_iters` iterations has
# learned nothing. That happens when its ReLUs die early (no biases, small initial weights): the gradients vanish,
# the reconstruction error stays flat, and the policy lowers the learning rate until the stage ends as plain
# interpolation. At its next policy check such a network starts again from new random weights, at most
# MAX_RESTARTS times per stage.
STUCK_RESIDUAL = 1e-3
MAX_RESTARTS = 3


def learning_rate_should_drop(steps: Sequence[int], errors: Sequence[float], change_ratio: float) -> bool:
    """ZSSR's learning-rate test: drop when the reconstruction error no longer falls significantly.

    Fits a line to (step, error) and compares -change_ratio * slope with the standard error of the slope, from
    numpy's `polyfit(..., cov=True)` (numpy >= 1.16 scaling, residuals / (N - 2), as the measured reference run).

    Args:
      steps: iterations of the last quick tests (at least 3).
      errors: their reconstruction errors.
      change_ratio: the original's `learning_rate_change_ratio` (1.5).

    Returns:
      True when the learning rate should be divided by 10.
    """
    (slope, _), cov = np.polyfit(np.asarray(steps, np.float64), np.asarray(errors, np.float64), 1, cov=True)
    return bool(-change_ratio * slope < np.sqrt(cov[0, 0]))


class ZSSR(Trainer):
    """Zero-shot super-resolution of one image (arguments as `zssr_tf.engine.Trainer`)."""

    method_name = "zssr"

    def __init__(self, *args, **kwargs):
        self._residual_max = np.inf  # largest residual at the last quick test (see STUCK_RESIDUAL)
        super().__init__(*args, **kwargs)
        # Fathers are crops of one fixed size (one trace of the step); smaller inputs shrink the crop.
        self.crop_size = min(self.conf.zssr.crop_size, *self.input.shape[:2])

    # Network and step.
    def build_network(self, stage: int, restart: int = 0) -> None:
        """New weights (random, or `init_weights`) and a new Adam (the original's `init_sess`). A restart of a
        stuck network gets random weights from its own seed."""
        c = self.conf.zssr
        seed = self.conf.run.seed * 1000 + stage * 100
        if restart:
            seed = int(np.random.default_rng([self.conf.run.seed, stage, restart]).integers(2**31))
        model = build_zssr_generator(
            channels=self.channels, depth=c.depth, width=c.width, init_variance=c.init_variance,
            learn_residual=c.learn_residual, seed=seed, dtype_policy=self.precision)
        # TF1's Adam epsilon (Keras's default is 1e-7). The learning rate lives in the optimizer's variable, so
        # changing it keeps Adam's moments, also across gradual stages.
        adam = keras.optimizers.Adam(learning_rate=c.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.set_networks({"generator": model}, {"generator": adam})
        if not restart:
            self.load_init_weights()
        self._learning_rate = c.learning_rate

    def build_networks(self, stage: int, restart: int = 0) -> None:
        self.build_network(stage, restart)

    @property
    def model(self) -> keras.Model:
        return self.networks["generator"]

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        return self.optimizers["generator"].optimizer

    def train_step(self, lr_son: tf.Tensor, hr_father: tf.Tensor) -> dict[str, tf.Tensor]:
        """One Adam step on the L1 loss of one (interpolated son, father) pair."""
        return l1_step(self.networks["generator"], self.optimizers["generator"], lr_son, hr_father)

    def example_dataset(self, num_examples: int) -> tf.data.Dataset:
        """The current stage's (interpolated lr_son, hr_father) examples, from the pipeline the config picks."""
        c = self.conf
        build_dataset = data.PIPELINE_BUILDERS[data.resolve_pipeline(c.run.pipeline)]
        return build_dataset(
            self.hr_fathers_sources, ((1.0, 1.0),) + c.task.scale_factors, tuple(self.sf), self.kernel, c,
            self.crop_size, seed=(c.run.seed, 0, self.stage), num_examples=num_examples)

    # Schedule.
    @property
    def max_iters(self) -> int:
        return self.conf.zssr.max_iters

    @property
    def learning_rate(self) -> float:
        """The current learning rate. A Python mirror of the optimizer's variable: reading the variable every
        iteration would cost a device round trip per step."""
        return self._learning_rate

    def set_learning_rate(self, value: float) -> None:
        self._learning_rate = value
        self.optimizer.learning_rate.assign(value)

    def start_stage(self, stage: int) -> None:
        if stage > 0 and self.conf.zssr.init_net_for_each_sf:
            self.build_network(stage)
        self.set_learning_rate(self.conf.zssr.learning_rate)
        self.learning_rate_change_iter_nums = [0]
        self._residual_max = np.inf  # none measured yet in this stage

    def schedule_iterations(self, first: int) -> list[int]:
        c = self.conf.zssr
        if not c.run_test:
            return []
        return [next_multiple(first, c.run_test_every), next_multiple(first, c.learning_rate_policy_check_every, 1)]

    def after_sync(self) -> bool:
        c = self.conf.zssr
        if c.run_test and self.iter % c.run_test_every == 0:
            self.quick_test()
        self.learning_rate_policy()
        return self.learning_rate < c.min_learning_rate

    def on_quick_test(self, lr_son: np.ndarray, reconstruction: np.ndarray) -> None:
        if self.conf.zssr.learn_residual:  # what the network adds to the interpolation, for the stuck check
            interpolated = data.interpolate(lr_son, self.sf, self.input.shape, self.conf.task.upscale_method)
            self._residual_max = float(np.max(np.abs(reconstruction - np.clip(interpolated, 0.0, 1.0))))

    def learning_rate_policy(self) -> None:
        """Divides the learning rate by 10 when the reconstruction error stops falling (see the config)."""
        c, h = self.conf.zssr, self.history[-1]
        if not c.run_test or (self.iter + 1) % c.learning_rate_policy_check_every != 0:
            return
        if self.iter - self.learning_rate_change_iter_nums[-1] <= c.min_iters:
            return
        if self._residual_max < STUCK_RESIDUAL and len(h.restarts) < MAX_RESTARTS:
            self.restart_network()
            return
        n = c.slope_points
        if len(h.test_steps) < 3 or not learning_rate_should_drop(
                h.test_steps[-n:], h.reconstruction_mse[-n:], c.learning_rate_change_ratio):
            return
        self.set_learning_rate(self.learning_rate / 10)
        self.learning_rate_change_iter_nums.append(self.iter)
        h.learning_rate_change_iters.append(self.iter)
        logging.info("%s iteration %d: learning rate dropped to %.1e", self._sf_text, self.iter,
                     self.learning_rate)

    def restart_network(self) -> None:
        """New random weights and Adam for a stuck network; the policy waits `min_iters` again (see MAX_RESTARTS)."""
        h = self.history[-1]
        h.restarts.append(self.iter)
        logging.warning("%s iteration %d: the network has learned nothing (largest residual %.1e): new random "
                        "weights (restart %d of at most %d)", self._sf_text, self.iter, self._residual_max,
                        len(h.restarts), MAX_RESTARTS)
        self.build_network(self.stage, restart=len(h.restarts))
        self.learning_rate_change_iter_nums.append(self.iter)
        self._residual_max = np.inf

    # The original's helpers.
    def father_to_son(self, hr_father: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return data.father_to_son(hr_father, self.sf, self.kernel, self.conf.zssr.noise_std,
                                  rng if rng is not None else self._test_rng)

    @property
    def back_projection_iters(self) -> int:
        return self.conf.zssr.back_projection_iters[self.stage]

    @property
    def output_flip(self) -> bool:
        return self.conf.zssr.output_flip
