"""Training examples: HR fathers, their LR sons, and the tf.data pipelines that feed them to the train step.

A father is a random augmented crop of one of the `hr_fathers_sources` (`zssr_tf.augment`); its son is the father
downscaled by the stage's scale factor with the stage's kernel, plus optional Gaussian noise; the network input is
the son interpolated back to the father's size. Every father has the same size, so the train step sees one static
shape and traces once.

ZSSR's two pipelines make the same examples from the same seed (example i draws its transform from a generator seeded
(*seed, i) in both):
  * host (`build_example_dataset`): numpy/OpenCV through `tf.numpy_function` (`father_to_son`, `interpolate`);
    the default: it overlaps the train step in background threads, on a CPU and with a GPU alike.
  * device (`build_device_example_dataset`): only the transform parameters are drawn with numpy; the warp, the son
    (`father_to_son_tf`), its noise and the interpolation are TF ops, placed on the GPU when there is one. Its noise
    comes from `tf.random.stateless_normal`, so it differs from the host pipeline's numpy noise.

ZSRGAN's examples (`build_zsrgan_dataset`) follow its report instead: fathers are bicubic downscalings of the input,
and each batch is one crop in 12 rotations and mirrors.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from zssr_tf.augment import draw_transform, random_augment
from zssr_tf.config import Config
from zssr_tf.imresize import fix_scale_and_shape, imresize, imresize_tf
from zssr_tf.warp import warp_image

Kernel = str | np.ndarray


def _son_scale(scale_factor: Sequence[float]) -> np.ndarray:
    # The son is the father resized by 1 / sf (a pair), in float64 so both pipelines get the same output size.
    return 1.0 / np.asarray(scale_factor, dtype=np.float64)


def father_to_son(
    hr_father: np.ndarray,
    scale_factor: Sequence[float],
    kernel: Kernel = "cubic",
    noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Makes the LR son of an HR father (numpy; `father_to_son_tf` is its TF twin).

    Args:
      hr_father: H x W x C image in [0, 1].
      scale_factor: (vertical, horizontal) factor the son is smaller by.
      kernel: kernel name or (shifted) numeric kernel of the degradation.
      noise_std: std of Gaussian noise added to the son (needs `rng` when > 0).
      rng: source of the noise.

    Returns:
      float32 ceil(H / sf) x ceil(W / sf) x C son in [0, 1].

    Raises:
      ValueError: if noise_std > 0 and there is no rng.
    """
    lr_son = imresize(hr_father, scale_factor=_son_scale(scale_factor), kernel=kernel)
    if noise_std > 0:
        if rng is None:
            raise ValueError("father_to_son: noise_std > 0 needs an rng")
        lr_son = lr_son + rng.normal(0.0, noise_std, lr_son.shape)
    return np.clip(lr_son, 0.0, 1.0).astype(np.float32)


def father_to_son_tf(
    hr_father: tf.Tensor,
    scale_factor: Sequence[float],
    kernel: Kernel = "cubic",
    noise_std: float = 0.0,
    seed: tf.Tensor | Sequence[int] | None = None,
) -> tf.Tensor:
    """Makes the LR son of an HR father with TF ops (`father_to_son` as a graph; usable in tf.data and on a GPU).

    Without noise it equals `father_to_son` to float32 rounding; the noise is `tf.random.stateless_normal`, a
    function of `seed` only.

    Args:
      hr_father: [H, W, C] float32 tensor in [0, 1] with static H and W.
      scale_factor: (vertical, horizontal) factor the son is smaller by.
      kernel: kernel name or (shifted) numeric kernel of the degradation.
      noise_std: std of Gaussian noise added to the son (needs `seed` when > 0).
      seed: [2] int32/int64 seed of the noise.

    Returns:
      [ceil(H / sf), ceil(W / sf), C] float32 son in [0, 1].

    Raises:
      ValueError: if noise_std > 0 and there is no seed, or as `imresize_tf`.
    """
    lr_son = imresize_tf(tf.cast(hr_father, tf.float32), scale_factor=_son_scale(scale_factor), kernel=kernel)
    if noise_std > 0:
        if seed is None:
            raise ValueError("father_to_son_tf: noise_std > 0 needs a seed")
        lr_son += noise_std * tf.random.stateless_normal(tf.shape(lr_son), seed, dtype=lr_son.dtype)
    return tf.clip_by_value(lr_son, 0.0, 1.0)


