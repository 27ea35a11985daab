"""The image's own downscaling kernel, estimated KernelGAN's way (Bell-Kligler, Shocher, Irani, NeurIPS 2019).

A linear generator G learns to downscale the LR image by 2 so that a patch critic D cannot tell G's output patches
from the image's own patches: the kernel that makes the image's patch statistics recur across scales is the one
that made the image (the internal recurrence ZSSR also relies on). G is read out as a kernel (`read_kernel`),
post-processed and handed to ZSSR; x4 is the x2 kernel composed with itself (`compose_x4`), with no second training.

Re-implemented from the paper and from the behaviour described in the project's notes (the authors' code is under
a non-commercial licence). `KernelGAN` runs on the engine (chunked loop, named scalars, progress, TensorBoard with
the current kernel, one checkpoint of G, D and their optimizers); `estimate_kernels` is the library call,
`write_kernel_files` the `<name>_kernel_x2.mat` / `.png` outputs.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from typing import Any

import cv2
import keras
import numpy as np
import scipy.io
import scipy.ndimage
import scipy.signal
import tensorflow as tf
from absl import logging

from zssr_tf import pictures
from zssr_tf.color import luminance
from zssr_tf.config import Config
from zssr_tf.engine import StageHistory, Trainer, next_multiple
from zssr_tf.image_io import write_bytes_atomically
from zssr_tf.imresize import imresize, resize_weights
from zssr_tf.kernels import kernel_shift, wanted_center
from zssr_tf.models.kernelgan import build_linear_generator, build_patch_discriminator, kernel_size, read_kernel

SCALE = 2  # G downscales by 2; x4 is composed (`compose_x4`)
# The schedule of the constraints (KernelGAN's): G first imitates bicubic downscaling; once its bicubic loss stays
# below BICUBIC_REACHED for BICUBIC_PATIENCE iterations, that term's weight is divided by BICUBIC_DECAY every
# WEIGHT_UPDATE_EVERY iterations down to BICUBIC_FLOOR, and the centring and sparsity terms switch on the first
# time it is below CONSTRAINTS_FROM.
BICUBIC_REACHED = 0.4
BICUBIC_PATIENCE = 3
WEIGHT_UPDATE_EVERY = 200
BICUBIC_DECAY = 100.0
BICUBIC_FLOOR = 5e-6
CONSTRAINTS_FROM = 5e-3
SPARSE_POWER = 0.2
BOUNDARY_PENALTY = 30.0
SIGNIFICANT_TAPS = 40  # post-processing: values under 0.75 x the 41st largest are taken off
# Instance noise on the critic's inputs, in [-1, 1] image units: KernelGAN adds N(0, 1/255) to real crops before
# they are mapped from [0, 1] (2/255 here) and N(0, 1/255) to G's output.
REAL_NOISE_STD = 2 / 255
FAKE_NOISE_STD = 1 / 255
GRADIENT_CLIP_PERCENTILE = 97
RGB2GRAY = np.array([0.299, 0.587, 0.114])  # KernelGAN's luma for its maps
GRADIENT_WINDOW = 5  # KernelGAN's gradient maps: the border zeroed and the box average


def bicubic_downscale_kernel() -> np.ndarray:
    """MATLAB's bicubic x0.5 (antialiased) as an 8x8 correlation kernel, centred between its 4th and 5th taps."""
    taps = resize_weights(16, 8, 0.5)[4, 5:13]  # output pixel 4 sits at input 8.5: taps 5..12
    return np.outer(taps, taps)


