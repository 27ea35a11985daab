"""The ZSSR trainer: an image-specific network trained on the input's own father/son pairs.

`ZSSR(input_img, conf, ground_truth, kernels).run()` keeps the original's call shape and method names (`train`,
`quick_test`, `learning_rate_policy`, `father_to_son`, `forward_pass`, `final_test`) so porters recognise it. Inside,
the step is a small `tf.function` over a `tf.data` pipeline; the Python loop owns the quick tests, the learning-rate
policy, logging, the progress bar and TensorBoard summaries (`zssr_tf.summaries`). The network can start from saved
weights (`Config.init_weights`) and be saved for reuse (`ZSSR.export_model`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zssr_tf import data, inference, metrics, summaries
from zssr_tf.device import resolve_precision
from zssr_tf.config import Config
from zssr_tf.image_io import read_image
from zssr_tf.imresize import fix_scale_and_shape, imresize
from zssr_tf.kernels import preprocess_kernels
from zssr_tf.losses import l1_loss
from zssr_tf.models import build_zssr_generator
from zssr_tf.models.weights import load_init_weights, save_model

MIN_INPUT_SIZE = 4
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


def as_image(image: Any, what: str = "input") -> np.ndarray:
    """A path, uint8/uint16 array or float [0, 1] array as float32 H x W x C."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image).pixels
    array = np.asarray(image)
    if array.dtype == np.uint8:
        array = array / 255.0
    elif array.dtype == np.uint16:
        array = array / 65535.0
    elif not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what}: {array.dtype} images are not supported (uint8, uint16 or float in [0, 1])")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"{what}: expected an H x W or H x W x C image, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: the image has NaN or infinite values")
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def next_sync_iteration(first: int, conf: Config) -> int:
    """The first iteration >= `first` after which the Python loop must look: a loss log line, a quick test, a
    learning-rate decision or the last iteration. The steps up to it run in one `tf.function` call, so the loop's
    per-step overhead (a Python call and a dataset `next`) is paid once per chunk, with the policy's exact semantics.
    """

    def next_multiple(period: int, offset: int = 0) -> int:  # smallest i >= first with (i + offset) % period == 0
        return -(-(first + offset) // period) * period - offset

    candidates = [next_multiple(conf.display_every), conf.max_iters - 1]
    if conf.run_test:
        candidates += [next_multiple(conf.run_test_every), next_multiple(conf.learning_rate_policy_check_every, 1)]
    return min(candidates)


@dataclasses.dataclass
class StageHistory:
    """What happened while training one scale factor (for logs, plots and summaries)."""

    scale_factor: tuple[float, float]
    iterations: int = 0
    learning_rate_change_iters: list[int] = dataclasses.field(default_factory=list)
    loss_steps: list[int] = dataclasses.field(default_factory=list)
    losses: list[float] = dataclasses.field(default_factory=list)
    test_steps: list[int] = dataclasses.field(default_factory=list)
    reconstruction_mse: list[float] = dataclasses.field(default_factory=list)
    true_mse: list[float] = dataclasses.field(default_factory=list)
    skipped_steps: int = 0  # steps whose gradients were not finite (not applied)
    restarts: list[int] = dataclasses.field(default_factory=list)  # iterations of new random weights (stuck net)
    train_seconds: float = 0.0
    final_test_seconds: float = 0.0


class ZSSR:
    """Zero-shot super-resolution of one image (Shocher, Cohen, Irani, CVPR 2018).

    Args:
      input_img: the LR image: a path or an H x W (x C) array (uint8, uint16 or float in [0, 1]).
      conf: a `Config` (defaults: x2 one jump, bicubic).
      ground_truth: optional HR image (path or array) for monitoring the true error; never used for training.
      kernels: optional downscaling kernels, one per scale factor (paths to .mat/.npy or 2-D arrays).
      summary_dir: optional directory for TensorBoard event files (created by `run`): loss, learning rate, stage,
        quick-test errors (true PSNR with ground truth) over the iterations of all stages, and each stage's output.

    Raises:
      ValueError: bad image, ground truth, kernels or `conf.init_weights` (one line).
    """

    def __init__(self, input_img: Any, conf: Config | None = None, ground_truth: Any = None,
                 kernels: Sequence[Any] | None = None, summary_dir: str | os.PathLike | None = None):
        self.conf = conf or Config()
        self.summary_dir = summary_dir
        self._summaries: summaries.SummaryWriter | None = None
        self._step_offset = 0  # iterations of the earlier stages: TensorBoard's step counts across stages
        self.input = as_image(input_img, "input")
        self.squeeze_output = not isinstance(input_img, (str, os.PathLike)) and np.ndim(input_img) == 2
        if min(self.input.shape[:2]) < MIN_INPUT_SIZE:
            raise ValueError(f"input: {self.input.shape[0]}x{self.input.shape[1]} is too small "
                             f"(at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels)")
        out_h, out_w = fix_scale_and_shape(self.input.shape, np.max(self.conf.scale_factors, axis=0))[1]
        if out_h * out_w > self.conf.max_output_megapixels * 1e6:
            raise ValueError(f"input: {self.input.shape[0]}x{self.input.shape[1]} is too large: the output would be "
                             f"{out_h}x{out_w}, over max_output_megapixels={self.conf.max_output_megapixels:g}")
        self.gt = None if ground_truth is None else as_image(ground_truth, "ground truth")
        if self.gt is not None and self.gt.shape[2] != self.input.shape[2]:
            raise ValueError(f"ground truth has {self.gt.shape[2]} channels, the input {self.input.shape[2]}")
        self.kernels = preprocess_kernels(kernels, self.conf.scale_factors, self.conf.downscale_method)
        self.channels = self.input.shape[2]
        # Fathers are crops of one fixed size (one trace of the step); smaller inputs shrink the crop.
        self.crop_size = min(self.conf.crop_size, *self.input.shape[:2])
        self.hr_fathers_sources = [self.input]
        self.outputs: list[np.ndarray] = []
        self.history: list[StageHistory] = []
        self._test_rng = np.random.default_rng([self.conf.seed, 1])
        self._residual_max = np.inf  # largest residual at the last quick test (see STUCK_RESIDUAL)
        self.sf = np.array(self.conf.scale_factors[0])
        self.kernel = self.kernels[0]
        self.precision = resolve_precision(self.conf.precision)
        self.build_network(0)

    # Network and steps.
    def build_network(self, stage: int, restart: int = 0) -> None:
        """New weights (random, or `conf.init_weights`) and a new Adam (the original's `init_sess`). A restart of a
        stuck network gets random weights from its own seed."""
        c = self.conf
        seed = c.seed * 1000 + stage * 100
        if restart:
            seed = int(np.random.default_rng([c.seed, stage, restart]).integers(2**31))
        self.model = build_zssr_generator(
            channels=self.channels, depth=c.depth, width=c.width, init_variance=c.init_variance,
            learn_residual=c.learn_residual, seed=seed, dtype_policy=self.precision)
        if c.init_weights and not restart:
            load_init_weights(self.model, c.init_weights)
        # TF1's Adam epsilon (Keras's default is 1e-7). The learning rate lives in the optimizer's variable, so
        # changing it keeps Adam's moments, also across gradual stages.
        adam = keras.optimizers.Adam(learning_rate=c.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        # float16 needs loss scaling (it skips non-finite steps itself); bfloat16 has float32's range.
        loss_scaled = self.precision == "mixed_float16"
        self.optimizer = keras.optimizers.LossScaleOptimizer(adam) if loss_scaled else adam
        self.optimizer.build(self.model.trainable_variables)
        self._learning_rate = c.learning_rate
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        model, optimizer, skipped = self.model, self.optimizer, self.skipped_steps

        # `None` (not False) leaves TF's own choice when XLA is off.
        @tf.function(jit_compile=True if c.jit_compile else None)
        def train_step(lr_son: tf.Tensor, hr_father: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = l1_loss(model(lr_son, training=True), hr_father)
                scaled_loss = optimizer.scale_loss(loss) if loss_scaled else loss
            variables = model.trainable_variables
            gradients = tape.gradient(scaled_loss, variables)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
            if loss_scaled:
                optimizer.apply_gradients(zip(gradients, variables))
            else:
                # A non-finite update would ruin the weights for good: skip the step instead (and count it).
                # oneDNN's bfloat16 weight gradients hold a few NaNs in under 1% of the steps for some crop sizes
                # (benchmarks/results/bf16_nan_steps.md).
                def apply() -> tf.Tensor:
                    optimizer.apply(gradients, variables)
                    return tf.constant(True)

                tf.cond(finite, apply, lambda: tf.constant(False))
            skipped.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
            return loss

        @tf.function
        def train_steps(examples: tf.data.Iterator, num_steps: tf.Tensor) -> tf.Tensor:
            """`num_steps` train steps on the next examples; returns the last step's loss."""
            loss = tf.constant(0.0)
            for _ in tf.range(num_steps):
                lr_son, hr_father = next(examples)
                loss = train_step(lr_son, hr_father)
            return loss

        @tf.function(input_signature=[tf.TensorSpec((1, None, None, self.channels), tf.float32)])
        def predict(interpolated: tf.Tensor) -> tf.Tensor:
            return tf.clip_by_value(tf.cast(model(interpolated, training=False), tf.float32), 0.0, 1.0)

        self._train_step, self._train_steps, self._predict = train_step, train_steps, predict

    @property
    def _sf_text(self) -> str:
        """Log-line prefix: the run's name and the stage's scale factor."""
        return f"{self.conf.name} x{'x'.join(f'{s:g}' for s in self.sf)}"

    @property
    def learning_rate(self) -> float:
        """The current learning rate. A Python mirror of the optimizer's variable: reading the variable every
        iteration would cost a device round trip per step."""
        return self._learning_rate

    def set_learning_rate(self, value: float) -> None:
        self._learning_rate = value
        self.optimizer.learning_rate.assign(value)

    @property
    def global_step(self) -> int:
        """The current iteration counted over all stages so far (TensorBoard's step)."""
        return self._step_offset + self.iter

    # The original's methods.
    def run(self) -> np.ndarray:
        """Runs every scale factor; returns the last stage's SR image (float32 in [0, 1])."""
        if self.summary_dir is not None:
            self._summaries = summaries.SummaryWriter(os.fspath(self.summary_dir))
        try:
            self._run_stages()
        finally:
            if self._summaries is not None:
                self._summaries.close()
                self._summaries = None
        return self.outputs[-1][:, :, 0] if self.squeeze_output else self.outputs[-1]

    def _run_stages(self) -> None:
        c = self.conf
        self._step_offset = 0
        if self._summaries is not None and self.gt is not None:
            self._summaries.image("images/ground_truth", self.gt, step=0)
        for stage, (sf, kernel) in enumerate(zip(c.scale_factors, self.kernels)):
            self.stage, self.sf, self.kernel = stage, np.array(sf), kernel
            self.output_shape = fix_scale_and_shape(self.input.shape, self.sf)[1]
            if stage > 0 and c.init_net_for_each_sf:
                self.build_network(stage)
            self.set_learning_rate(c.learning_rate)
            self.gt_per_sf = self._ground_truth_for_stage()
            self.history.append(StageHistory(scale_factor=tuple(sf)))
            start = time.perf_counter()
            self.train()
            self.history[-1].train_seconds = time.perf_counter() - start
            start = time.perf_counter()
            output = self.final_test()
            self.history[-1].final_test_seconds = time.perf_counter() - start
            self.hr_fathers_sources.append(output)
            self.outputs.append(output)
            logging.info("%s done: %d iterations, learning-rate drops at %s, train %.1f s, "
                         "final test %.1f s", self._sf_text, self.history[-1].iterations,
                         self.history[-1].learning_rate_change_iters, self.history[-1].train_seconds,
                         self.history[-1].final_test_seconds)
            self._step_offset += self.history[-1].iterations
            if self._summaries is not None:
                self._summaries.image("images/sr", output, step=self._step_offset - 1)
                self._summaries.flush()  # a stage's curves and image show up in TensorBoard when it ends

    def train(self) -> None:
        """Trains the network for the current scale factor until the learning-rate policy or max_iters stops it."""
        c, h = self.conf, self.history[-1]
        examples = iter(self.example_dataset(c.max_iters))
        self.learning_rate_change_iter_nums = [0]
        self._residual_max = np.inf  # none measured yet in this stage
        self.skipped_steps.assign(0)
        with summaries.progress_bar(c.max_iters, self._sf_text, c.progress) as bar:
            while h.iterations < c.max_iters:
                # Steps run in chunks up to the next iteration the loop must see; self.iter is that iteration.
                self.iter = next_sync_iteration(h.iterations, c)
                num_steps = self.iter + 1 - h.iterations
                loss = self._train_steps(examples, tf.constant(num_steps))
                h.iterations = self.iter + 1
                # The loss is read (a device sync) only here; the bar and summaries reuse what is read anyway.
                if self.iter % c.display_every == 0:
                    h.loss_steps.append(self.iter)
                    h.losses.append(float(loss))
                    learning_rate = self.learning_rate
                    logging.info("%s iteration %d: loss %.6f, learning rate %.1e", self._sf_text, self.iter,
                                 h.losses[-1], learning_rate)
                    bar.set_postfix_str(f"loss {h.losses[-1]:.5f}, lr {learning_rate:.1e}", refresh=False)
                    if self._summaries is not None:
                        self._summaries.scalars({"train/loss": h.losses[-1], "train/learning_rate": learning_rate,
                                                 "stage": self.stage}, step=self.global_step)
                bar.update(num_steps)
                if c.run_test and self.iter % c.run_test_every == 0:
                    self.quick_test()
                self.learning_rate_policy()
                if self.learning_rate < c.min_learning_rate:
                    break
        h.skipped_steps += int(self.skipped_steps.numpy())
        if h.skipped_steps:
            logging.warning("sf %s: %d steps with non-finite gradients were skipped", self._sf_text, h.skipped_steps)

    def example_dataset(self, num_examples: int) -> tf.data.Dataset:
        """The current stage's (interpolated lr_son, hr_father) examples, from the pipeline the config picks."""
        c = self.conf
        build_dataset = data.PIPELINE_BUILDERS[data.resolve_pipeline(c.pipeline)]
        return build_dataset(
            self.hr_fathers_sources, ((1.0, 1.0),) + c.scale_factors, tuple(self.sf), self.kernel, c,
            self.crop_size, seed=(c.seed, 0, self.stage), num_examples=num_examples)

    def quick_test(self) -> None:
        """Reconstruction error of the input from its own son (drives the policy); true error when GT is given."""
        h = self.history[-1]
        if self.gt_per_sf is not None:
            sr = self.forward_pass(self.input)
            h.true_mse.append(float(np.mean((self.gt_per_sf - sr) ** 2)))
        son = self.father_to_son(self.input, self._test_rng)
        interpolated = data.interpolate(son, self.sf, self.input.shape, self.conf.upscale_method)
        reconstruction = self._network(interpolated)
        if self.conf.learn_residual:  # what the network adds to the interpolation, for the stuck-network check
            self._residual_max = float(np.max(np.abs(reconstruction - np.clip(interpolated, 0.0, 1.0))))
        h.reconstruction_mse.append(float(np.mean((self.input - reconstruction) ** 2)))
        h.test_steps.append(self.iter)
        logging.info("%s iteration %d: reconstruction MSE %.5e%s", self._sf_text, self.iter,
                     h.reconstruction_mse[-1], f", true MSE {h.true_mse[-1]:.5e}" if h.true_mse else "")
        if self._summaries is not None:
            values = {"quick_test/reconstruction_mse": h.reconstruction_mse[-1]}
            if self.gt_per_sf is not None:
                values.update({"quick_test/true_mse": h.true_mse[-1],
                               "quick_test/true_psnr": metrics.psnr_of_mse(h.true_mse[-1])})
            self._summaries.scalars(values, step=self.global_step)

    def learning_rate_policy(self) -> None:
        """Divides the learning rate by 10 when the reconstruction error stops falling (see the config)."""
        c, h = self.conf, self.history[-1]
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
        h.skipped_steps += int(self.skipped_steps.numpy())
        h.restarts.append(self.iter)
        logging.warning("%s iteration %d: the network has learned nothing (largest residual %.1e): new random "
                        "weights (restart %d of at most %d)", self._sf_text, self.iter, self._residual_max,
                        len(h.restarts), MAX_RESTARTS)
        self.build_network(self.stage, restart=len(h.restarts))
        self.learning_rate_change_iter_nums.append(self.iter)
        self._residual_max = np.inf

    def father_to_son(self, hr_father: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return data.father_to_son(hr_father, self.sf, self.kernel, self.conf.noise_std,
                                  rng if rng is not None else self._test_rng)

    def forward_pass(self, lr_image: np.ndarray, output_shape: Sequence[int] | None = None) -> np.ndarray:
        """The network on the interpolated LR image; float32 in [0, 1] of `output_shape` (default ceil(sf*size))."""
        if output_shape is None:
            output_shape = fix_scale_and_shape(lr_image.shape, self.sf)[1]
        return self._network(data.interpolate(lr_image, self.sf, output_shape, self.conf.upscale_method))

    def _network(self, interpolated: np.ndarray) -> np.ndarray:
        """The network on an already interpolated image; float32 in [0, 1]."""
        # Tiles overlap by the receptive-field radius (depth pixels for 3x3 convolutions): same result, less memory.
        return inference.predict_tiled(lambda x: self._predict(x[None]).numpy()[0], interpolated,
                                       self.conf.tile_size, margin=self.conf.depth)

    def export_model(self, path: str | os.PathLike) -> None:
        """Saves the network (after `run`: the last stage's) as a Keras `.keras` file, for `Config.init_weights`."""
        save_model(self.model, path)

    def final_test(self) -> np.ndarray:
        return inference.final_test(
            self.forward_pass, self.input, tuple(self.sf), self.kernel, self.conf.upscale_method,
            self.conf.back_projection_iters[self.stage], self.conf.output_flip)

    def _ground_truth_for_stage(self) -> np.ndarray | None:
        """The ground truth at this stage's scale (monitoring only), cropped to the output's size."""
        if self.gt is None:
            return None
        final_sf = np.array(self.conf.final_scale_factor)
        gt = self.gt
        if np.any(np.abs(self.sf - final_sf) > 0.01):
            gt = imresize(gt, self.sf / final_sf, output_shape=self.output_shape,
                          kernel=self.conf.downscale_gt_method).astype(np.float32)
        h, w = self.output_shape
        if gt.shape[0] < h or gt.shape[1] < w:
            raise ValueError(f"ground truth {gt.shape[0]}x{gt.shape[1]} is smaller than the output {h}x{w}")
        # Benchmarks' LR images are made from the HR cropped to a multiple of the scale: compare the top-left part.
        return gt[:h, :w]
