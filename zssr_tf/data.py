"""Training examples: HR fathers, their LR sons, and the tf.data pipeline that feeds them to the train step.

A father is a random augmented crop of one of the `hr_fathers_sources` (`zssr_tf.augment.random_augment`); its son
is the father downscaled by the stage's scale factor with the stage's kernel, plus optional Gaussian noise; the
network input is the son interpolated back to the father's size. Every father has the same size, so the train step
sees one static shape and traces once.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from zssr_tf.augment import random_augment
from zssr_tf.config import Config
from zssr_tf.imresize import imresize

Kernel = str | np.ndarray


def father_to_son(
    hr_father: np.ndarray,
    scale_factor: Sequence[float],
    kernel: Kernel = "cubic",
    noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Makes the LR son of an HR father.

    Args:
      hr_father: H x W x C image in [0, 1].
      scale_factor: (vertical, horizontal) factor the son is smaller by.
      kernel: kernel name or (shifted) numeric kernel of the degradation.
      noise_std: std of Gaussian noise added to the son (needs `rng` when > 0).
      rng: source of the noise.

    Returns:
      float32 ceil(H / sf) x ceil(W / sf) x C son in [0, 1].
    """
    lr_son = imresize(hr_father, scale_factor=1.0 / np.asarray(scale_factor, dtype=np.float64), kernel=kernel)
    if noise_std > 0:
        if rng is None:
            raise ValueError("father_to_son: noise_std > 0 needs an rng")
        lr_son = lr_son + rng.normal(0.0, noise_std, lr_son.shape)
    return np.clip(lr_son, 0.0, 1.0).astype(np.float32)


def interpolate(
    lr_image: np.ndarray, scale_factor: Sequence[float], output_shape: Sequence[int], method: str = "cubic"
) -> np.ndarray:
    """The network input: the LR image resized with exactly `scale_factor` onto `output_shape` pixels; float32."""
    return imresize(lr_image, scale_factor=scale_factor, output_shape=output_shape[:2], kernel=method).astype(
        np.float32)


def make_example(
    hr_fathers_sources: Sequence[np.ndarray],
    base_scales: Sequence[Sequence[float]],
    scale_factor: Sequence[float],
    kernel: Kernel,
    conf: Config,
    crop_size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One training example: (interpolated lr_son, hr_father), each crop x crop x C float32."""
    hr_father = random_augment(
        hr_fathers_sources, base_scales[:len(hr_fathers_sources)], rng,
        leave_as_is_probability=conf.augment_leave_as_is_probability,
        no_interpolate_probability=conf.augment_no_interpolate_probability,
        min_scale=conf.augment_min_scale, max_scale=min(base_scales[len(hr_fathers_sources) - 1]),
        allow_rotation=conf.augment_allow_rotation, scale_diff_sigma=conf.augment_scale_diff_sigma,
        shear_sigma=conf.augment_shear_sigma, crop_size=crop_size)
    lr_son = father_to_son(hr_father, scale_factor, kernel, conf.noise_std, rng)
    return interpolate(lr_son, scale_factor, hr_father.shape, conf.upscale_method), hr_father


def build_example_dataset(
    hr_fathers_sources: Sequence[np.ndarray],
    base_scales: Sequence[Sequence[float]],
    scale_factor: Sequence[float],
    kernel: Kernel,
    conf: Config,
    crop_size: int,
    seed: Sequence[int],
    num_examples: int,
) -> tf.data.Dataset:
    """A prefetching dataset of `num_examples` (interpolated lr_son, hr_father) batches of one crop.

    Examples are made on the host while the device runs the previous step. Example i draws from its own generator
    seeded with (*seed, i), so the sequence is fixed by the seed whatever the prefetching does, and stopping early
    leaves nothing behind. (A Python-generator dataset was tried first: deleting its iterator after an early stop
    could block for tens of seconds.)
    """
    channels = hr_fathers_sources[0].shape[2]

    def example(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([*seed, int(index)])
        return make_example(hr_fathers_sources, base_scales, scale_factor, kernel, conf, crop_size, rng)

    def example_op(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        lr_son, hr_father = tf.numpy_function(example, [index], (tf.float32, tf.float32), stateful=False)
        shape = (1, crop_size, crop_size, channels)
        return tf.reshape(lr_son, shape), tf.reshape(hr_father, shape)

    return tf.data.Dataset.range(num_examples).map(example_op).prefetch(2)
