"""Many images per accelerator step: the networks of several images trained together, each as if it ran alone.

The step of one ZSSR network (8 small convolutions on one 128x128 crop) cannot fill a GPU: it is bound by kernel
launches (benchmarks/results/speed_gpu.md). `drive_together` trains up to N images' networks in one `tf.function`
step: each layer's kernels of the N networks are one variable with a leading image axis, applied as one grouped
convolution (the N images side by side on the channel axis), with Adam written out per image, so that each image
keeps its own learning rate, step count and skip of non-finite steps.

Everything else stays each image's own and unchanged: its trainer (`engine.Trainer`) runs as a coroutine
(`Trainer.run_coroutine`) that asks for steps up to its next sync (a log line, a quick test, a policy check) and
then runs its own Python code there: quick tests, learning-rate policy, restarts, divergence guard, checkpoints,
final test and output. Between syncs an image's weights and Adam state live in its slot of the stacked variables;
at its syncs they are copied to its own network and optimizer and back, so that code sees (and may change) them as
in a run alone. A call runs the steps up to the nearest sync of any image. When an image ends, its slot takes the
next image. The examples are each image's own dataset (its seed, its pipeline), one `next` of each per step.

What can share a step: ZSSR with the paper's network (interpolated input, L1 loss, no backbone) in float32 or
mixed_bfloat16, with the same crop size and channels (`ZSSR.group_key`). Other images and methods run one per step,
here, in turn.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Hashable, Iterable, Iterator, Sequence

import tensorflow as tf
from absl import logging

from zssr_tf import summaries
from zssr_tf.engine import CHUNK_SECONDS, Coroutine, StepRequest, Trainer, drive


def resolve_images_per_step(value: int | str) -> int:
    """`--images_per_step`: a number, or auto: the measured best for this machine's kind of device (README.md's
    table, from benchmarks/throughput.py): 1 on CPUs, where N = 4 measured no faster than one image per step, and
    on GPUs until it is measured there."""
    if value == "auto":
        return 1
    return int(value)


# How the stacked step applies the networks' convolutions: "grouped", "per_image", or None: by device (`conv_form`).
# Benchmarks and tests set it to compare the two.
CONV_FORM: str | None = None


def conv_form() -> str:
    """How the stacked step applies the N networks' convolutions (`CONV_FORM`): on GPUs one grouped convolution
    per layer (N times fewer kernel launches: the GPU step is bound by launches); on CPUs each image's own, the
    same ops as its run alone (so its floats are those of that run: oneDNN's grouped bfloat16 convolution rounds
    otherwise, and ZSSR's policy turns that into other drops, up to 0.12 dB per image on Set14 crops), and measured
    as fast or faster there (benchmarks/results/throughput/)."""
    if CONV_FORM:
        return CONV_FORM
    return "grouped" if tf.config.list_logical_devices("GPU") and grouped_gradient_supported() else "per_image"


@functools.cache
def grouped_gradient_supported() -> bool:
    """Whether this machine's TensorFlow computes a grouped convolution's kernel gradient. Some CPU builds do not
    (oneDNN on AVX2-only CPUs: "filter_size does not have enough elements"), so it is probed, not assumed."""

    @tf.function
    def kernel_gradient(x: tf.Tensor, kernels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(kernels)
            loss = tf.reduce_sum(grouped_conv(x, kernels))
        return tape.gradient(loss, kernels)

    try:
        kernel_gradient(tf.ones([1, 6, 6, 4]), tf.ones([2, 3, 3, 2, 3]))
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return False
    return True


def grouped_conv(x: tf.Tensor, kernels: tf.Tensor) -> tf.Tensor:
    """N images' 3x3 'same' convolutions in one op.

    Args:
      x: [1, H, W, N * C_in], image n's channels at n * C_in ... (n + 1) * C_in - 1.
      kernels: [N, 3, 3, C_in, C_out], image n's kernel at n.

    Returns:
      [1, H, W, N * C_out] in the same layout (TensorFlow infers N groups from the channel counts).
    """
    n, kh, kw, c_in, c_out = kernels.shape
    filters = tf.reshape(tf.transpose(kernels, [1, 2, 3, 0, 4]), [kh, kw, c_in, n * c_out])
    return tf.nn.conv2d(x, filters, strides=1, padding="SAME")


def to_groups(images: tf.Tensor) -> tf.Tensor:
    """[N, H, W, C] -> [1, H, W, N * C] (images side by side on the channel axis)."""
    n, h, w, c = images.shape
    return tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, n * c])


def from_groups(x: tf.Tensor, n: int) -> tf.Tensor:
    """[1, H, W, N * C] -> [N, H, W, C]."""
    _, h, w, nc = x.shape
    return tf.transpose(tf.reshape(x, [h, w, n, nc // n]), [2, 0, 1, 3])


@dataclasses.dataclass
class _Slot:
    """An image of the group: its coroutine and its pending request."""

    index: int  # the image's place among the coroutines
    coroutine: Coroutine
    request: StepRequest
    loaded: bool = False  # whether the group's stack holds its state (at its place in `_Group.slots`)


class StackedZSSR:
    """N ZSSR networks (bias-free 3x3 convolutions, ReLU on all but the last, global residual) and their Adams as
    stacked variables, and the step that trains them together.

    Args:
      n: images.
      like: a trainer of the group (`ZSSR.group_key` not None): the layer shapes, precision, Adam's constants,
        XLA.
    """

    def __init__(self, n: int, like: Trainer):
        self.n = n
        kernels = like.group_variables()
        adam = like.optimizers["generator"].optimizer
        self.beta_1, self.beta_2, self.epsilon = float(adam.beta_1), float(adam.beta_2), float(adam.epsilon)
        self.learn_residual = like.conf.zssr.learn_residual
        self.conv_form = conv_form()
        self.compute_dtype = tf.bfloat16 if like.precision == "mixed_bfloat16" else tf.float32

        def stacked(dtype: Any = tf.float32, shape: Sequence[int] = (), trainable: bool = False) -> tf.Variable:
            return tf.Variable(tf.zeros([n, *shape], dtype), trainable=trainable)

        self.kernels = [stacked(shape=k.shape, trainable=True) for k in kernels]
        self.momentums = [stacked(shape=k.shape) for k in kernels]
        self.velocities = [stacked(shape=k.shape) for k in kernels]
        self.iterations = stacked(tf.int64)  # Adam's step count per image (a restart starts it again)
        self.learning_rates = stacked()
        self.skipped = stacked(tf.int64)  # steps with non-finite gradients, not applied, since the last store
        self._slot_variables = [*self.kernels, *self.momentums, *self.velocities, self.iterations,
                                self.learning_rates, self.skipped]
        step = tf.function(self.train_step, jit_compile=True if like.conf.run.jit_compile else None)

        @tf.function
        def train_steps(examples: tuple[tf.data.Iterator, ...], num_steps: tf.Tensor) -> tf.Tensor:
            """`num_steps` (>= 1) steps on each image's next examples; returns the last step's [N] losses."""
            losses = step(*self._next_examples(examples))
            for _ in tf.range(num_steps - 1):
                losses = step(*self._next_examples(examples))
            return losses

        @tf.function
        def assign_slot(slot: tf.Tensor, values: list[tf.Tensor]) -> None:
            for variable, value in zip(self._slot_variables, values):
                variable.scatter_update(tf.IndexedSlices(value[None], slot[None]))

        @tf.function
        def read_slot(slot: tf.Tensor) -> list[tf.Tensor]:
            return [tf.gather(v, slot) for v in self._slot_variables]

        self._train_steps, self._assign_slot, self._read_slot = train_steps, assign_slot, read_slot

    @staticmethod
    def _next_examples(examples: tuple[tf.data.Iterator, ...]) -> tuple[tf.Tensor, tf.Tensor]:
        pairs = [next(it) for it in examples]
        return tf.concat([son for son, _ in pairs], 0), tf.concat([father for _, father in pairs], 0)

    def train_step(self, lr_sons: tf.Tensor, hr_fathers: tf.Tensor) -> tf.Tensor:
        """One step of each image on its (son, father): L1 loss, Adam as Keras's (`keras.optimizers.Adam`), a
        step with non-finite gradients skipped (as `engine.GuardedOptimizer`), all per image; returns the [N]
        losses before the step."""
        with tf.GradientTape() as tape:
            output = tf.cast(self._convolutions(tf.cast(lr_sons, self.compute_dtype)), tf.float32)
            if self.learn_residual:  # in float32, as the network's Add layer
                output = output + lr_sons
            # Each image's loss is the mean over its own pixels; their sum gives each image its own gradient.
            losses = tf.reduce_mean(tf.abs(output - hr_fathers), axis=[1, 2, 3])
            total = tf.reduce_sum(losses)
        gradients = tape.gradient(total, self.kernels)
        finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g), axis=[1, 2, 3, 4])
                                         for g in gradients]), axis=0)
        step = tf.cast(self.iterations + 1, tf.float32)
        alpha = self.learning_rates * tf.sqrt(1 - self.beta_2 ** step) / (1 - self.beta_1 ** step)
        per_image = [-1, 1, 1, 1, 1]
        keep = tf.reshape(finite, per_image)
        alpha = tf.reshape(alpha, per_image)
        for kernel, m, v, g in zip(self.kernels, self.momentums, self.velocities, gradients):
            g = tf.cast(g, tf.float32)
            new_m = m + (g - m) * (1 - self.beta_1)
            new_v = v + (tf.square(g) - v) * (1 - self.beta_2)
            new_kernel = kernel - (new_m * alpha) / (tf.sqrt(new_v) + self.epsilon)
            m.assign(tf.where(keep, new_m, m))
            v.assign(tf.where(keep, new_v, v))
            kernel.assign(tf.where(keep, new_kernel, kernel))
        self.iterations.assign_add(tf.cast(finite, tf.int64))
        self.skipped.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
        return losses

    def _convolutions(self, x: tf.Tensor) -> tf.Tensor:
        """The networks' convolutions (ReLU between) on [N, H, W, C] inputs in the compute precision: as one
        grouped convolution per layer, or as each image's own (`conv_form`)."""
        kernels = [tf.cast(kernel, self.compute_dtype) for kernel in self.kernels]
        last = len(kernels) - 1
        if self.conv_form == "grouped":
            x = to_groups(x)
            for i, kernel in enumerate(kernels):
                x = grouped_conv(x, kernel)
                x = x if i == last else tf.nn.relu(x)
            return from_groups(x, self.n)
        outputs = []
        for image in range(self.n):
            y = x[image:image + 1]
            for i, kernel in enumerate(kernels):
                y = tf.nn.conv2d(y, kernel[image], strides=1, padding="SAME")
                y = y if i == last else tf.nn.relu(y)
            outputs.append(y)
        return tf.concat(outputs, 0)

    def load(self, slot: int, trainer: Trainer) -> None:
        """The trainer's network weights, Adam state and learning rate into `slot`."""
        adam = trainer.optimizers["generator"].optimizer
        kernels = trainer.group_variables()
        values = [*kernels, *[adam_slot(adam, "_momentums", k) for k in kernels],
                  *[adam_slot(adam, "_velocities", k) for k in kernels], adam.iterations, adam.learning_rate]
        self._assign_slot(tf.constant(slot), [tf.convert_to_tensor(v) for v in values] + [tf.constant(0, tf.int64)])

    def store(self, slot: int, trainer: Trainer) -> None:
        """`slot`'s weights and Adam state into the trainer's network and optimizer (and its skipped steps into
        its count), for its code at a sync."""
        guarded = trainer.optimizers["generator"]
        kernels = trainer.group_variables()
        values = self._read_slot(tf.constant(slot))
        d = len(kernels)
        for i, k in enumerate(kernels):
            k.assign(values[i])
            adam_slot(guarded.optimizer, "_momentums", k).assign(values[d + i])
            adam_slot(guarded.optimizer, "_velocities", k).assign(values[2 * d + i])
        guarded.optimizer.iterations.assign(values[3 * d])
        guarded.skipped.assign_add(values[3 * d + 2])
        self.skipped.scatter_update(tf.IndexedSlices(tf.zeros([1], tf.int64), [slot]))

    def run_steps(self, examples: Sequence[tf.data.Iterator], num_steps: int) -> tf.Tensor:
        return self._train_steps(tuple(examples), tf.constant(num_steps))


def adam_slot(adam: Any, kind: str, variable: tf.Variable) -> tf.Variable:
    """Keras Adam's first (`_momentums`) or second (`_velocities`) moment of a variable (Keras 3 keeps them in
    these lists, in the order of `_get_variable_index`)."""
    return getattr(adam, kind)[adam._get_variable_index(variable)]


class _Group:
    """The images training together now: up to `capacity` of one `group_key`, in the slots of one `StackedZSSR`."""

    def __init__(self, key: Hashable, capacity: int, stacks: dict[tuple[Hashable, int], StackedZSSR]):
        self.key, self.capacity = key, capacity
        self.slots: list[_Slot | None] = []  # None: an image ended there and none has taken its place yet
        self.stacked: StackedZSSR | None = None
        self._stacks = stacks  # by key and size: each is made (and its step traced) once per drive_together
        self._piece_steps = 1

    @property
    def size(self) -> int:
        return sum(slot is not None for slot in self.slots)

    def add(self, slot: _Slot) -> None:
        """A new image: into the place of one that ended (its state loaded now), or after the others."""
        if None in self.slots:
            place = self.slots.index(None)
            self.slots[place] = slot
            self.stacked.load(place, slot.request.trainer)
            slot.loaded = True
        else:
            self.slots.append(slot)

    def _restack(self) -> None:
        """A stack of the images' number (for a new size, a new trace of the step), their states moved into it."""
        for place, slot in enumerate(self.slots):
            if slot is not None and slot.loaded:
                self.stacked.store(place, slot.request.trainer)
        self.slots = [slot for slot in self.slots if slot is not None]
        n = len(self.slots)
        if (self.key, n) not in self._stacks:
            self._stacks[self.key, n] = StackedZSSR(n, self.slots[0].request.trainer)
        self.stacked = self._stacks[self.key, n]
        for place, slot in enumerate(self.slots):
            self.stacked.load(place, slot.request.trainer)
            slot.loaded = True

    def step(self) -> Iterator[tuple[int, Any]]:
        """One call of the stacked step: up to the nearest sync of any image, at most about CHUNK_SECONDS. Each
        image at its sync runs its own code, on its own network and optimizer. Yields (index, result) of the
        images that end (their places stay empty until `add` or the next step's restack)."""
        num_steps = min([self._piece_steps] + [slot.request.num_steps for slot in self.slots if slot is not None])
        start = time.perf_counter()
        try:
            if self.stacked is None or None in self.slots or len(self.slots) != self.stacked.n:
                self._restack()
            losses = self.stacked.run_steps([slot.request.trainer.examples for slot in self.slots], num_steps)
        except tf.errors.ResourceExhaustedError as e:  # the group's fault: each image's error (a folder's rows)
            logging.error("%d images per step are too many for this device's memory", self.size)
            slots, self.slots = [slot for slot in self.slots if slot is not None], []
            for slot in slots:
                yield slot.index, _thrown(slot.coroutine, e)
            return
        seconds = time.perf_counter() - start
        self._piece_steps = max(1, int(num_steps * CHUNK_SECONDS / max(seconds, 1e-6)))
        losses = tf.unstack(losses)  # one op, not one slice per image
        for place, slot in enumerate(self.slots):
            synced = num_steps == slot.request.num_steps
            if synced:
                self.stacked.store(place, slot.request.trainer)
            try:
                slot.request = slot.coroutine.send((num_steps, {"loss": losses[place]}))
            except StopIteration as stop:
                self.slots[place] = None
                yield slot.index, stop.value
                continue
            if synced:  # its code may have changed its weights, Adam or learning rate (a drop, a restart, a stage)
                self.stacked.load(place, slot.request.trainer)


def drive_together(coroutines: Iterable[Coroutine], images_per_step: int) -> Iterator[tuple[int, Any]]:
    """Runs run coroutines (`Trainer.run_coroutine`, `app.run_coroutine`), `images_per_step` of them in one step
    where they can share one (the same `group_key`); yields (place among `coroutines`, its result) as each ends.

    Coroutines start in their order as slots free up. One that cannot share the running group's step waits for a
    group of its own (at most `images_per_step` wait; then the group runs on with free slots until it ends); one
    that can share no step (`group_key` None) runs alone, at once. Per-image progress bars are off (their lines
    would interleave); the log lines say what each image does.
    """
    pending = iter(enumerate(coroutines))
    waiting: list[_Slot] = []
    ended: list[tuple[int, Any]] = []
    group: _Group | None = None
    stacks: dict[tuple[Hashable, int], StackedZSSR] = {}

    def next_slot(key: Hashable | None) -> _Slot | None:
        """The next image for a group of `key` (None: any), or None; images that end before any step (done
        earlier, bad input, not groupable) go to `ended`."""
        for slot in waiting:
            if key is None or slot.request.trainer.group_key() == key:
                waiting.remove(slot)
                return slot
        while len(waiting) < images_per_step:
            index, coroutine = next(pending, (None, None))
            if coroutine is None:
                return None
            try:
                slot = _Slot(index, coroutine, next(coroutine))
            except StopIteration as stop:
                ended.append((index, stop.value))
                continue
            slot_key = slot.request.trainer.group_key()
            if slot_key is None:
                ended.append((index, drive(slot.coroutine, slot.request)))
            elif key is None or slot_key == key:
                return slot
            else:
                waiting.append(slot)
        return None

    try:
        with summaries.progress_bars_off():
            while True:
                key = None if group is None else group.key
                while group is None or group.size < group.capacity:
                    slot = next_slot(key)
                    if slot is None:
                        break
                    if group is None:
                        group = _Group(slot.request.trainer.group_key(), images_per_step, stacks)
                        key = group.key
                        logging.info("up to %d images per step (crop %d, %d channels)", images_per_step, key[0],
                                     key[1])
                    group.add(slot)
                yield from ended
                ended.clear()
                if group is None:
                    return
                if not group.size:
                    group = None
                    continue
                yield from group.step()
    finally:  # an error or Ctrl-C that ends them all: the others' summary writers and safe points end now
        for slot in waiting + ([] if group is None else [slot for slot in group.slots if slot is not None]):
            slot.coroutine.close()


def _thrown(coroutine: Coroutine, error: Exception) -> Any:
    """The result of a coroutine that handles `error` raised at its request (app's folder jobs: an error row);
    one that does not raises it."""
    try:
        coroutine.throw(error)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("a coroutine asked for steps after an error it handled")


def run_together(trainers: Sequence[Trainer], images_per_step: int) -> list[Any]:
    """Each trainer's `run()`, `images_per_step` of them per step where they can share one (`drive_together`);
    returns their outputs in the trainers' order, the same as `[t.run() for t in trainers]` up to float rounding.

    Example:
      outputs = run_together([ZSSR(image, conf) for image in images], images_per_step=8)
    """
    results = dict(drive_together((trainer.run_coroutine() for trainer in trainers), images_per_step))
    return [results[i] for i in range(len(trainers))]
