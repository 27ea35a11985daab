"""The engine every zero-shot method runs on: what all methods share, once.

A method (`zssr_tf.methods`) subclasses `Trainer` and supplies its networks and one optimizer per network
(`build_networks` -> `set_networks`), its examples (`example_dataset`), a train step that returns a dict of named
scalars (`train_step`, traced by the engine), its schedule (`schedule_iterations`, `after_sync`, `learning_rate`)
and its final-test settings. The engine owns:
  * the input, ground-truth and kernel checks (all before any training) and the gradual stages;
  * the Python loop and its chunking: the steps up to the next iteration the loop must see (a loss line, one of
    the method's own events, the last iteration) run in one `tf.function` call. The loop is a coroutine
    (`Trainer.run_coroutine`) that asks for those steps (`StepRequest`): `drive` runs them here, one image per
    step; `zssr_tf.group.drive_together` runs several images' in one step;
  * the history of every named scalar, fed to the log lines, the progress bar, TensorBoard and `<name>_log.json`;
  * precision, loss scaling and the skip of non-finite steps, per optimizer (`GuardedOptimizer`), and the
    divergence guard (the last good variables, restored when the weights or losses stop being finite);
  * one `tf.train.Checkpoint` of all networks and optimizers, through which export and `init_weights` go, and the
    resumable checkpoints of the whole training state (`set_resume_dir`, `run.checkpoint_every`);
  * the quick test (reconstruction of the input, or of its centre for large ones, from its own son; true error
    with ground truth), tiled prediction on whole images (the generator states its scale and receptive field) and
    the final test, streamed in tiles for large outputs (`inference.final_test`).
No engine module imports a method.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import time
from typing import Any, Generator, Iterator, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zssr_tf import data, inference, interrupts, metrics, summaries
from zssr_tf.config import Config, max_input_megapixels
from zssr_tf.device import resolve_precision
from zssr_tf.image_io import read_header, read_image, write_bytes_atomically
from zssr_tf.imresize import fix_scale_and_shape, imresize, support_radius
from zssr_tf.kernels import KernelError, preprocess_kernels
from zssr_tf.losses import l1_loss
from zssr_tf.models.weights import restore_networks, save_model, write_checkpoint

MIN_INPUT_SIZE = 4


def as_image(image: Any, what: str = "input", max_megapixels: float | None = None, why: str = "") -> np.ndarray:
    """A path, uint8/uint16 array or float [0, 1] array as float32 H x W x C; a file over `max_megapixels` is
    refused from its header (see `image_io.read_image`)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_megapixels, why).pixels
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


def read_ground_truth(ground_truth: Any, image_shape: Sequence[int], conf: Config) -> np.ndarray:
    """`as_image` of a ground truth; a file of the wrong size is refused from its header, before decoding."""
    if isinstance(ground_truth, (str, os.PathLike)):
        header = read_header(ground_truth)
        if header is not None:
            check_ground_truth_shape((header.height, header.width), image_shape, conf)
    return as_image(ground_truth, "ground truth")