def interpolate(
    lr_image: np.ndarray, scale_factor: Sequence[float], output_shape: Sequence[int], method: str = "cubic"
) -> np.ndarray:
    """The network input: the LR image resized with exactly `scale_factor` onto `output_shape` pixels; float32."""
    return imresize(lr_image, scale_factor=scale_factor, output_shape=output_shape[:2], kernel=method).astype(
        np.float32)


def interpolate_tf(
    lr_image: tf.Tensor, scale_factor: Sequence[float], output_shape: Sequence[int], method: str = "cubic"
) -> tf.Tensor:
    """`interpolate` with TF ops: [h, w, C] float32 (static h, w) -> [output_shape[0], output_shape[1], C]."""
    return imresize_tf(lr_image, scale_factor=scale_factor, output_shape=tuple(output_shape[:2]), kernel=method)


def _augment_options(
    conf: Config, base_scales: Sequence[Sequence[float]], num_sources: int, crop_size: int
) -> dict[str, Any]:
    """Keyword arguments of `random_augment` / `draw_transform`, shared so both pipelines draw alike."""
    c = conf.zssr
    return dict(
        leave_as_is_probability=c.augment_leave_as_is_probability,
        no_interpolate_probability=c.augment_no_interpolate_probability,
        min_scale=c.augment_min_scale, max_scale=min(base_scales[num_sources - 1]),
        allow_rotation=c.augment_allow_rotation, scale_diff_sigma=c.augment_scale_diff_sigma,
        shear_sigma=c.augment_shear_sigma, crop_size=crop_size)


def _example_rng(seed: Sequence[int], index: int) -> np.random.Generator:
    # One generator per example: the sequence is fixed by the seed whatever the prefetching does.
    return np.random.default_rng([*seed, int(index)])


