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
from zssr_tf.losses import l1_loss, vgg_preprocess
from zssr_tf.models import build_vgg_features, build_zssr_generator
from zssr_tf.models.generators import receptive_field_radius
from zssr_tf.models.weights import load_backbone

# A network whose residual is still below a quarter of a gray level everywhere after `min_iters` iterations has
# learned nothing. That happens when its ReLUs die early (no biases, small initial weights): the gradients vanish,
# the reconstruction error stays flat, and the policy lowers the learning rate until the stage ends as plain
# interpolation. At its next policy check such a network starts again from new random weights, at most
# MAX_RESTARTS times per stage.
STUCK_RESIDUAL = 1e-3
MAX_RESTARTS = 3
# --policy=robust: at a stage's first learning rate the line is fitted to running medians of this many quick tests.
# At that rate the quick-test error has single upward spikes (Adam at 1e-3; on Set14 foreman up to 2.4x the tests
# around it); one among the 5 points inflates the slope's standard error, and the original rule drops whatever the
# trend. A median of 3 removes a single spike and keeps the trend. Measured not to raise PSNR or cut the seed spread
# (benchmarks/results/policy_check), so the default stays original.
ROBUST_MEDIAN = 3


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


def running_median(values: Sequence[float], size: int, count: int) -> list[float]:
    """The last `count` medians of `size` consecutive values (each of a value and the size - 1 before it); none
    while there are fewer than count + size - 1 values."""
    if len(values) < count + size - 1:
        return []
    return [float(np.median(values[i - size + 1:i + 1])) for i in range(len(values) - count, len(values))]