def next_multiple(first: int, period: int, offset: int = 0) -> int:
    """The smallest i >= first with (i + offset) % period == 0."""
    return -(-(first + offset) // period) * period - offset


def check_ground_truth_shape(gt_shape: Sequence[int], image_shape: Sequence[int], conf: Config) -> None:
    """A ground truth must have the output's size, or up to `ceil(scale) - 1` more rows and columns: what the
    usual crop of an HR image to a multiple of the scale leaves. It is compared with the output's top-left part,
    so a larger one would give a PSNR of nothing in particular.

    Raises:
      ValueError: another size (one line).
    """
    sf = np.array(conf.task.final_scale_factor)
    h, w = fix_scale_and_shape(image_shape, sf)[1]
    extra_h, extra_w = math.ceil(sf[0]) - 1, math.ceil(sf[1]) - 1
    gt_h, gt_w = gt_shape[:2]
    if gt_h < h or gt_w < w:
        raise ValueError(f"ground truth {gt_h}x{gt_w} is smaller than the output {h}x{w}")
    if gt_h > h + extra_h or gt_w > w + extra_w:
        raise ValueError(f"ground truth {gt_h}x{gt_w} is larger than the output {h}x{w} (by more than a crop to a "
                         f"multiple of the scale, {extra_h}x{extra_w} pixels): is it the ground truth of this input "
                         "at this scale?")


def check_input(image: np.ndarray, ground_truth: np.ndarray | None, conf: Config, min_size: int,
                what: str) -> None:
    """The checks of a run's input and ground truth that need no training (before any: a run never trains and
    then fails on its input).

    Raises:
      ValueError: an image smaller than `min_size` for `what`, an output over `max_output_megapixels`, or a
        ground truth of other channels or another size than the output (one line).
    """
    task = conf.task
    if min(image.shape[:2]) < min_size:
        raise ValueError(f"input: {image.shape[0]}x{image.shape[1]} is too small for {what} "
                         f"(at least {min_size}x{min_size} pixels)")
    out_h, out_w = fix_scale_and_shape(image.shape, np.max(task.scale_factors, axis=0))[1]
    if out_h * out_w > conf.run.max_output_megapixels * 1e6:
        raise ValueError(f"input: {image.shape[0]}x{image.shape[1]} is too large: the output would be "
                         f"{out_h}x{out_w}, over max_output_megapixels={conf.run.max_output_megapixels:g}")
    if ground_truth is not None:
        if ground_truth.shape[2] != image.shape[2]:
            raise ValueError(f"ground truth has {ground_truth.shape[2]} channels, the input {image.shape[2]}")
        check_ground_truth_shape(ground_truth.shape, image.shape, conf)


class GuardedOptimizer:
    """One network's optimizer with what every method needs around it: loss scaling under float16, and the skip
    (and count) of steps whose gradients are not finite.

    Args:
      optimizer: a Keras optimizer (its learning rate may be a `LearningRateSchedule`).
      variables: the network's trainable variables (the optimizer is built on them now, so its state exists
        before the first step and goes into the checkpoint).
      precision: the run's resolved precision.
    """

    def __init__(self, optimizer: keras.optimizers.Optimizer, variables: Sequence[tf.Variable], precision: str):
        # float16 needs loss scaling (Keras's optimizer then skips non-finite steps itself); bfloat16 has float32's
        # range.
        self.loss_scaled = precision == "mixed_float16"
        self.optimizer = keras.optimizers.LossScaleOptimizer(optimizer) if self.loss_scaled else optimizer
        self.optimizer.build(variables)
        self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False)

    def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
        """The loss to differentiate (call inside the tape)."""
        return self.optimizer.scale_loss(loss) if self.loss_scaled else loss

    def minimize(self, tape: tf.GradientTape, scaled_loss: tf.Tensor, variables: Sequence[tf.Variable]) -> tf.Tensor:
        """Applies the gradients of `scaled_loss` unless one is not finite; returns whether they were finite."""
        return self.apply(tape.gradient(scaled_loss, variables), variables)

    def apply(self, gradients: Sequence[tf.Tensor], variables: Sequence[tf.Variable]) -> tf.Tensor:
        """Applies gradients (of the scaled loss) unless one is not finite; returns whether they were finite."""
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        if self.loss_scaled:
            self.optimizer.apply_gradients(zip(gradients, variables))
        else:
            # A non-finite update would ruin the weights for good: skip the step instead (and count it).
            # oneDNN's bfloat16 weight gradients hold a few NaNs in under 1% of the steps for some crop sizes
            # (benchmarks/results/bf16_nan_steps.md).
            def apply() -> tf.Tensor:
                self.optimizer.apply(gradients, variables)
                return tf.constant(True)

            tf.cond(finite, apply, lambda: tf.constant(False))
        self.skipped.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
        return finite


def l1_step(network: keras.Model, optimizer: GuardedOptimizer, network_input: tf.Tensor,
            target: tf.Tensor) -> dict[str, tf.Tensor]:
    """One step of `optimizer` on the L1 loss of the network's output against the target (ZSSR's step, and the
    paired steps of other methods); returns {"loss": the loss before the step}."""
    with tf.GradientTape() as tape:
        loss = l1_loss(network(network_input, training=True), target)
        scaled_loss = optimizer.scale_loss(loss)
    optimizer.minimize(tape, scaled_loss, network.trainable_variables)
    return {"loss": loss}


@dataclasses.dataclass(frozen=True)
class StepRequest:
    """What a run's coroutine (`Trainer.run_coroutine`) asks of whoever drives it: up to `num_steps` train steps of
    `trainer` (the steps to its next sync). It is sent back (steps run, at least 1; the last step's scalars)."""

    trainer: "Trainer"
    num_steps: int


# A run's coroutine: yields StepRequests, is sent (steps run, scalars), returns its result.
Coroutine = Generator[StepRequest, tuple[int, Mapping[str, tf.Tensor]], Any]


def drive(coroutine: Coroutine, request: StepRequest | None = None) -> Any:
    """Runs a run's coroutine (started already when its first `request` is given) with one image per step, here
    (`Trainer.run_steps_alone`); returns its result. `zssr_tf.group.drive_together` runs several at once."""
    try:
        request = next(coroutine) if request is None else request
        while True:
            try:
                answer = request.trainer.run_steps_alone(request.num_steps)
            except (Exception, KeyboardInterrupt) as e:  # raised in the coroutine, where its handlers are
                request = coroutine.throw(e)
                continue
            request = coroutine.send(answer)
    except StopIteration as stop:
        return stop.value


@dataclasses.dataclass
class StageHistory:
    """What happened while training one scale factor (for logs, plots and summaries)."""

    scale_factor: tuple[float, float]
    iterations: int = 0
    learning_rate_change_iters: list[int] = dataclasses.field(default_factory=list)
    loss_steps: list[int] = dataclasses.field(default_factory=list)  # the iterations of the logged scalars
    losses: list[float] = dataclasses.field(default_factory=list)  # the scalar named "loss" (the method's main one)
    scalars: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # every named scalar at loss_steps
    learning_rates: list[float] = dataclasses.field(default_factory=list)  # at loss_steps
    test_steps: list[int] = dataclasses.field(default_factory=list)
    reconstruction_mse: list[float] = dataclasses.field(default_factory=list)
    true_mse: list[float] = dataclasses.field(default_factory=list)
    skipped_steps: dict[str, int] = dataclasses.field(default_factory=dict)  # per optimizer: non-finite, not applied
    restarts: list[int] = dataclasses.field(default_factory=list)  # iterations of new random weights (stuck net)
    divergences: list[int] = dataclasses.field(default_factory=list)  # iterations where the training diverged
    train_seconds: float = 0.0
    final_test_seconds: float = 0.0


