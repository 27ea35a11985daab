"""`zssr pretrain`: a network trained on bicubic LR/HR pairs of external images, before any test image.

The course report (its 8, point 2, and 8.2) asks whether ZSSR gains from knowledge of other images: either a VDSR
network trained on an external set and run frozen in front of ZSSR's (`--backbone`), or a ZSSR network trained on
the external set and fine-tuned on the test image with ZSSR's own schedule (`--init_weights`). Both are made here:
random crops of the external HR images (in 8 rotations and mirrors), their sons made with the task's downscaling
kernel (MATLAB bicubic by default) at the task's scale factors, interpolated back as ZSSR's network takes them
(or not, for a pixel-shuffle network), and Adam on ZSSR's L1 loss. Batch i is drawn from a generator seeded
(seed, i), so a run resumed from its checkpoint sees the batches an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zssr_tf import data, summaries
from zssr_tf.config import Config
from zssr_tf.engine import GuardedOptimizer, l1_step
from zssr_tf.image_io import IMAGE_EXTENSIONS, ImageError, read_image
from zssr_tf.models import build_vdsr, build_zssr_generator
from zssr_tf.models.weights import save_model


@dataclasses.dataclass(frozen=True)
class PretrainResult:
    output: str
    steps: int  # steps trained in this call (0 when the checkpoint was already complete)
    resumed_from: int  # the step the run started from (0: from scratch)
    final_loss: float | None


def read_training_images(input_dir: str, crop_size: int, channels: int = 3) -> list[np.ndarray]:
    """The HR images of a folder as float32 RGB (gray repeated to 3 channels, alpha dropped) or, with
    `channels=1`, luma (BT.601, as the metrics').

    Raises:
      ImageError: no folder, no images, an unreadable image or one smaller than the crop (one line).
    """
    if not os.path.isdir(input_dir):
        raise ImageError(f"{input_dir}: not a folder of HR training images")
    paths = sorted(p for p in glob.glob(os.path.join(input_dir, "*"))
                   if os.path.isfile(p) and os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ImageError(f"{input_dir}: no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    images = []
    for path in paths:
        pixels = read_image(path).pixels
        pixels = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]
        if channels == 1:
            pixels = np.dot(pixels, np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        if min(pixels.shape[:2]) < crop_size:
            raise ImageError(f"{path}: {pixels.shape[0]}x{pixels.shape[1]} is smaller than the crop "
                             f"(--pretrain_crop_size={crop_size})")
        images.append(np.ascontiguousarray(pixels, dtype=np.float32))
    return images


def make_batch(images: Sequence[np.ndarray], conf: Config, crop_size: int, interpolated: bool,
               index: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch `index`: HR crops (an image drawn in proportion to its area, a random place, rotation and mirror),
    each with its son at one of the task's scale factors (interpolated back unless `interpolated` is False),
    drawn from a generator seeded (seed, index) alone."""
    rng = np.random.default_rng([conf.run.seed, 2, int(index)])
    areas = np.array([image.shape[0] * image.shape[1] for image in images], np.float64)
    sons, fathers = [], []
    for _ in range(conf.pretrain.batch_size):
        image = images[int(rng.choice(len(images), p=areas / areas.sum()))]
        top = int(rng.integers(0, image.shape[0] - crop_size + 1))
        left = int(rng.integers(0, image.shape[1] - crop_size + 1))
        father = image[top:top + crop_size, left:left + crop_size]
        father = np.rot90(father, int(rng.integers(4)))
        father = np.ascontiguousarray(father[:, ::-1] if rng.integers(2) else father)
        sf = conf.task.scale_factors[int(rng.integers(conf.task.num_stages))]
        son = data.father_to_son(father, sf, conf.task.downscale_method)
        if interpolated:
            son = data.interpolate(son, sf, father.shape, conf.task.upscale_method)
        sons.append(son)
        fathers.append(father)
    return np.stack(sons), np.stack(fathers)


def build_pretrain_network(conf: Config) -> keras.Model:
    p, z = conf.pretrain, conf.zssr
    seed = conf.run.seed * 1000
    if p.arch == "vdsr":
        return build_vdsr(p.channels, p.vdsr_depth, p.vdsr_width, seed=seed)
    return build_zssr_generator(p.channels, z.depth, z.width, z.init_variance, z.learn_residual, seed=seed,
                                upsampler=z.upsampler, scale=int(conf.task.final_scale_factor[0]),
                                upscale_method=conf.task.upscale_method)


def training_record(conf: Config) -> dict:
    """What a checkpoint's training depends on: a checkpoint resumes only a run of the same."""
    z = conf.zssr
    network = ({"vdsr_depth": conf.pretrain.vdsr_depth, "vdsr_width": conf.pretrain.vdsr_width}
               if conf.pretrain.arch == "vdsr" else
               {"width": z.width, "depth": z.depth, "init_variance": z.init_variance,
                "learn_residual": z.learn_residual, "upsampler": z.upsampler})
    task = conf.task
    schedule = {k: v for k, v in conf.to_dict()["pretrain"].items() if k != "checkpoint_every"}
    return {"pretrain": schedule, "network": network, "seed": conf.run.seed,
            "scale_factors": [list(sf) for sf in task.scale_factors], "downscale_method": task.downscale_method,
            "upscale_method": task.upscale_method}


def pretrain(conf: Config, input_dir: str, output: str, checkpoint_dir: str | None = None) -> PretrainResult:
    """Trains `conf.pretrain.arch` on the HR images of `input_dir` and saves it as `output` (`.keras`).

    Checkpoints (network, Adam, step) go to `checkpoint_dir` (default `<output>_checkpoint/`) every
    `checkpoint_every` steps, beside the flags they were made with; a call with the same flags goes on from the
    last one, and one whose checkpoint is complete only writes `output`.

    Raises:
      ValueError: bad flags, images or checkpoint, or a checkpoint made with other flags (one line).
    """
    p = conf.pretrain
    if not output.endswith(".keras"):
        raise ValueError(f"--output={output}: the pretrained network is saved as a .keras file")
    shuffle = p.arch == "zssr" and conf.zssr.upsampler == "pixel_shuffle"
    if shuffle and conf.task.num_stages != 1:
        raise ValueError("pretrain: a pixel-shuffle network upsamples by one scale factor; give one --scale_factors")
    scale = int(conf.task.final_scale_factor[0])
    crop_size = p.crop_size // scale * scale if shuffle else p.crop_size
    if shuffle and crop_size // scale < 4:
        raise ValueError(f"pretrain: --pretrain_crop_size={p.crop_size} leaves sons under 4 pixels at x{scale}")
    images = read_training_images(input_dir, crop_size, p.channels)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    network = build_pretrain_network(conf)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(0.8 * p.steps)], [p.learning_rate, p.learning_rate / 10])
    optimizer = GuardedOptimizer(keras.optimizers.Adam(schedule, epsilon=1e-8), network.trainable_variables,
                                 "float32")
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(network=network, optimizer=optimizer.optimizer, step=step)
    checkpoint_dir = checkpoint_dir or os.path.splitext(output)[0] + "_checkpoint"
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=1)
    record, record_path = training_record(conf), os.path.join(checkpoint_dir, "pretrain_config.json")
    if manager.latest_checkpoint:
        try:
            with open(record_path, encoding="utf-8") as f:
                same = json.load(f) == record
        except (OSError, json.JSONDecodeError):
            same = False
        if not same:
            raise ValueError(f"pretrain: the checkpoint in {checkpoint_dir} was made with other flags (see its "
                             "pretrain_config.json); give another --output or remove that folder")
        try:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise ValueError(f"pretrain: the checkpoint in {checkpoint_dir} is of another network or unreadable "
                             f"({str(e).splitlines()[0]}); remove it or give another --output") from None
        logging.info("pretrain: resuming from step %d of %d (%s)", int(step), p.steps, checkpoint_dir)
    else:
        os.makedirs(checkpoint_dir, exist_ok=True)
        with open(record_path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    start = int(step)
    shape = (p.batch_size, crop_size, crop_size, p.channels)
    son_shape = shape if not shuffle else (p.batch_size, crop_size // scale, crop_size // scale, p.channels)

    def batch(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return make_batch(images, conf, crop_size, not shuffle, int(index))

    def batch_op(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        son, father = tf.numpy_function(batch, [index], (tf.float32, tf.float32), stateful=False)
        return tf.reshape(son, son_shape), tf.reshape(father, shape)

    batches = tf.data.Dataset.range(start, p.steps).map(batch_op, num_parallel_calls=2).prefetch(2)
    train_step = tf.function(lambda son, father: l1_step(network, optimizer, son, father)["loss"])
    loss = None
    with summaries.progress_bar(p.steps, f"pretrain {p.arch}", conf.run.progress) as bar:
        bar.update(start)
        for done, (son, father) in enumerate(batches, start + 1):
            loss = train_step(son, father)  # read back only when shown: no device sync per step
            step.assign(done)
            bar.update(1)
            if done % conf.run.display_every == 0:
                bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
                logging.info("pretrain step %d of %d: L1 loss %.5f", done, p.steps, float(loss))
            if done % p.checkpoint_every == 0 or done == p.steps:
                manager.save(checkpoint_number=done)
    save_model(network, output)
    return PretrainResult(output=output, steps=p.steps - start, resumed_from=start,
                          final_loss=None if loss is None else float(loss))