class ZSSR(Trainer):
    """Zero-shot super-resolution of one image (arguments as `zssr_tf.engine.Trainer`)."""

    method_name = "zssr"
    resumable = True  # its policy's state: the learning rate, its drops, the stuck check's residual

    def __init__(self, *args, **kwargs):
        self._residual_max = np.inf  # largest residual at the last quick test (see STUCK_RESIDUAL)
        self._backbone: keras.Model | None = None
        self._vgg: keras.Model | None = None  # the hybrid loss's frozen VGG16 features
        self._content_son: tf.Variable | None = None  # the whole input's son, as the network takes it
        self._content_targets: list[tf.Variable] = []  # VGG16 features of the whole input
        super().__init__(*args, **kwargs)

    @property
    def pixel_shuffle(self) -> bool:
        return self.conf.zssr.upsampler == "pixel_shuffle"

    @property
    def crop_size(self) -> int:
        """The fathers' side: one fixed size (one trace of the step), shrunk for small inputs; for a pixel-shuffle
        network a multiple of the scale factor, so the son is exactly 1 / scale of it."""
        crop = min(self.conf.zssr.crop_size, *self.input.shape[:2])
        return crop // int(self.sf[0]) * int(self.sf[0]) if self.pixel_shuffle else crop

    # Network and step.
    def build_network(self, stage: int, restart: int = 0, keep_from: keras.Model | None = None) -> None:
        """New weights (random, or `init_weights`) and a new Adam (the original's `init_sess`). A restart of a
        stuck network gets random weights from its own seed; `keep_from` (a pixel-shuffle network of another
        scale) hands its hidden layers' weights to the new network."""
        c = self.conf.zssr
        seed = self.conf.run.seed * 1000 + stage * 100
        if restart:
            seed = int(np.random.default_rng([self.conf.run.seed, stage, restart]).integers(2**31))
        model = build_zssr_generator(
            channels=self.channels, depth=c.depth, width=c.width, init_variance=c.init_variance,
            learn_residual=c.learn_residual, seed=seed, dtype_policy=self.precision, upsampler=c.upsampler,
            scale=int(self.conf.task.scale_factors[stage][0]), upscale_method=self.conf.task.upscale_method)
        if c.backbone:
            model = self._behind_backbone(model)
        if keep_from is not None:
            for i in range(c.depth - 1):
                model.get_layer(f"filter_{i}").set_weights(keep_from.get_layer(f"filter_{i}").get_weights())
        # TF1's Adam epsilon (Keras's default is 1e-7). The learning rate lives in the optimizer's variable, so
        # changing it keeps Adam's moments, also across gradual stages.
        adam = keras.optimizers.Adam(learning_rate=c.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.set_networks({"generator": model}, {"generator": adam})
        if not restart and keep_from is None:
            self.load_init_weights()
        self._learning_rate = c.learning_rate
        if c.perceptual_weight > 0 and self._vgg is None:
            if self.conf.run.vgg_weights == "none":
                logging.warning("%s: no content loss (vgg_weights=none): L1 only", self.conf.run.name)
            else:
                self._vgg = build_vgg_features(self.conf.run.vgg_weights, c.perceptual_layer_names)
        if self._vgg is not None:
            self._content_son = None  # a new step is traced: it reads a new variable of this stage's shape
            self._set_content_images()

    def _behind_backbone(self, model: keras.Model) -> keras.Model:
        """The ZSSR network refining the output of the frozen pretrained backbone (the course report's figure 9);
        only the ZSSR network's weights train."""
        if self._backbone is None:
            self._backbone = load_backbone(self.conf.zssr.backbone, self.channels)
            logging.info("%s: ZSSR network behind the frozen backbone %s", self.conf.run.name,
                         self.conf.zssr.backbone)
        interpolated = keras.Input(shape=(None, None, self.channels), name="interpolated_lr")
        combined = keras.Model(interpolated, model(self._backbone(interpolated, training=False)),
                               name="zssr_on_backbone")
        combined.scale = 1
        combined.receptive_field_radius = receptive_field_radius(self._backbone) + model.receptive_field_radius
        return combined

    def build_networks(self, stage: int, restart: int = 0) -> None:
        self.build_network(stage, restart)

    @property
    def model(self) -> keras.Model:
        return self.networks["generator"]

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        return self.optimizers["generator"].optimizer

    def train_step(self, lr_son: tf.Tensor, hr_father: tf.Tensor) -> dict[str, tf.Tensor]:
        """One Adam step on the L1 loss of one (son, father) pair, plus the content loss with
        `perceptual_weight`."""
        network, optimizer = self.networks["generator"], self.optimizers["generator"]
        if self._vgg is None:
            return l1_step(network, optimizer, lr_son, hr_father)
        c = self.conf.zssr
        with tf.GradientTape() as tape:
            l1 = l1_loss(network(lr_son, training=True), hr_father)
            # Keras's step counter: the content loss on the iterations that are multiples of perceptual_every.
            content = tf.cond(tf.equal(optimizer.optimizer.iterations % c.perceptual_every, 0),
                              self._content_loss, lambda: tf.constant(0.0))
            loss = l1 + c.perceptual_weight * content
            scaled_loss = optimizer.scale_loss(loss)
        optimizer.minimize(tape, scaled_loss, network.trainable_variables)
        return {"loss": loss, "l1_loss": l1, "content_loss": content}

    def group_key(self) -> tuple | None:
        """The paper's network and L1 step can share a step with other images of the same crop size and channels
        (`zssr_tf.group`); a content loss, a backbone, pixel shuffle and float16's loss scaling cannot."""
        c = self.conf.zssr
        if (self._vgg is not None or c.backbone or self.pixel_shuffle
                or self.precision not in ("float32", "mixed_bfloat16")):
            return None
        return (self.crop_size, self.channels, c.depth, c.width, c.learn_residual, self.precision,
                self.conf.run.jit_compile)

    def group_variables(self) -> list[tf.Variable]:
        return [self.model.get_layer(f"filter_{i}").kernel for i in range(self.conf.zssr.depth)]

    def _content_loss(self) -> tf.Tensor:
        """The course report's content loss: the mean over layers of the L1 distance between VGG16 features of
        the network's output for the whole input's son and of the whole input (its figure 11)."""
        h, w = self.input.shape[:2]
        output = self.networks["generator"](self._content_son, training=True)[:, :h, :w]
        features = self._vgg_features(output)
        return tf.add_n([l1_loss(f, t) for f, t in zip(features, self._content_targets)]) / len(features)

    def _vgg_features(self, images: tf.Tensor) -> list[tf.Tensor]:
        """VGG16 features of [1, H, W, C] images as a list (Keras returns one output bare); gray is repeated to
        RGB, an alpha channel left out."""
        return tf.nest.flatten(self._vgg(vgg_preprocess(images[..., :3]), training=False))

    def _set_content_images(self) -> None:
        """The stage's whole-input son as the network takes it (interpolated, or not for pixel shuffle), and,
        once, the input's VGG16 features: variables the traced step reads, so a stage needs no new trace (a
        stage whose son has another shape, a pixel-shuffle network of another scale, has a new network and
        step)."""
        son = data.father_to_son(self.input, self.sf, self.kernel)[None]
        if not self.pixel_shuffle:
            son = data.interpolate(son[0], self.sf, self.input.shape, self.conf.task.upscale_method)[None]
        if self._content_son is None:
            self._content_son = tf.Variable(son, trainable=False)
        else:
            self._content_son.assign(son)
        if not self._content_targets:
            self._content_targets = [tf.Variable(t, trainable=False)
                                     for t in self._vgg_features(tf.constant(self.input[None]))]

    def example_dataset(self, num_examples: int) -> tf.data.Dataset:
        """The current stage's (lr_son, hr_father) examples, from the pipeline the config picks; the son is
        interpolated to the father's size unless the network upsamples (pixel shuffle)."""
        c = self.conf
        build_dataset = data.PIPELINE_BUILDERS[data.resolve_pipeline(c.run.pipeline)]
        return build_dataset(
            self.hr_fathers_sources, ((1.0, 1.0),) + c.task.scale_factors, tuple(self.sf), self.kernel, c,
            self.crop_size, seed=(c.run.seed, 0, self.stage), num_examples=num_examples,
            interpolated=not self.pixel_shuffle)

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
        elif stage > 0 and self.model.scale != int(self.sf[0]) and self.pixel_shuffle:
            self.build_network(stage, keep_from=self.model)  # a new last layer for the new scale
        elif stage > 0 and self._vgg is not None:
            self._set_content_images()  # the stage's son (a new network above made it already)
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
        if self.conf.zssr.learn_residual:  # what the network adds to its base, for the stuck check
            base = data.interpolate(lr_son, self.sf, reconstruction.shape, self.conf.task.upscale_method)
            if self._backbone is not None:  # the ZSSR network's base is the backbone's output
                base = self._backbone(base[None], training=False).numpy()[0]
            self._residual_max = float(np.max(np.abs(reconstruction - np.clip(base, 0.0, 1.0))))

    def resume_state(self) -> dict:
        return {"learning_rate": self._learning_rate, "change_iters": list(self.learning_rate_change_iter_nums),
                "residual_max": self._residual_max}

    def set_resume_state(self, state) -> None:
        self.set_learning_rate(state["learning_rate"])
        self.learning_rate_change_iter_nums = list(state["change_iters"])
        self._residual_max = float(state["residual_max"])

    def learning_rate_policy(self) -> None:
        """Divides the learning rate by 10 when the reconstruction error stops falling (see the config)."""
        c, h = self.conf.zssr, self.history[-1]
        if not c.run_test or (self.iter + 1) % c.learning_rate_policy_check_every != 0:
            return
        if self.iter - self.learning_rate_change_iter_nums[-1] <= c.min_iters:
            return
        # A restart needs min_iters iterations to show it learns: none in the stage's last ones.
        if (self._residual_max < STUCK_RESIDUAL and len(h.restarts) < MAX_RESTARTS
                and self.max_iters - 1 - self.iter >= c.min_iters):
            self.restart_network()
            return
        n = c.slope_points
        steps, errors = h.test_steps[-n:], h.reconstruction_mse[-n:]
        if c.policy == "robust" and self.learning_rate >= c.learning_rate:
            errors = running_median(h.reconstruction_mse, ROBUST_MEDIAN, n)  # none until n + 2 quick tests
        if len(errors) < 3 or not learning_rate_should_drop(steps, errors, c.learning_rate_change_ratio):
            return
        self.set_learning_rate(self.learning_rate / 10)
        self.learning_rate_change_iter_nums.append(self.iter)
        h.learning_rate_change_iters.append(self.iter)
        logging.info("%s iteration %d: learning rate dropped to %.1e", self._sf_text, self.iter,
                     self.learning_rate)

    def lower_learning_rate(self, factor: float) -> bool:
        """After a divergence: on at `factor` times the learning rate (a drop, for the policy and the plot), unless
        that is below `min_learning_rate`, where the stage would end anyway."""
        learning_rate = self.learning_rate * factor
        if learning_rate < self.conf.zssr.min_learning_rate:
            return False
        self.set_learning_rate(learning_rate)
        self.learning_rate_change_iter_nums.append(self.iter)
        self.history[-1].learning_rate_change_iters.append(self.iter)
        return True

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