def _stage_history(fields: Mapping[str, Any]) -> StageHistory:
    """A StageHistory from its JSON form."""
    return StageHistory(**{**fields, "scale_factor": tuple(fields["scale_factor"])})


# Longest wall time of one call of the train step (a piece of a chunk), so that Ctrl-C and SIGTERM, which stop a run
# between calls, end it within about a second (a chunk of 20 steps took 11 s on a 2-core AVX2 CPU).
CHUNK_SECONDS = 0.5


class Trainer:
    """The shared half of a zero-shot SR run of one image; subclasses are the methods.

    Args:
      input_img: the LR image: a path or an H x W (x C) array (uint8, uint16 or float in [0, 1]).
      conf: a `Config` (default: the defaults with this method).
      ground_truth: optional HR image (path or array) for monitoring the true error; never used for training.
      kernels: optional downscaling kernels, one per scale factor (paths to .mat/.npy or 2-D arrays).
      summary_dir: optional directory for TensorBoard event files (created by `run`): the train step's scalars,
        learning rate, stage, quick-test errors (true PSNR with ground truth) over the iterations of all stages,
        and each stage's output.

    Raises:
      ValueError: bad image, ground truth (also a wrong size, before any training), kernels or `init_weights`
        (one line).
    """

    method_name = ""  # the registry's name; tags output names and log lines
    # Whether `resume_state` / `set_resume_state` carry all of the method's own state between checkpoints.
    resumable = False
    min_input_size = MIN_INPUT_SIZE

    def __init__(self, input_img: Any, conf: Config | None = None, ground_truth: Any = None,
                 kernels: Sequence[Any] | None = None, summary_dir: str | os.PathLike | None = None):
        self.conf = conf or Config(method=self.method_name)
        task = self.conf.task
        self.summary_dir = summary_dir
        self._summaries: summaries.SummaryWriter | None = None
        self._step_offset = 0  # iterations of the earlier stages: TensorBoard's step counts across stages
        self.input = as_image(input_img, "input", *max_input_megapixels(self.conf))
        self.squeeze_output = not isinstance(input_img, (str, os.PathLike)) and np.ndim(input_img) == 2
        self.gt = None if ground_truth is None else read_ground_truth(ground_truth, self.input.shape, self.conf)
        check_input(self.input, self.gt, self.conf, self.min_input_size, self.method_name)
        self.kernels = self._checked_kernels(kernels)
        self._kernels_pending = task.estimate_kernels and kernels is None  # until `set_kernels`
        self.channels = self.input.shape[2]
        self.hr_fathers_sources = [self.input]
        self.outputs: list[np.ndarray] = []
        self.history: list[StageHistory] = []
        self._test_rng = np.random.default_rng([self.conf.run.seed, 1])
        self.stage, self.iter = 0, 0
        self._piece_steps = 1  # steps per call of the train step: grows to about CHUNK_SECONDS of them
        self.examples: tf.data.Iterator | None = None  # the stage's training examples while it trains
        self.sf = np.array(task.scale_factors[0])
        self.kernel = self.kernels[0]
        self.precision = resolve_precision(self.conf.run.precision)
        self.networks: dict[str, keras.Model] = {}
        self.optimizers: dict[str, GuardedOptimizer] = {}
        self.report: dict[str, Any] = {}  # what the method tells about its run, for log.json (e.g. patch counts)
        self._resume_dir: str | None = None
        self.build_networks(0)

    # What a method supplies.
    def build_networks(self, stage: int, restart: int = 0) -> None:
        """Builds the networks and optimizers and hands them to `set_networks`."""
        raise NotImplementedError

    def train_step(self, *batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """One step on one batch of the example dataset (traced by the engine); returns named float32 scalars,
        among them "loss"."""
        raise NotImplementedError

    def example_dataset(self, num_examples: int) -> tf.data.Dataset:
        """The current stage's training batches (each a tuple the train step takes)."""
        raise NotImplementedError

    @property
    def max_iters(self) -> int:
        raise NotImplementedError

    @property
    def learning_rate(self) -> float:
        """The current learning rate (a Python value: reading a variable every step would cost a device sync)."""
        raise NotImplementedError

    @property
    def back_projection_iters(self) -> int:
        raise NotImplementedError

    @property
    def output_flip(self) -> bool:
        raise NotImplementedError

    def start_stage(self, stage: int) -> None:
        """Called before each stage trains (new networks or a learning-rate reset, as the method wants)."""

    def schedule_iterations(self, first: int) -> list[int]:
        """The method's next iterations >= first that the loop must see (e.g. quick tests)."""
        return []

    def after_sync(self) -> bool:
        """Called after the steps up to `self.iter`; True stops the stage."""
        return False

    def group_key(self) -> tuple | None:
        """What must be equal for images to train in one step (`zssr_tf.group`); None: this one cannot (the
        default: one image per step)."""
        return None

    def group_variables(self) -> list[tf.Variable]:
        """With a `group_key`: the generator's kernels, in the order `zssr_tf.group.StackedZSSR` applies them."""
        raise NotImplementedError

    def father_to_son(self, hr_father: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The LR son of an image for the quick test (the stage's kernel; methods may add noise)."""
        return data.father_to_son(hr_father, self.sf, self.kernel, 0.0, rng)

    def on_quick_test(self, lr_son: np.ndarray, reconstruction: np.ndarray) -> None:
        """Sees each quick test's son and its reconstruction of the input (ZSSR checks for a stuck network)."""

    def resume_state(self) -> dict[str, Any]:
        """The method's own Python state at a sync of the loop (JSON), for resumable checkpoints (`resumable`)."""
        return {}

    def set_resume_state(self, state: Mapping[str, Any]) -> None:
        """Sets what `resume_state` returned, after the stage's `start_stage` and the networks' restore."""

    def checkpointed_state(self) -> dict[str, tf.Module]:
        """What the train step changes besides the networks and optimizers (a `tf.random.Generator`): it goes into
        the checkpoint with them, so a resumed run draws what the uninterrupted one would have."""
        return {}

    def resume_key_arrays(self) -> list[np.ndarray]:
        """What the run is made of besides its configuration, input, ground truth and kernels (DGDML: its patches,
        which a depth map chose): a checkpoint written for other arrays is not resumed."""
        return []

    def set_kernels(self, kernels: Sequence[Any]) -> None:
        """Sets the downscaling kernels, one per scale factor, after construction (before `run`): `app.run` builds
        the trainer first, so that every check of the run comes before minutes of kernel estimation."""
        self.kernels = self._checked_kernels(kernels)
        self.kernel = self.kernels[0]
        self._kernels_pending = False

    def _checked_kernels(self, kernels: Sequence[Any] | None) -> list[np.ndarray | str]:
        """`preprocess_kernels`, and no kernel larger than the input (its sons would be made of border padding).

        Raises:
          KernelError: a bad kernel (one line).
        """
        task = self.conf.task
        checked = preprocess_kernels(kernels, task.scale_factors, task.downscale_method)
        h, w = self.input.shape[:2]
        for kernel in checked:
            if not isinstance(kernel, str) and (kernel.shape[0] > h or kernel.shape[1] > w):
                raise KernelError(f"kernels: a {kernel.shape[0]}x{kernel.shape[1]} kernel (once centred) is larger "
                                  f"than the {h}x{w} input")
        return checked

    def set_resume_dir(self, path: str | os.PathLike) -> None:
        """Makes the run resumable: every `run.checkpoint_every` iterations (at the next sync of the loop with finite
        weights and loss) and at the end of each stage, the whole training state goes to the folder `path`
        (`checkpoint/`: networks, optimizers, history, schedule, random state; `stage_<i>.npy`: finished stages'
        outputs), and `run` goes on from what is there, if it was written for this image and configuration. The
        examples, the learning-rate policy and the quick tests go on as they would have: the result is the
        uninterrupted run's. The caller removes the folder when it is done with the result."""
        if not self.resumable:
            raise ValueError(f"checkpoint_every: --method={self.method_name} does not resume from checkpoints")
        self._resume_dir = os.fspath(path)

    # Networks, optimizers, steps, checkpoint.
    def set_networks(self, networks: Mapping[str, keras.Model],
                     optimizers: Mapping[str, keras.optimizers.Optimizer]) -> None:
        """Takes the method's networks ("generator" is the one that super-resolves) and one optimizer per trained
        network; wraps the optimizers (`GuardedOptimizer`), makes the checkpoint and traces nothing yet."""
        if self.history:
            self._collect_skipped_steps()
        self.networks = dict(networks)
        self.optimizers = {name: GuardedOptimizer(optimizer, self.networks[name].trainable_variables, self.precision)
                           for name, optimizer in optimizers.items()}
        self.checkpoint = tf.train.Checkpoint(
            **self.networks, **{f"{name}_optimizer": o.optimizer for name, o in self.optimizers.items()},
            **self.checkpointed_state())
        self._set_divergence_guard()
        generator = self.networks["generator"]
        # `None` (not False) leaves TF's own choice when XLA is off.
        step = tf.function(self.train_step, jit_compile=True if self.conf.run.jit_compile else None)

        # Keras's `steps_per_execution` does this inside `Model.fit` only; a method's own step needs its own loop.
        @tf.function
        def train_steps(examples: tf.data.Iterator, num_steps: tf.Tensor) -> dict[str, tf.Tensor]:
            """`num_steps` (>= 1) train steps on the next examples; returns the last step's scalars."""
            scalars = step(*next(examples))
            for _ in tf.range(num_steps - 1):
                scalars = step(*next(examples))
            return scalars

        @tf.function(input_signature=[tf.TensorSpec((1, None, None, generator.input_shape[-1]), tf.float32)])
        def predict(interpolated: tf.Tensor) -> tf.Tensor:
            return tf.clip_by_value(tf.cast(generator(interpolated, training=False), tf.float32), 0.0, 1.0)

        self._train_step, self._train_steps, self._predict = step, train_steps, predict

    def _set_divergence_guard(self) -> None:
        """A copy of every network and optimizer variable (not the step counts and learning rates, which go on),
        refreshed at each sync of the loop where the loss and the variables are finite; a divergence restores it.

        A non-finite gradient never reaches the weights (`GuardedOptimizer` skips the step), but finite ones can
        still blow them up (too high a learning rate), and then every later step is skipped: the guard is what
        gives such a stage its last good weights back instead of a NaN image."""
        guarded = [v for network in self.networks.values() for v in network.variables]
        # Step counts and learning rates go on; so does a loss scale (float16), lowered after an overflow.
        guarded += [v for o in self.optimizers.values() for v in o.optimizer.variables
                    if not v.path.endswith(("/iteration", "/learning_rate", "/dynamic_scale", "/step_counter"))]
        floats = [v for v in guarded if tf.as_dtype(v.dtype).is_floating]
        self._good_state = [tf.Variable(v, trainable=False) for v in guarded]
        self._good_iteration = self.iter

        @tf.function
        def keep_if_finite(loss: tf.Tensor) -> tf.Tensor:
            """0: all finite (kept); 1: the loss is not, the variables are; 2: the variables are not."""
            variables_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in floats])

            def keep() -> tf.Tensor:
                for good, v in zip(self._good_state, guarded):
                    good.assign(v)
                return tf.constant(0)

            return tf.cond(tf.logical_not(variables_finite), lambda: tf.constant(2),
                           lambda: tf.cond(tf.math.is_finite(loss), keep, lambda: tf.constant(1)))

        def restore() -> None:
            for good, v in zip(self._good_state, guarded):
                v.assign(good)

        self._keep_if_finite, self._restore_good_state = keep_if_finite, restore

    def lower_learning_rate(self, factor: float) -> bool:
        """After a divergence: multiplies the learning rate by `factor` and returns True, or returns False when the
        stage should end instead (methods with a fixed schedule, or a learning rate below the method's floor)."""
        return False

    def load_init_weights(self) -> None:
        """Sets the networks from `run.init_weights` (a checkpoint of `export_model`, or a generator file)."""
        if self.conf.run.init_weights:
            restored = restore_networks(self.networks, self.conf.run.init_weights)
            logging.info("%s: loaded the weights of the %s from %s", self.conf.run.name, " and ".join(restored),
                         self.conf.run.init_weights)

    def export_model(self, path: str | os.PathLike) -> None:
        """Saves what was trained (after `run`: the last stage's): a path ending in `.keras` gets the generator as a
        Keras model file; any other path becomes a checkpoint folder of every network and optimizer. Both are
        accepted by `init_weights`."""
        path = os.fspath(path)
        if path.endswith(".keras"):
            save_model(self.networks["generator"], path)
        else:
            write_checkpoint(self.checkpoint, path)

    def _collect_skipped_steps(self) -> None:
        h = self.history[-1]
        for name, optimizer in self.optimizers.items():
            h.skipped_steps[name] = h.skipped_steps.get(name, 0) + int(optimizer.skipped.numpy())
            optimizer.skipped.assign(0)

    # The stages and the loop.
    @property
    def _sf_text(self) -> str:
        """Log-line prefix: the run's name and the stage's scale factor."""
        return f"{self.conf.run.name} x{'x'.join(f'{s:g}' for s in self.sf)}"

    @property
    def global_step(self) -> int:
        """The current iteration counted over all stages so far (TensorBoard's step)."""
        return self._step_offset + self.iter

    def run(self) -> np.ndarray:
        """Runs every scale factor; returns the last stage's SR image (float32 in [0, 1])."""
        return drive(self.run_coroutine())

    def run_coroutine(self) -> Coroutine:
        """`run` as a coroutine (see `train_coroutine`); returns what `run` returns."""
        if self._kernels_pending:
            raise ValueError("estimate_kernels: give the trainer the kernels of "
                             "zssr_tf.kernel_estimation.estimate_kernels(image, conf) (`kernels=` or `set_kernels`; "
                             "app.run and the command line estimate them themselves)")
        with self._writing_summaries():
            yield from self._run_stages()
        return self.outputs[-1][:, :, 0] if self.squeeze_output else self.outputs[-1]

    @contextlib.contextmanager
    def _writing_summaries(self) -> Iterator[None]:
        """TensorBoard's writer (with `summary_dir`) for the duration of a run."""
        if self.summary_dir is not None:
            self._summaries = summaries.SummaryWriter(os.fspath(self.summary_dir))
        try:
            yield
        finally:
            if self._summaries is not None:
                self._summaries.close()
                self._summaries = None

    def _run_stages(self) -> Coroutine:
        self._step_offset = 0
        if self._summaries is not None and self.gt is not None:
            self._summaries.image("images/ground_truth", self.gt, step=0)
        resume = self._read_resume_state()
        for stage, (sf, kernel) in enumerate(zip(self.conf.task.scale_factors, self.kernels)):
            self.stage, self.sf, self.kernel = stage, np.array(sf), kernel
            self.output_shape = fix_scale_and_shape(self.input.shape, self.sf)[1]
            self.gt_per_sf = self._ground_truth_for_stage()
            if resume is not None and stage < resume["stage"]:  # finished before the checkpoint
                self._end_stage(self._resumed_stage(resume, stage))
                continue
            self.start_stage(stage)
            self.history.append(StageHistory(scale_factor=tuple(sf)))
            if resume is not None and stage == resume["stage"]:
                self._restore_resume_state(resume)
                if resume["stage_done"]:
                    self._end_stage(np.load(self._stage_output_path(stage)))
                    continue
            start = time.perf_counter()
            yield from self.train_coroutine()
            self.history[-1].train_seconds += time.perf_counter() - start
            start = time.perf_counter()
            output = self.final_test()
            self.history[-1].final_test_seconds = time.perf_counter() - start
            if not np.all(np.isfinite(output)):  # never written: the guard keeps finite weights, but say so if not
                raise ValueError(f"{self._sf_text}: the output has NaN or infinite values")
            logging.info("%s done: %d iterations, learning-rate drops at %s, train %.1f s, "
                         "final test %.1f s", self._sf_text, self.history[-1].iterations,
                         self.history[-1].learning_rate_change_iters, self.history[-1].train_seconds,
                         self.history[-1].final_test_seconds)
            if self._resume_dir is not None and stage + 1 < self.conf.task.num_stages:
                self._write_resume_state(output)
            self._end_stage(output)

    def _end_stage(self, output: np.ndarray) -> None:
        self.hr_fathers_sources.append(output)
        self.outputs.append(output)
        self._step_offset += self.history[-1].iterations
        if self._summaries is not None:
            self._summaries.image("images/sr", output, step=self._step_offset - 1)
            self._summaries.flush()  # a stage's curves and image show up in TensorBoard when it ends

    # Resumable checkpoints (`set_resume_dir`).
    def _stage_output_path(self, stage: int) -> str:
        return os.path.join(self._resume_dir, f"stage_{stage}.npy")

    @property
    def _resume_key(self) -> dict[str, Any]:
        """What a checkpoint must have been written for: this configuration (but how often it checkpoints, the bar
        and the name) and these pixels, ground truth, kernels and the method's `resume_key_arrays`."""
        digest = hashlib.sha256(self.input.tobytes())
        for array in [self.gt, *self.kernels, *self.resume_key_arrays()]:
            digest.update(b"-" if array is None else np.asarray(array).tobytes() if not isinstance(array, str)
                          else array.encode())
        conf = self.conf.replace(checkpoint_every=0, progress=True, name="")
        return {"config": conf.to_json(), "pixels": digest.hexdigest()}

    def _write_resume_state(self, output: np.ndarray | None = None) -> None:
        """The training state now, at a sync of the loop with finite weights (`output`: the stage is done)."""
        self._collect_skipped_steps()
        if output is not None:
            buffer = io.BytesIO()
            np.save(buffer, output)
            write_bytes_atomically(self._stage_output_path(self.stage), buffer.getvalue())
        state = {"key": self._resume_key, "stage": self.stage, "stage_done": output is not None,
                 "test_rng": self._test_rng.bit_generator.state, "method": self.resume_state(),
                 "history": [dataclasses.asdict(h) for h in self.history]}
        write_checkpoint(self.checkpoint, os.path.join(self._resume_dir, "checkpoint"),
                         {"state.json": json.dumps(state).encode()})
        self._checkpointed_at = self.history[-1].iterations
        logging.info("%s iteration %d: checkpoint written (%s)", self._sf_text, self.iter, self._resume_dir)

    def _read_resume_state(self) -> dict[str, Any] | None:
        """The state of the resume folder's checkpoint, if it is this run's; None (with a word why) otherwise."""
        if self._resume_dir is None:
            return None
        path = os.path.join(self._resume_dir, "checkpoint", "state.json")
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            logging.warning("%s: not resuming from %s, which is unreadable (%s)", self.conf.run.name, path, e)
            return None
        if state.get("key") != self._resume_key:
            logging.warning("%s: not resuming from %s: it was written for another configuration or image",
                            self.conf.run.name, self._resume_dir)
            return None
        stages = range(state["stage"] + (1 if state["stage_done"] else 0))
        if (tf.train.latest_checkpoint(os.path.join(self._resume_dir, "checkpoint")) is None
                or not all(os.path.isfile(self._stage_output_path(s)) for s in stages)):
            logging.warning("%s: not resuming from %s: files of it are missing", self.conf.run.name, self._resume_dir)
            return None
        logging.info("%s: resuming from its checkpoint at iteration %d of stage %d (%s)", self.conf.run.name,
                     state["history"][-1]["iterations"], state["stage"] + 1, self._resume_dir)
        return state

    def _resumed_stage(self, state: Mapping[str, Any], stage: int) -> np.ndarray:
        """A stage that was finished before the checkpoint: its history back, and its output from disk."""
        self.history.append(_stage_history(state["history"][stage]))
        return np.load(self._stage_output_path(stage))

    def _restore_resume_state(self, state: Mapping[str, Any]) -> None:
        """The checkpointed stage's networks, optimizers, history, random state and method state."""
        for name, optimizer in self.optimizers.items():  # Keras makes an optimizer's slots on first use
            optimizer.optimizer.build(self.networks[name].trainable_variables)
        prefix = tf.train.latest_checkpoint(os.path.join(self._resume_dir, "checkpoint"))
        self.checkpoint.read(prefix).assert_existing_objects_matched()
        self.history[-1] = _stage_history(state["history"][self.stage])
        self._test_rng.bit_generator.state = state["test_rng"]
        self.set_resume_state(state["method"])
        self.iter = self._checkpointed_at = self.history[-1].iterations

    def next_sync_iteration(self, first: int) -> int:
        """The first iteration >= `first` after which the Python loop must look: a log line of the scalars, one of
        the method's events or the last iteration. The steps up to it run in one `tf.function` call, so the loop's
        per-step overhead (a Python call and a dataset `next`) is paid once per chunk, with exact event timing."""
        return min([next_multiple(first, self.conf.run.display_every), self.max_iters - 1,
                    *self.schedule_iterations(first)])

    def train(self) -> None:
        """Trains the networks for the current scale factor until the method's schedule or max_iters stops it."""
        drive(self.train_coroutine())

    def train_coroutine(self) -> Coroutine:
        """`train` as a coroutine: yields a `StepRequest` whenever the loop needs steps run, is sent back (steps
        done, the last step's scalars). `drive` runs them here; `zssr_tf.group` runs several images' at once."""
        h = self.history[-1]
        # Example i is a function of i (ZSSR: made by a generator seeded by i; DGDML: the replay of seeded
        # shuffles): a resumed stage skips what it trained on already.
        self.examples = iter(self.example_dataset(self.max_iters).skip(h.iterations))
        for optimizer in self.optimizers.values():
            optimizer.skipped.assign(0)
        if int(self._keep_if_finite(tf.constant(0.0))):  # the stage's starting weights are its first good ones
            raise ValueError(f"{self._sf_text}: the weights are not finite before training (from init_weights?)")
        self._good_iteration, bad_losses = max(h.iterations - 1, 0), 0
        self._checkpointed_at = h.iterations
        checkpoint_every = self.conf.run.checkpoint_every if self._resume_dir is not None else 0
        with summaries.progress_bar(self.max_iters, self._sf_text, self.conf.run.progress) as bar, \
                self._interruptible():
            while h.iterations < self.max_iters:
                # Steps run in chunks up to the next iteration the loop must see; self.iter is that iteration.
                self.iter = self.next_sync_iteration(h.iterations)
                while h.iterations <= self.iter:
                    # Whoever runs the steps may run fewer than asked (pieces of about CHUNK_SECONDS: Python sees
                    # Ctrl-C / SIGTERM only between calls); the same steps in the same order give the same result.
                    num_steps, scalars = yield StepRequest(self, self.iter + 1 - h.iterations)
                    h.iterations += num_steps
                    bar.update(num_steps)
                    interrupts.check(self._where)
                # The scalars are read (a device sync) only here; the bar and summaries reuse what is read anyway.
                # A non-finite loss with finite weights (that step was skipped) is a divergence only at two syncs
                # in a row: one bad example must not cost a learning-rate drop.
                health = int(self._keep_if_finite(tf.cast(scalars["loss"], tf.float32)))
                bad_losses = bad_losses + 1 if health == 1 else 0
                if health == 2 or bad_losses == 2:
                    bad_losses = 0
                    what = ("the weights are not finite" if health == 2
                            else f"the loss is {float(scalars['loss'])} at two checks in a row")
                    if self._diverged(what):
                        break
                    continue
                if health == 0:
                    self._good_iteration = self.iter
                if self.iter % self.conf.run.display_every == 0:
                    self._record_scalars(scalars, bar)
                if self.after_sync():
                    break
                if checkpoint_every and health == 0 and h.iterations - self._checkpointed_at >= checkpoint_every:
                    self._write_resume_state()
        self.examples = None  # its prefetching ends with it
        self._collect_skipped_steps()
        skipped = {name: n for name, n in h.skipped_steps.items() if n}
        if skipped:
            logging.warning("%s: steps with non-finite gradients were skipped: %s", self._sf_text,
                            ", ".join(f"{n} of the {name}" for name, n in skipped.items()))

    def run_steps_alone(self, num_steps: int) -> tuple[int, dict[str, tf.Tensor]]:
        """Up to `num_steps` train steps of this image alone, in one call of about CHUNK_SECONDS at most; returns
        (steps run, the last step's scalars)."""
        num_steps = min(num_steps, self._piece_steps)
        start = time.perf_counter()
        scalars = self._train_steps(self.examples, tf.constant(num_steps))
        seconds = time.perf_counter() - start
        self._piece_steps = max(1, int(num_steps * CHUNK_SECONDS / max(seconds, 1e-6)))
        return num_steps, scalars

    def _diverged(self, what: str) -> bool:
        """Non-finite weights (or losses) at this sync: back to the last good weights and on at a lower learning
        rate (`run.divergence_retries` times, where the method can); returns True to end the stage."""
        h = self.history[-1]
        h.divergences.append(self.iter)
        self._restore_good_state()
        learning_rate = self.learning_rate
        lead = (f"{self._sf_text} iteration {self.iter}: the training diverged ({what}, learning rate "
                f"{learning_rate:.1e}); back to the weights of iteration {self._good_iteration}")
        retries = self.conf.run.divergence_retries
        if len(h.divergences) <= retries and self.lower_learning_rate(0.1):
            logging.warning("%s, going on at learning rate %.1e (retry %d of %d)", lead, self.learning_rate,
                            len(h.divergences), retries)
            return False
        logging.warning("%s, which end the stage", lead)
        return True

    @property
    def _where(self) -> str:
        return f"iteration {self.history[-1].iterations} of {self.max_iters} of {self._sf_text}"

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Signals stop training between two calls of the train step (`interrupts`); a KeyboardInterrupt that lands
        elsewhere (no handler installed, a second Ctrl-C) still says where, in one line."""
        try:
            with interrupts.safe_points():
                yield
        except interrupts.Interrupted:
            raise
        except KeyboardInterrupt:
            raise interrupts.Interrupted(f"interrupted at {self._where}") from None

    def _record_scalars(self, scalars: Mapping[str, tf.Tensor], bar: Any) -> None:
        h = self.history[-1]
        values = {name: float(value) for name, value in scalars.items()}
        learning_rate = self.learning_rate
        h.loss_steps.append(self.iter)
        h.losses.append(values["loss"])
        h.learning_rates.append(learning_rate)
        for name, value in values.items():
            h.scalars.setdefault(name, []).append(value)
        # Six significant digits, not decimals: a clipped WGAN critic's scores differ by ~1e-7.
        text = ", ".join(f"{name.replace('_', ' ')} {value:.6g}" for name, value in values.items())
        logging.info("%s iteration %d: %s, learning rate %.1e", self._sf_text, self.iter, text, learning_rate)
        bar.set_postfix_str(f"loss {values['loss']:.5f}, lr {learning_rate:.1e}", refresh=False)
        if self._summaries is not None:
            self._summaries.scalars({**{f"train/{name}": value for name, value in values.items()},
                                     "train/learning_rate": learning_rate, "stage": self.stage},
                                    step=self.global_step)

    # Tests and prediction.
    def quick_test(self) -> None:
        """Reconstruction error of the input from its own son (ZSSR's policy reads it); true error with GT."""
        h = self.history[-1]
        (top, left), (height, width) = self._quick_test_region()
        image = self.input[top:top + height, left:left + width]
        if self.gt_per_sf is not None:
            sr = self.forward_pass(image)
            y0, x0 = round(top * self.sf[0]), round(left * self.sf[1])
            h.true_mse.append(float(np.mean((self.gt_per_sf[y0:y0 + sr.shape[0], x0:x0 + sr.shape[1]] - sr) ** 2)))
        son = self.father_to_son(image, self._test_rng)
        reconstruction = self.forward_pass(son, image.shape[:2])
        self.on_quick_test(son, reconstruction)
        h.reconstruction_mse.append(float(np.mean((image - reconstruction) ** 2)))
        h.test_steps.append(self.iter)
        logging.info("%s iteration %d: reconstruction MSE %.5e%s", self._sf_text, self.iter,
                     h.reconstruction_mse[-1], f", true MSE {h.true_mse[-1]:.5e}" if h.true_mse else "")
        if self._summaries is not None:
            values = {"quick_test/reconstruction_mse": h.reconstruction_mse[-1]}
            if self.gt_per_sf is not None:
                values.update({"quick_test/true_mse": h.true_mse[-1],
                               "quick_test/true_psnr": metrics.psnr_of_mse(h.true_mse[-1])})
            self._summaries.scalars(values, step=self.global_step)

    def _quick_test_region(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(top, left), (height, width) of the part of the input the quick tests reconstruct: all of it, or its
        centre of `quick_test_megapixels` (on a grid where the stage's output pixels line up with it)."""
        h, w = self.input.shape[:2]
        limit = self.conf.run.quick_test_megapixels * 1e6
        if not limit or h * w <= limit:
            return (0, 0), (h, w)
        shrink = math.sqrt(limit / (h * w))
        size, corner = [], []
        for length, scale in zip((h, w), self.sf):
            part = max(self.min_input_size, int(length * shrink))
            period = inference.grid_period(float(scale)) or length  # top-left without a small period
            size.append(part)
            corner.append((length - part) // 2 // period * period)
        return (corner[0], corner[1]), (size[0], size[1])

    def forward_pass(self, lr_image: np.ndarray, output_shape: Sequence[int] | None = None) -> np.ndarray:
        """The generator on the LR image; float32 in [0, 1] of `output_shape` (default ceil(sf * size)).

        A generator of `scale` 1 takes the image interpolated to the output's size (ZSSR's); one of a larger
        integer scale takes the image itself (its output is cropped to `output_shape`)."""
        if output_shape is None:
            output_shape = fix_scale_and_shape(lr_image.shape, self.sf)[1]
        if self.networks["generator"].scale == 1:
            lr_image = data.interpolate(lr_image, self.sf, output_shape, self.conf.task.upscale_method)
        return self._network(lr_image)[:output_shape[0], :output_shape[1]]

    def _network(self, network_input: np.ndarray) -> np.ndarray:
        """The generator on its input, on tiles; float32 in [0, 1]."""
        # Tiles overlap by the generator's receptive-field radius: the same result as in one piece, less memory.
        generator = self.networks["generator"]
        return inference.predict_tiled(lambda x: self._predict(x[None]).numpy()[0], network_input,
                                       self.conf.run.tile_size, margin=generator.receptive_field_radius,
                                       scale=generator.scale)

    def final_test(self) -> np.ndarray:
        """The stage's output: self-ensemble (if `output_flip`) and back-projection around `forward_pass`."""
        upscale_method = self.conf.task.upscale_method
        # A tile's network input needs the generator's receptive field and the interpolation's support around it.
        margin = (self.networks["generator"].receptive_field_radius
                  + support_radius(upscale_method, float(max(self.sf))) + 1)
        return inference.final_test(
            self.forward_pass, self.input, tuple(self.sf), self.kernel, upscale_method, self.back_projection_iters,
            self.output_flip, self.conf.run.final_test_tile, margin)

    def _ground_truth_for_stage(self) -> np.ndarray | None:
        """The ground truth at this stage's scale (monitoring only), cropped to the output's size."""
        if self.gt is None:
            return None
        task = self.conf.task
        final_sf = np.array(task.final_scale_factor)
        gt = self.gt
        if np.any(np.abs(self.sf - final_sf) > 0.01):
            gt = imresize(gt, self.sf / final_sf, output_shape=self.output_shape,
                          kernel=task.downscale_gt_method).astype(np.float32)
        h, w = self.output_shape
        # Benchmarks' LR images are made from the HR cropped to a multiple of the scale: compare the top-left part.
        return gt[:h, :w]