def make_example(
    hr_fathers_sources: Sequence[np.ndarray],
    base_scales: Sequence[Sequence[float]],
    scale_factor: Sequence[float],
    kernel: Kernel,
    conf: Config,
    crop_size: int,
    rng: np.random.Generator,
    interpolated: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One training example: (interpolated lr_son, hr_father), each crop x crop x C float32; with
    `interpolated=False` the son itself (`son_shape`)."""
    n = len(hr_fathers_sources)
    hr_father = random_augment(
        hr_fathers_sources, base_scales[:n], rng, **_augment_options(conf, base_scales, n, crop_size))
    lr_son = father_to_son(hr_father, scale_factor, kernel, conf.zssr.noise_std, rng)
    if not interpolated:
        return lr_son, hr_father
    return interpolate(lr_son, scale_factor, hr_father.shape, conf.task.upscale_method), hr_father


def son_shape(crop_size: int, scale_factor: Sequence[float]) -> tuple[int, int]:
    """The size of a crop x crop father's son (as `father_to_son` makes it)."""
    return tuple(int(n) for n in fix_scale_and_shape((crop_size, crop_size), _son_scale(scale_factor))[1])


def build_example_dataset(
    hr_fathers_sources: Sequence[np.ndarray],
    base_scales: Sequence[Sequence[float]],
    scale_factor: Sequence[float],
    kernel: Kernel,
    conf: Config,
    crop_size: int,
    seed: Sequence[int],
    num_examples: int,
    interpolated: bool = True,
) -> tf.data.Dataset:
    """The host pipeline: a prefetching dataset of `num_examples` (interpolated lr_son, hr_father) batches of one crop.

    Examples are made on the host (numpy/OpenCV) while the device runs the previous step. Example i draws from its
    own generator seeded with (*seed, i), so the sequence is fixed by the seed whatever the prefetching does, and
    stopping early leaves nothing behind. (A Python-generator dataset was tried first: deleting its iterator after
    an early stop could block for tens of seconds.)

    Args:
      hr_fathers_sources: the images fathers are cropped from, each float32 (H_i, W_i, C) in [0, 1].
      base_scales: (vertical, horizontal) scale of each source relative to the input; at least one per source.
      scale_factor: (vertical, horizontal) factor the son is smaller than the father by.
      kernel: kernel name or (shifted) numeric kernel of the degradation.
      conf: augmentation probabilities and sigmas, noise_std and upscale_method.
      crop_size: side of the fathers.
      seed: ints that, with the example index, seed each example's generator.
      num_examples: length of the dataset.
      interpolated: whether lr_son is interpolated back to the father's size (the paper's network input) or is
        the son itself (a pixel-shuffle network's).

    Returns:
      A dataset of (lr_son, hr_father) pairs, hr_father [1, crop_size, crop_size, C] float32, lr_son the same
      or, not interpolated, [1, *son_shape(crop_size, scale_factor), C].
    """
    channels = hr_fathers_sources[0].shape[2]
    shape = (1, crop_size, crop_size, channels)
    lr_shape = shape if interpolated else (1, *son_shape(crop_size, scale_factor), channels)

    def example(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = _example_rng(seed, index)
        return make_example(hr_fathers_sources, base_scales, scale_factor, kernel, conf, crop_size, rng,
                            interpolated)

    weak_example = _weakly(example)

    def example_op(index: tf.Tensor, _keep: Callable = example) -> tuple[tf.Tensor, tf.Tensor]:
        lr_son, hr_father = tf.numpy_function(weak_example, [index], (tf.float32, tf.float32), stateful=False)
        return tf.reshape(lr_son, lr_shape), tf.reshape(hr_father, shape)

    return tf.data.Dataset.range(num_examples).map(example_op).prefetch(2)


def _weakly(fn: Callable) -> Callable:
    """`fn` for `tf.numpy_function`, which keeps its callable in a process-wide registry after the dataset is gone:
    a folder run kept every image's pipeline closure, its fathers' sources among them (`benchmarks/folder_memory.py`).
    The registry gets this weak wrapper; the map function keeps `fn` alive (a default argument) while it is used."""
    ref = weakref.ref(fn)

    def call(*args: Any) -> Any:
        target = ref()
        if target is None:  # only if a pipeline were built inside a traced function, which lets its maker go
            raise RuntimeError("an example pipeline outlived its maker: build pipelines eagerly, not in a tf.function")
        return target(*args)

    return call


def draw_example_transform(
    hr_fathers_sources: Sequence[np.ndarray],
    base_scales: Sequence[Sequence[float]],
    conf: Config,
    crop_size: int,
    rng: np.random.Generator,
) -> tuple[np.int32, np.ndarray, np.ndarray]:
    """The host half of a device-pipeline example: the cheap random draws, no pixels.

    Draws the transform exactly as `make_example` does with the same generator (so both pipelines crop the same
    fathers), then the seed of the son's noise.

    Args:
      hr_fathers_sources: as in `build_example_dataset` (only their sizes are read).
      base_scales: as in `build_example_dataset`.
      conf: augmentation probabilities and sigmas.
      crop_size: side of the fathers.
      rng: the example's generator.

    Returns:
      (source index, int32; [3, 3] float64 source -> father pixel map; [2] int64 noise seed).
    """
    n = len(hr_fathers_sources)
    transform = draw_transform([source.shape[:2] for source in hr_fathers_sources], base_scales[:n], rng,
                                **_augment_options(conf, base_scales, n, crop_size))
    noise_seed = rng.integers(0, np.iinfo(np.int64).max, size=2, dtype=np.int64)
    return np.int32(transform.source_index), transform.matrix.astype(np.float64), noise_seed


def build_device_example_dataset(
    hr_fathers_sources: Sequence[np.ndarray],
    base_scales: Sequence[Sequence[float]],
    scale_factor: Sequence[float],
    kernel: Kernel,
    conf: Config,
    crop_size: int,
    seed: Sequence[int],
    num_examples: int,
    interpolated: bool = True,
) -> tf.data.Dataset:
    """The device pipeline: `build_example_dataset`'s examples, with the pixel work as TF ops (on the GPU if any).

    Only `draw_example_transform` runs on the host (tens of microseconds of numpy, with the same per-example
    generator as the host pipeline, so the fathers are the same up to the float rounding of cv2 vs `warp_image`).
    The warp, `father_to_son_tf`, its noise (`tf.random.stateless_normal`, seeded per example from that generator,
    so reproducible from `seed` but not the host pipeline's numpy noise) and `interpolate_tf` run as TF ops.
    tf.data places map functions on the CPU; ops pinned to a GPU inside one make tf.data run it as a multi-device
    function, so with a GPU they are pinned to the first GPU and only the [1, crop, crop, C] results come back.

    The sources keep their own sizes (gradual stages differ) as constants of the map function, one `warp_image`
    branch each, picked by `tf.switch_case` on the drawn index. Constants live on the pixel device once (no copy per
    example), and the warp sees the true size; padding them into one stacked tensor would give the same fathers
    (padding reads 0 as outside pixels do) but copy the padded source out of the stack for every example.

    Arguments and result as `build_example_dataset` (the sources may differ in size); the results come back to the
    host like the host pipeline's.
    """
    channels = hr_fathers_sources[0].shape[2]
    sources = [np.ascontiguousarray(source, dtype=np.float32) for source in hr_fathers_sources]
    shape = (1, crop_size, crop_size, channels)
    lr_shape = shape if interpolated else (1, *son_shape(crop_size, scale_factor), channels)
    pixel_device = "/GPU:0" if tf.config.list_logical_devices("GPU") else None

    def draw(index: np.ndarray) -> tuple[np.int32, np.ndarray, np.ndarray]:
        return draw_example_transform(sources, base_scales, conf, crop_size, _example_rng(seed, index))

    weak_draw = _weakly(draw)

    def draw_op(index: tf.Tensor, _keep: Callable = draw) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        source_index, matrix, noise_seed = tf.numpy_function(
            weak_draw, [index], (tf.int32, tf.float64, tf.int64), stateful=False)
        source_index.set_shape([])
        matrix.set_shape([3, 3])
        noise_seed.set_shape([2])
        return source_index, matrix, noise_seed

    def example_op(source_index: tf.Tensor, matrix: tf.Tensor, noise_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.device(pixel_device) if pixel_device else contextlib.nullcontext():
            # Constants made here belong to the function, so they are placed with it (once, not per example).
            branches = [lambda source=source: warp_image(tf.constant(source), matrix, crop_size)
                        for source in sources]
            warped = branches[0]() if len(branches) == 1 else tf.switch_case(source_index, branches)
            hr_father = tf.clip_by_value(tf.ensure_shape(warped, shape[1:]), 0.0, 1.0)
            lr_son = father_to_son_tf(hr_father, scale_factor, kernel, conf.zssr.noise_std, noise_seed)
            if interpolated:
                lr_son = interpolate_tf(lr_son, scale_factor, shape[1:3], conf.task.upscale_method)
            return tf.reshape(lr_son, lr_shape), tf.reshape(hr_father, shape)

    return tf.data.Dataset.range(num_examples).map(draw_op).map(example_op).prefetch(2)


def draw_zsrgan_father_shape(
    input_shape: Sequence[int], crop_size: int, min_father_size: int, rng: np.random.Generator,
    fathers: str = "authors", scale: int = 2,
) -> tuple[int, int]:
    """ZSRGAN's father size (the report's 3.1): the input's aspect ratio, its shorter side drawn with probability
    proportional to the father's area, so sizes near the input's are the likeliest.

    `authors` (the authors' code): shorter sides from `min_father_size` to the input's, keeping only fathers whose
    two sides are multiples of `scale` (the longer one rounded from the aspect ratio); the crop is then min(crop,
    shorter side). `fixed_crop` (earlier releases): shorter sides from max(min_father_size, crop_size), every side
    at least the crop, so every step sees one crop shape.
    """
    height, width = input_shape[:2]
    shorter = min(height, width)
    low = min_father_size if fathers == "authors" else max(min_father_size, crop_size)
    sides = np.arange(min(low, shorter), shorter + 1)
    shapes = np.stack([np.round(height * sides / shorter), np.round(width * sides / shorter)], axis=1).astype(int)
    if fathers == "authors":
        divisible = np.all(shapes % scale == 0, axis=1)
        shapes = shapes[divisible] if divisible.any() else shapes[-1:]
    else:
        shapes = np.maximum(shapes, crop_size)
    areas = np.prod(shapes.astype(np.float64), axis=1)
    return tuple(int(v) for v in shapes[rng.choice(len(shapes), p=areas / areas.sum())])


def dihedral_batch(image: np.ndarray) -> np.ndarray:
    """ZSRGAN's batch of one pair (its 4.2): the 4 rotations by 90 degrees, each as is, mirrored left-right and
    mirrored up-down (12 images, some equal, as the report makes them). [H, W, C] -> [12, H, W, C] (square H = W)."""
    return np.stack([flip(np.rot90(image, k)) for k in range(4) for flip in (lambda x: x, np.fliplr, np.flipud)])


def make_zsrgan_example(
    image: np.ndarray, scale_factor: Sequence[float], kernel: Kernel, conf: Config, crop_size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One ZSRGAN batch: a father (the input resized with bicubic, `draw_zsrgan_father_shape`), its son (resized
    down by the scale factor with the stage's kernel, bicubic by default) interpolated back, one random crop of
    both (min(crop_size, the father's shorter side)), its 12 rotations and mirrors. The generator adds its own
    noise (`models.generators.BranchNoise`).

    Arguments as `build_zsrgan_dataset`, with the batch's generator `rng`.

    Returns:
      (interpolated lr_son, hr_father), each [12, crop, crop, C] float32.
    """
    c = conf.zsrgan
    father_shape = draw_zsrgan_father_shape(image.shape, crop_size, c.min_father_size, rng, c.fathers,
                                            max(1, round(max(scale_factor))))
    crop = min(crop_size, *father_shape)
    scale = np.array(father_shape, np.float64) / np.array(image.shape[:2], np.float64)
    hr_father = np.clip(imresize(image, scale_factor=scale, output_shape=father_shape, kernel="cubic"), 0, 1)
    lr_son = father_to_son(hr_father, scale_factor, kernel)
    interpolated = interpolate(lr_son, scale_factor, father_shape, conf.task.upscale_method)
    top = int(rng.integers(0, father_shape[0] - crop + 1))
    left = int(rng.integers(0, father_shape[1] - crop + 1))
    window = np.s_[top:top + crop, left:left + crop]
    return dihedral_batch(interpolated[window]).astype(np.float32), dihedral_batch(hr_father[window]).astype(
        np.float32)


def build_zsrgan_dataset(
    image: np.ndarray, scale_factor: Sequence[float], kernel: Kernel, conf: Config, crop_size: int,
    seed: Sequence[int], num_examples: int,
) -> tf.data.Dataset:
    """ZSRGAN's host pipeline: `num_examples` batches of `make_zsrgan_example`, batch i from a generator seeded
    (*seed, i), made with numpy/OpenCV in background threads while the device trains.

    Args:
      image: the input, float32 [H, W, C] in [0, 1], both sides at least `crop_size`.
      scale_factor, kernel: the stage's (vertical, horizontal) factor and degradation kernel.
      conf: `zsrgan.min_father_size`, `zsrgan.fathers` and `task.upscale_method`.
      crop_size: side of the crops (at most the input's shorter side).
      seed: ints that, with the batch index, seed each batch's generator.
      num_examples: length of the dataset.

    Returns:
      A dataset of (lr_son, hr_father) pairs, each [12, crop, crop, C] float32: crop is crop_size, or varies
      with the father (`--zsrgan_fathers=authors`).
    """
    fixed = conf.zsrgan.fathers == "fixed_crop"
    shape = (12, crop_size if fixed else None, crop_size if fixed else None, image.shape[2])

    def example(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return make_zsrgan_example(image, scale_factor, kernel, conf, crop_size, _example_rng(seed, index))

    weak_example = _weakly(example)

    def example_op(index: tf.Tensor, _keep: Callable = example) -> tuple[tf.Tensor, tf.Tensor]:
        lr_son, hr_father = tf.numpy_function(weak_example, [index], (tf.float32, tf.float32), stateful=False)
        lr_son.set_shape(shape)
        hr_father.set_shape(shape)
        return lr_son, hr_father

    return tf.data.Dataset.range(num_examples).map(example_op, num_parallel_calls=2).prefetch(2)


def resolve_pipeline(pipeline: str) -> str:
    """`Config.pipeline` -> 'host' or 'device'. 'auto' is 'host' on every machine: on a GPU the step is bound by
    kernel launches, and the device pipeline's ops add launches to the same stream while the host pipeline runs
    on idle CPU cores (H100: 4.5-4.9 vs 5.1-6.5 ms per iteration, benchmarks/results/speed_gpu.md)."""
    return "host" if pipeline == "auto" else pipeline


PIPELINE_BUILDERS: dict[str, Callable[..., tf.data.Dataset]] = {
    "host": build_example_dataset,
    "device": build_device_example_dataset,
}