def boundary_mask(size: int) -> np.ndarray:
    """Weights of the boundary penalty: 0 on the central (size // 2 + size % 2 + 2)-square, growing towards the edges
    as 1 - a Gaussian of sigma `size`, times BOUNDARY_PENALTY."""
    r = np.arange(size) - (size - 1) / 2
    gaussian = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * size**2))
    mask = 1 - gaussian / gaussian.max()
    margin = (size - (size // 2 + size % 2)) // 2 - 1
    mask[margin:size - margin, margin:size - margin] = 0
    return BOUNDARY_PENALTY * mask


def significant_kernel(kernel: np.ndarray, n: int = SIGNIFICANT_TAPS) -> np.ndarray:
    """KernelGAN's clean-up of the read-out kernel: subtract 0.75 x the (n + 1)-th largest value, clip at 0 (the
    negligible taps vanish, the rest keep their shape) and renormalise to sum 1."""
    values = np.sort(kernel.ravel())[::-1]
    floor = 0.75 * values[min(n, values.size - 1)]
    kept = np.clip(kernel - floor, 0, None)
    if not kept.sum() > 0:
        raise ValueError("kernel estimation: the estimated kernel has no positive taps")
    return kept / kept.sum()


def compose_x4(kernel_x2: np.ndarray) -> np.ndarray:
    """The x4 kernel of downscaling twice by 2 with `kernel_x2` (correlate, subsample, again).

    Two steps take LR pixel j from HR pixels 4j + 2b + a with weight k[b] k[a]: the x4 kernel is k convolved with
    k dilated by 2, of side 3k - 2; its outer k // 2 rows and columns (nearly zero) are cut, and it is renormalised.
    A 17x17 x2 kernel gives 33x33.
    """
    k = np.asarray(kernel_x2, np.float64)
    size = k.shape[0]
    dilated = np.zeros((2 * size - 1, 2 * size - 1))
    dilated[::2, ::2] = k
    composed = scipy.signal.convolve2d(dilated, k, mode="full")
    crop = size // 2
    composed = composed[crop:composed.shape[0] - crop, crop:composed.shape[1] - crop]
    return composed / composed.sum()


def _box_mean(values: np.ndarray, size: int) -> np.ndarray:
    """`scipy.signal.convolve2d(values, ones((size, size)), "same") / size**2` (zeros outside; for an even size the
    window reaches one pixel further up and left), by cumulative sums: 40x faster than the convolution for a 32x32
    box (0.07 s against 2.8 s on a megapixel, 2-core AVX2 EPYC)."""
    before, after = size // 2, (size - 1) // 2
    padded = np.pad(np.asarray(values, np.float64), ((before + 1, after), (before + 1, after)))
    sums = padded.cumsum(0).cumsum(1)
    window = sums[size:, size:] - sums[:-size, size:] - sums[size:, :-size] + sums[:-size, :-size]
    return np.maximum(window, 0) / size**2  # round-off leaves -1e-17s where the sum is 0


def _zero_border(values: np.ndarray, edge: int) -> np.ndarray:
    out = np.zeros_like(values)
    out[edge:values.shape[0] - edge, edge:values.shape[1] - edge] = values[edge:values.shape[0] - edge,
                                                                           edge:values.shape[1] - edge]
    return out


def top_gradients(values: np.ndarray, percent: float = GRADIENT_CLIP_PERCENTILE / 100) -> np.ndarray:
    """KernelGAN's `clip_extreme`: values up to the one at rank `percent` of all of them (zeros included) become 0,
    those above it one small constant (the gap to the next larger value, or 1e-5): an indicator of the top 3%, not a
    cap, so a long weak edge weighs nothing beside a short strong one."""
    ordered = np.sort(values.ravel())
    pivot = min(int(percent * ordered.size), ordered.size - 2)
    low = ordered[pivot]
    high = ordered[pivot + 1] if ordered[pivot + 1] > low else low + 1e-5
    return np.clip(values, low, high) - low


def gradient_map(image: np.ndarray, window: int = GRADIENT_WINDOW) -> np.ndarray:
    """KernelGAN's `create_gradient_map` of an H x W x C image in [0, 1]: on rgb2gray's luma, the top-3% indicators
    of |d/dy| and |d/dx| (`top_gradients`) and the gradient magnitude itself, each with a `window`-wide border
    zeroed and normalised to sum 1, summed, box-averaged over `window` and scaled to mean 1. (KernelGAN also computes
    the magnitude's indicator but sums the plain magnitude; so does this.)"""
    image = np.asarray(image, np.float64)
    luma = image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3] @ RGB2GRAY  # float64: ranks decide ties
    gy, gx = np.gradient(luma)
    magnitude = _zero_border(np.hypot(gx, gy), window)
    terms = [top_gradients(_zero_border(np.abs(gy), window)), top_gradients(_zero_border(np.abs(gx), window)),
             magnitude]
    combined = np.zeros(magnitude.shape)
    for term in terms:
        if term.sum() > 0:  # KernelGAN divides by 0 on a flat image: a 0 map here
            combined += term / term.sum()
    loss_map = _box_mean(combined, window)
    return loss_map / loss_map.mean() if loss_map.any() else loss_map


def crop_probability_map(loss_map: np.ndarray, crop_size: int) -> np.ndarray:
    """KernelGAN's `create_probability_map`: the map box-averaged over crop_size // 2, a crop_size // 2 border zeroed,
    normalised to sum 1 (uniform where it is all 0): the crops' centres' weights."""
    weights = _zero_border(_box_mean(loss_map, crop_size // 2), crop_size // 2)
    total = weights.sum()
    return weights / total if total > 0 else np.full(weights.shape, 1 / weights.size)


def capped_probability_map(image: np.ndarray, crop_size: int) -> np.ndarray:
    """The crop map of earlier releases (`--kernelgan_crop_map=capped`): the luma's gradient magnitude capped at the
    97th percentile of its non-zero values (every pixel keeps its gradient, so the map is much broader than
    KernelGAN's), averaged over crop_size / 2 and zeroed within crop_size / 2 of the borders."""
    luma = luminance(image)
    gy, gx = np.gradient(luma.astype(np.float64))
    magnitude = np.hypot(gx, gy)
    if np.any(magnitude > 0):
        magnitude = np.minimum(magnitude, np.percentile(magnitude[magnitude > 0], GRADIENT_CLIP_PERCENTILE))
    half = crop_size // 2
    # OpenCV's running sums leave -1e-17s on flat areas: probabilities must not be negative.
    weights = np.maximum(cv2.blur(magnitude, (max(half, 1), max(half, 1)), borderType=cv2.BORDER_REFLECT), 0)
    border = np.zeros_like(weights)
    border[half:weights.shape[0] - (crop_size - half) + 1, half:weights.shape[1] - (crop_size - half) + 1] = 1
    weights = weights * border
    if not weights.sum() > 0:  # a flat image: any crop
        weights = border
    return weights / weights.sum()


def crop_maps(image: np.ndarray, g_crop: int, d_crop: int, rule: str = "kernelgan") -> tuple[np.ndarray, np.ndarray]:
    """The weights of G's and D's crop centres on the image's pixel grid.

    `kernelgan`: D's map is the image's gradient map; G's is the gradient map of the image's bicubic x0.5
    (MATLAB's, on its even-sided part), nearest-upsampled by 2: G's crops go where the x0.5 image (what G's output
    must look like) has structure. `capped`: `capped_probability_map` of the image for both.
    """
    if rule == "capped":
        return capped_probability_map(image, g_crop), capped_probability_map(image, d_crop)
    rows, cols = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    small = gradient_map(imresize(image[:rows, :cols].astype(np.float64), 0.5, kernel="cubic"))
    g_map = np.zeros(image.shape[:2])
    g_map[:rows, :cols] = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    return crop_probability_map(g_map, g_crop), crop_probability_map(gradient_map(image), d_crop)


def sample_corners(weights: np.ndarray, crop_size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` top-left corners (int32 [count, 2]) of crops whose centres are drawn from `weights`: the centre less
    half the crop, moved inside the image, then down to even pixels (KernelGAN's order: G's outputs then share the
    image's x2 grid, and a corner is never odd)."""
    centres = rng.choice(weights.size, size=count, p=weights.ravel())
    corners = np.stack(np.divmod(centres, weights.shape[1]), axis=1) - crop_size // 2
    corners = np.clip(corners, 0, np.array(weights.shape) - crop_size)
    return (corners - corners % 2).astype(np.int32)


class ConstraintSchedule:
    """The weights of G's kernel constraints over training (KernelGAN's schedule, see the constants above).

    Call `update(iteration, bicubic_loss)` after every iteration until `reached` (the bicubic similarity), then at
    least at the multiples of WEIGHT_UPDATE_EVERY; it returns whether a weight changed.
    """

    def __init__(self, bicubic: float, centralized: float, sparse: float):
        self.weights = {"bicubic": bicubic, "centralized": 0.0, "sparse": 0.0}
        self._later = {"centralized": centralized, "sparse": sparse}
        self._below = 0
        self.reached: int | None = None  # the iteration the bicubic similarity was reached
        self.constraints_from: int | None = None

    def update(self, iteration: int, bicubic_loss: float) -> bool:
        if iteration == 0:
            return False
        if self.reached is None:
            self._below = self._below + 1 if bicubic_loss < BICUBIC_REACHED else 0
            if self._below >= BICUBIC_PATIENCE:
                self.reached = iteration
            return False
        if iteration % WEIGHT_UPDATE_EVERY or self.weights["bicubic"] <= BICUBIC_FLOOR:
            return False
        self.weights["bicubic"] = max(self.weights["bicubic"] / BICUBIC_DECAY, BICUBIC_FLOOR)
        if self.constraints_from is None and self.weights["bicubic"] < CONSTRAINTS_FROM:
            self.weights.update(self._later)
            self.constraints_from = iteration
        return True


class KernelGAN(Trainer):
    """KernelGAN on one LR image, on the engine: `run()` returns the x2 kernel as G computes it (13x13,
    not post-processed); `estimate_kernels` does the rest.

    Args:
      input_img: the LR image (path or array, see `Trainer`); at least `kernelgan_crop_size` on each side.
      conf: a `Config`; its `kernelgan` group is used (and `run`: seed, progress, display_every).
      summary_dir: optional TensorBoard directory: the losses, the constraint weights and the kernel as an image.
    """

    method_name = "kernelgan"

    def __init__(self, input_img: Any, conf: Config | None = None, summary_dir: str | os.PathLike | None = None):
        conf = conf or Config()
        self.min_input_size = conf.kernelgan.crop_size
        c = conf.kernelgan
        # The estimator makes no SR image: its own task is x2 with the bicubic start, whatever the SR run's is.
        conf = conf.replace(scale_factors="2", back_projection_iters="0", estimate_kernels=False)
        self.schedule = ConstraintSchedule(c.bicubic_weight, c.centralized_weight, c.sparse_weight)
        self._learning_rate = c.learning_rate
        super().__init__(input_img, conf, summary_dir=summary_dir)
        if np.ptp(self.input) == 0:  # before minutes of training: on such an image the GAN learns noise
            raise ValueError(f"input: {conf.run.name or 'the image'} is flat (one value everywhere): every kernel "
                             "downscales it alike, so there is no kernel to estimate; leave out --kernels=estimate "
                             "(bicubic) or give --kernels=FILE")
        self.kernel_size = kernel_size()
        self.output_size = (c.crop_size - self.kernel_size) // SCALE + 1  # G's output: D's real crops' side
        self.constraint_weights = {name: tf.Variable(value, dtype=tf.float32, trainable=False, name=name)
                                   for name, value in self.schedule.weights.items()}
        self._bicubic_loss = tf.Variable(np.inf, dtype=tf.float32, trainable=False)
        self._bicubic_kernel = tf.constant(bicubic_downscale_kernel()[:, :, None, None], tf.float32)
        self._boundary_mask = tf.constant(boundary_mask(self.kernel_size), tf.float32)
        self._wanted_center = tf.constant(wanted_center((self.kernel_size,) * 2, SCALE), tf.float32)
        self._noise = tf.random.Generator.from_seed(conf.run.seed)
        self.seconds = 0.0

    def build_networks(self, stage: int, restart: int = 0) -> None:
        c, seed = self.conf.kernelgan, self.conf.run.seed
        generator = build_linear_generator(c.width, seed=seed)
        discriminator = build_patch_discriminator(self.channels, c.width, c.discriminator_depth, seed=seed + 100)
        self.set_networks({"generator": generator, "discriminator": discriminator},
                          {name: keras.optimizers.Adam(c.learning_rate, beta_1=0.5)
                           for name in ("generator", "discriminator")})

    @property
    def max_iters(self) -> int:
        return self.conf.kernelgan.max_iters

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @property
    def back_projection_iters(self) -> int:
        return 0

    @property
    def output_flip(self) -> bool:
        return False

    def example_dataset(self, num_examples: int) -> tf.data.Dataset:
        """G's crop (its channels as a batch of gray images) and D's real crop per iteration, cut on the device
        from the image in [-1, 1]; the corners are drawn up front from the gradient maps (seeded)."""
        c = self.conf.kernelgan
        rng = np.random.default_rng([self.conf.run.seed, 2])
        g_map, d_map = crop_maps(self.input, c.crop_size, self.output_size, c.crop_map)
        g_corners = sample_corners(g_map, c.crop_size, num_examples, rng)
        d_corners = sample_corners(d_map, self.output_size, num_examples, rng)
        image = tf.constant(self.input * 2 - 1)
        g_size, d_size = c.crop_size, self.output_size

        def crops(g_corner: tf.Tensor, d_corner: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            g_crop = tf.slice(image, [g_corner[0], g_corner[1], 0], [g_size, g_size, -1])
            d_crop = tf.slice(image, [d_corner[0], d_corner[1], 0], [d_size, d_size, -1])
            return tf.transpose(g_crop, [2, 0, 1])[:, :, :, None], d_crop[None]

        return tf.data.Dataset.from_tensor_slices((g_corners, d_corners)).map(crops).repeat().prefetch(2)

    def _constraints(self, g_input: tf.Tensor, g_output: tf.Tensor, kernel: tf.Tensor) -> dict[str, tf.Tensor]:
        # G's output pixel i stands for input pixels 2i..2i+12 (centre 2i + 6.5); bicubic x0.5 of the window
        # starting at 2i + 3 has the same centre.
        bicubic = tf.nn.conv2d(g_input[:, 3:, 3:], self._bicubic_kernel, strides=SCALE, padding="VALID")
        n = self.output_size
        size = float(self.kernel_size)
        grid = tf.range(size)
        mass = tf.reduce_sum(kernel)
        center = tf.stack([tf.reduce_sum(tf.reduce_sum(kernel, axis=1) * grid),
                           tf.reduce_sum(tf.reduce_sum(kernel, axis=0) * grid)]) / mass
        return {
            "bicubic": tf.reduce_mean(tf.square(g_output - bicubic[:, :n, :n])),
            "sum_to_one": tf.abs(1.0 - mass),
            "boundaries": tf.reduce_mean(tf.abs(kernel * self._boundary_mask)),
            "centralized": tf.reduce_mean(tf.square(center - self._wanted_center)),
            "sparse": tf.reduce_mean(tf.pow(tf.abs(kernel) + 1e-12, SPARSE_POWER)),
        }

    def updated_output(self, g_input: tf.Tensor) -> tf.Tensor:
        """G's output on its crop (channels back together, [1, h, w, C]) from G's current weights: as KernelGAN's
        `train_d`, D judges the G it has just updated. G is linear without biases, so this is one stride-2
        correlation with its kernel: a second pass through G's 64-channel layers made each iteration 1.75x slower
        on a 2-core AVX2 EPYC (0.148 -> 0.260 s)."""
        kernel = read_kernel(self.networks["generator"])[:, :, None, None]
        output = tf.nn.conv2d(g_input, kernel, strides=SCALE, padding="VALID")
        return tf.transpose(output[:, :, :, 0], [1, 2, 0])[None]

    def train_step(self, g_input: tf.Tensor, d_real: tf.Tensor) -> dict[str, tf.Tensor]:
        c = self.conf.kernelgan
        generator, discriminator = self.networks["generator"], self.networks["discriminator"]
        g_opt, d_opt = self.optimizers["generator"], self.optimizers["discriminator"]
        weights = {"bicubic": self.constraint_weights["bicubic"], "sum_to_one": c.sum_to_one_weight,
                   "boundaries": c.boundaries_weight, "centralized": self.constraint_weights["centralized"],
                   "sparse": self.constraint_weights["sparse"]}
        with tf.GradientTape() as tape:
            g_output = generator(g_input, training=True)
            fake = tf.transpose(g_output[:, :, :, 0], [1, 2, 0])[None]  # channels back together
            gan_loss = tf.reduce_mean(tf.abs(discriminator(fake, training=True) - 1.0))
            constraints = self._constraints(g_input, g_output, read_kernel(generator))
            g_loss = gan_loss + tf.add_n([weights[name] * value for name, value in constraints.items()])
            scaled = g_opt.scale_loss(g_loss)
        g_opt.minimize(tape, scaled, generator.trainable_variables)
        fake = self.updated_output(g_input)
        with tf.GradientTape() as tape:
            real_map = discriminator(d_real + self._noise.normal(tf.shape(d_real), stddev=REAL_NOISE_STD),
                                     training=True)
            fake_map = discriminator(fake + self._noise.normal(tf.shape(fake), stddev=FAKE_NOISE_STD), training=True)
            d_loss = 0.5 * (tf.reduce_mean(tf.abs(real_map - 1.0)) + tf.reduce_mean(tf.abs(fake_map)))
            scaled = d_opt.scale_loss(d_loss)
        d_opt.minimize(tape, scaled, discriminator.trainable_variables)
        self._bicubic_loss.assign(constraints["bicubic"])
        return {"loss": g_loss, "gan_loss": gan_loss, "discriminator_loss": d_loss,
                **{f"{name}_loss": value for name, value in constraints.items()}}

    def schedule_iterations(self, first: int) -> list[int]:
        if self.schedule.reached is None:
            return [first]  # the similarity to bicubic is watched every iteration (it takes a few)
        return [next_multiple(first, WEIGHT_UPDATE_EVERY), next_multiple(first, self.conf.kernelgan.
                                                                          learning_rate_decay_every)]

    def after_sync(self) -> bool:
        i = self.iter
        if self.schedule.update(i, float(self._bicubic_loss.numpy())):
            for name, variable in self.constraint_weights.items():
                variable.assign(self.schedule.weights[name])
            logging.info("%s iteration %d: constraint weights %s", self._sf_text, i,
                         ", ".join(f"{name} {value:.1e}" for name, value in self.schedule.weights.items()))
        if i and i % self.conf.kernelgan.learning_rate_decay_every == 0:
            self._learning_rate /= 10
            for optimizer in self.optimizers.values():
                optimizer.optimizer.learning_rate.assign(self._learning_rate)
            self.history[-1].learning_rate_change_iters.append(i)
        if self._summaries is not None and i % self.conf.run.display_every == 0:
            kernel = self.current_kernel()
            self._summaries.image("kernel", np.kron(np.clip(kernel / kernel.max(), 0, 1), np.ones((8, 8))),
                                  step=i)
            self._summaries.scalars({f"constraint_weights/{n}": v for n, v in self.schedule.weights.items()}, i)
        return False

    def current_kernel(self) -> np.ndarray:
        """G's kernel now (13x13 float64), as read out of its weights."""
        return read_kernel(self.networks["generator"]).numpy().astype(np.float64)

    def run(self) -> np.ndarray:
        """Trains G and D; returns G's final kernel (`current_kernel`)."""
        start = time.perf_counter()
        with self._writing_summaries():
            self.history.append(StageHistory(scale_factor=(float(SCALE), float(SCALE))))
            self.train()
        self.seconds = time.perf_counter() - start
        self.history[-1].train_seconds = self.seconds
        return self.current_kernel()


@dataclasses.dataclass
class KernelEstimate:
    """What `estimate_kernels` found: the x2 kernel (post-processed and centred, as KernelGAN saves it), the
    composed x4 kernel, G's raw kernel, and the estimator's history and time."""

    kernel_x2: np.ndarray
    kernel_x4: np.ndarray
    raw_kernel: np.ndarray
    seconds: float
    history: StageHistory

    def for_scale(self, scale_factor: Any) -> np.ndarray:
        return self.kernel_x4 if float(np.max(scale_factor)) == 4 else self.kernel_x2

    def for_stages(self, scale_factors: Any) -> list[np.ndarray]:
        """One kernel per stage (each scale factor 2 or 4, as `estimate_kernels` checks)."""
        return [self.for_scale(sf) for sf in scale_factors]


def estimate_kernels(image: Any, conf: Config | None = None, summary_dir: str | os.PathLike | None = None,
                     export_model: str | os.PathLike | None = None) -> KernelEstimate:
    """Estimates the image's x2 downscaling kernel with KernelGAN and derives its x4 kernel.

    Args:
      image: the LR image (a path or an H x W (x C) array, see `engine.as_image`); alpha must be split off.
      conf: the run's `Config` (`kernelgan` group; run's seed, progress and display_every). KernelGAN computes in
        float32 whatever `precision` says: its networks are tiny, and the kernel's small taps need the digits.
      summary_dir: optional TensorBoard directory of the estimation.
      export_model: optional checkpoint folder for G, D and their optimizers (`Trainer.export_model`).

    Returns:
      A `KernelEstimate`; `estimate.for_stages(conf.task.scale_factors)` are the kernels for the SR trainer.

    Raises:
      ValueError: an image smaller than `kernelgan_crop_size` (one line).
    """
    conf = conf or Config()
    trainer = KernelGAN(image, conf, summary_dir)
    raw = trainer.run()
    if export_model is not None:
        trainer.export_model(export_model)
    kernel_x2 = kernel_shift(significant_kernel(raw), SCALE)
    logging.info("%s: kernel estimated in %.1f s (%d iterations)", conf.run.name, trainer.seconds,
                 trainer.history[-1].iterations)
    return KernelEstimate(kernel_x2=kernel_x2, kernel_x4=compose_x4(kernel_x2), raw_kernel=raw,
                          seconds=trainer.seconds, history=trainer.history[-1])


def kernel_paths(name: str, output_dir: str, scale_factors: Any) -> dict[int, str]:
    """Scale -> `<output_dir>/<name>_kernel_x<scale>.mat` of the scales the stages use (2 always: x4 derives
    from it)."""
    scales = sorted({2, *(int(np.max(sf)) for sf in scale_factors)})
    return {s: os.path.join(output_dir, f"{name}_kernel_x{s}.mat") for s in scales}


def write_kernel_files(estimate: KernelEstimate, name: str, output_dir: str, scale_factors: Any) -> list[str]:
    """Writes `<name>_kernel_x2.mat` (variable `Kernel`, as ZSSR and KernelGAN read it), `_x4.mat` when a stage is
    x4, and a picture of each (`.png`), atomically; returns the .mat paths."""
    written = []
    for scale, path in kernel_paths(name, output_dir, scale_factors).items():
        kernel = estimate.for_scale(scale)
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, {"Kernel": kernel})
        write_bytes_atomically(path, buffer.getvalue())
        pictures.plot_kernel(kernel, path[:-4] + ".png", f"{name}: estimated x{scale} kernel")
        written.append(path)
    return written


def kernel_error(estimated: np.ndarray, true: np.ndarray) -> float:
    """Sum of squared differences of two kernels after centring both (centre of mass on the middle of a common
    odd-sized grid) and normalising them to sum 1: a measure that ignores where each kernel file puts its centre."""
    size = max(max(estimated.shape), max(true.shape)) + 4
    size += 1 - size % 2

    def centred(kernel: np.ndarray) -> np.ndarray:
        k = np.asarray(kernel, np.float64) / np.sum(kernel)
        canvas = np.zeros((size, size))
        top, left = (size - k.shape[0]) // 2, (size - k.shape[1]) // 2
        canvas[top:top + k.shape[0], left:left + k.shape[1]] = k
        shift = (size - 1) / 2 - np.array(scipy.ndimage.center_of_mass(canvas))
        return scipy.ndimage.shift(canvas, shift, order=3, mode="constant")

    return float(np.sum((centred(estimated) - centred(true)) ** 2))
