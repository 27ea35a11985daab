"""DGDML-SR (Cheng, Fu, Yang, ECCV 2020): zero-shot SR that learns the image's own degradation.

Unpaired HR (near) and LR (far) patches of the Y channel, chosen by a depth map (`zssr_tf.patches`), train four
networks at once: the SRN G^H (LR -> HR), the DSN G^L (HR -> LR, the learned degradation) and two Wasserstein
critics D^H and D^L. Bi-cycle training (the paper's eqs. 5-8): G^H(y) and G^L(x) are judged by the critics, and the
cycles G^L(G^H(y)) ~ y and G^H(G^L(x)) ~ x by the critics and an L1 (or VGG19) loss. The critics are kept
Lipschitz by weight clipping (WGAN) or a gradient penalty (WGAN-GP). All four use RMSprop 1e-4, batch 64, 150
epochs, the learning rate / 10 every 60. The output is the SRN on the whole Y channel, CbCr interpolated bicubically.

`pairing=bicubic` trains the same SRN alone, with L1, on paired crops of the input and their bicubic sons (the
paper's comparison with ZSSR in its 4).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zssr_tf import patches
from zssr_tf.color import rgb_to_ycbcr, ycbcr_to_rgb
from zssr_tf.config import Config, ConfigError
from zssr_tf.depth import estimate_depth, load_depth
from zssr_tf.engine import Trainer, l1_step, next_multiple
from zssr_tf.imresize import imresize
from zssr_tf.losses import critic_loss, gradient_penalty, l1_loss, perceptual_loss
from zssr_tf.models import build_dsn, build_srn, build_vgg_features, build_wgan_critic
from zssr_tf.optimizers import ScaledSchedule, TorchRMSprop


def integer_scale(conf: Config) -> int:
    """DGDML's one scale factor, an integer the same both ways (the SRN's sub-pixel step and the DSN's strides).

    Raises:
      ConfigError: several stages, or a factor that is not 2, 4 (a power of two) or another integer for bicubic
        pairing (one line).
    """
    task = conf.task
    if task.num_stages != 1:
        raise ConfigError(f"dgdml: one scale factor (no gradual stages), got {task.num_stages}")
    sf_v, sf_h = task.final_scale_factor
    if sf_v != sf_h or not float(sf_v).is_integer():
        raise ConfigError(f"dgdml: the scale factor must be an integer, the same both ways, got {sf_v:g}x{sf_h:g}")
    scale = int(sf_v)
    if conf.dgdml.pairing == "depth" and scale & (scale - 1):
        raise ConfigError(f"dgdml: the DSN downsamples by powers of two (x2, x4, x8), not x{scale}")
    return scale


class DGDML(Trainer):
    """DGDML-SR on one image (arguments as `zssr_tf.engine.Trainer`, plus `depth`).

    Args:
      depth: the image's depth map: a file (8/16-bit PNG, TIFF, .npy) or an H x W array of
        `dgdml.depth_kind` values (0 unknown). Without one, `dgdml.depth_model` estimates it if set, else the
        patches are chosen without depth (the paper's ablation "BCN", or "None" without bi-cycle training).

    Raises:
      ValueError: as the engine, plus bad depth maps or depth models and images too small or flat for patches.
    """

    method_name = "dgdml"
    # Its schedule is a function of the iteration, its patches of the image and depth map, its batches a replay of
    # seeded shuffles: the networks, optimizers and the gradient penalty's generator (checkpointed) are its state.
    resumable = True

    def __init__(self, input_img: Any, conf: Config | None = None, ground_truth: Any = None,
                 kernels: Sequence[Any] | None = None, summary_dir: str | os.PathLike | None = None,
                 depth: Any = None):
        conf = conf or Config(method=self.method_name)
        self.scale = integer_scale(conf)
        c = conf.dgdml
        if c.cycle_loss == "vgg" and c.pairing == "depth" and conf.run.vgg_weights == "none":
            raise ConfigError("dgdml_cycle_loss=vgg needs VGG19 ImageNet weights: --vgg_weights=imagenet or PATH")
        self.vgg: keras.Model | None = None
        super().__init__(input_img, conf, ground_truth, kernels, summary_dir)
        if self.channels not in (1, 3):
            raise ValueError(f"input: DGDML-SR takes gray or RGB images, not {self.channels} channels (the command "
                             "line interpolates alpha apart)")
        self.collection = self._collect_patches(depth)
        counts = self.collection.counts
        self.batch_size = min(c.batch_size, self.collection.epoch_size)
        self.steps_per_epoch = self.collection.epoch_size // self.batch_size
        self.report["patches"] = {**counts, "batch_size": self.batch_size, "steps_per_epoch": self.steps_per_epoch}
        logging.info("%s: %d HR patches (%dx%d) and %d LR patches (%dx%d)%s, x8 rotations and mirrors; "
                     "%d steps per epoch of batch %d", self.conf.run.name, counts["hr_patches"], counts["hr_size"],
                     counts["hr_size"], counts["lr_patches"], counts["lr_size"], counts["lr_size"],
                     ", paired bicubic sons" if self.collection.paired else "", self.steps_per_epoch,
                     self.batch_size)
        if c.depth_learning_rate_scale and not self._scales_learning_rate:
            logging.warning("%s: --dgdml_depth_learning_rate_scale needs depth-guided patches: not applied",
                            self.conf.run.name)
        if self.batch_size < c.batch_size:
            logging.warning("%s: only %d examples per epoch: the batch is %d, not %d", self.conf.run.name,
                            self.collection.epoch_size, self.batch_size, c.batch_size)

    def _collect_patches(self, depth: Any) -> patches.PatchCollection:
        c, name = self.conf.dgdml, self.conf.run.name
        if c.pairing == "bicubic":
            if depth is not None:
                logging.warning("%s: dgdml_pairing=bicubic does not use the depth map", name)
            return patches.bicubic_patches(self.input, self.scale, c.lr_patch_size, c.min_contrast, self.kernel,
                                           c.contrast_luminance)
        depth_map, source = None, "none"
        if depth is not None:
            depth_map, source = load_depth(depth, c.depth_kind, self.input.shape), "given"
        elif c.depth_model:
            depth_map, source = estimate_depth(c.depth_model, self.input, c.depth_kind), c.depth_model
        ablation = "BCN" if c.bicycle else "None"  # the paper's Table 2 rows without depth guidance
        if depth_map is not None and not c.depth_guidance:
            logging.info("%s: --nodgdml_depth_guidance: the depth map is not used (the paper's ablation %s)", name,
                         ablation)
            depth_map = None
        elif depth_map is None:
            logging.warning("%s: no depth map: HR and LR patches are taken anywhere, without depth guidance (the "
                            "paper's ablation %s); give --depth_map or --dgdml_depth_model for DGDML-SR proper", name,
                            ablation)
        self.report["depth"] = source if depth_map is not None else "none"
        return patches.collect_patches(self.input, self.scale, c.lr_patch_size, c.min_contrast, depth_map,
                                       c.contrast_luminance)

    # Networks.
    def build_networks(self, stage: int, restart: int = 0) -> None:
        """The SRN ("generator": it super-resolves), and unless pairing is bicubic the DSN and the critics D^H and
        D^L; one RMSprop each."""
        c, seed = self.conf.dgdml, self.conf.run.seed * 1000
        networks = {"generator": build_srn(self.scale, 1, c.srn_depth, c.width, seed, self.precision)}
        if c.pairing == "depth":
            lr_size = c.lr_patch_size
            networks["dsn"] = build_dsn(self.scale, 1, c.dsn_depth, c.width, seed + 100, self.precision)
            # The critics stay float32 under any precision: clipped to 0.01, their scores are ~1e-7 apart, and
            # every DGDML number so far is float32 (bfloat16 critics are not measured).
            networks["critic_hr"] = build_wgan_critic(self.scale * lr_size, 1, c.critic_width, seed + 200,
                                                      "float32", name="critic_hr")
            networks["critic_lr"] = build_wgan_critic(lr_size, 1, c.critic_width, seed + 300, "float32",
                                                      name="critic_lr")
            if c.cycle_loss == "vgg" and self.vgg is None:
                self.vgg = build_vgg_features(self.conf.run.vgg_weights, c.vgg_layer, arch="vgg19")
        # The gradient penalty's interpolation weights: a seeded generator that the traced step advances.
        self._uniform = tf.random.Generator.from_seed(seed + 400)
        # The authors' per-batch depth scale of every learning rate (--dgdml_depth_learning_rate_scale), set by
        # the step before its updates; 1 otherwise.
        self._learning_rate_scale = tf.Variable(1.0, trainable=False, name="learning_rate_scale")
        self.set_networks(networks, {name: self._rmsprop() for name in networks})
        self.load_init_weights()

    def checkpointed_state(self) -> dict[str, tf.Module]:
        return {"gradient_penalty_generator": self._uniform}

    def resume_key_arrays(self) -> list[np.ndarray]:
        arrays = [self.collection.hr, self.collection.lr]
        if self._scales_learning_rate:
            arrays += [self.collection.hr_inverse_depth, self.collection.lr_inverse_depth]
        return arrays

    def _rmsprop(self) -> keras.optimizers.Optimizer:
        # PyTorch's RMSprop with its defaults (rho 0.99, eps 1e-8), as the authors ran it: Keras's puts eps under
        # the square root, which stalls the clipped critics (zssr_tf.optimizers).
        return TorchRMSprop(learning_rate=ScaledSchedule(self._schedule(), self._learning_rate_scale))

    def _schedule(self) -> keras.optimizers.schedules.LearningRateSchedule | float:
        c = self.conf.dgdml
        steps = getattr(self, "steps_per_epoch", None)  # known once the patches are (after the engine's build)
        if steps is None:
            return c.learning_rate
        return keras.optimizers.schedules.ExponentialDecay(
            c.learning_rate, c.learning_rate_decay_epochs * steps, 0.1, staircase=True)

    @property
    def _scales_learning_rate(self) -> bool:
        return self.conf.dgdml.depth_learning_rate_scale and self.collection.hr_inverse_depth is not None

    def start_stage(self, stage: int) -> None:
        # The optimizers' schedule needs the steps per epoch, known only after the patches were collected.
        self.set_networks(self.networks, {name: self._rmsprop() for name in self.networks})
        # Variables, so the patches live on the accelerator and the step gathers its batches there.
        self._patches = {side: tf.Variable(getattr(self.collection, side), trainable=False, name=f"{side}_patches")
                         for side in ("hr", "lr")}
        if self._scales_learning_rate:
            self._inverse_depths = {side: tf.constant(getattr(self.collection, f"{side}_inverse_depth"), tf.float32)
                                    for side in ("hr", "lr")}

    # The step.
    def train_step(self, hr_index: tf.Tensor, lr_index: tf.Tensor) -> dict[str, tf.Tensor]:
        hr = patches.gather_patches(self._patches["hr"], hr_index)
        lr = patches.gather_patches(self._patches["lr"], lr_index)
        if self.collection.paired:  # the SRN alone on (son, father) pairs
            return l1_step(self.networks["generator"], self.optimizers["generator"], lr, hr)
        if self._scales_learning_rate:
            # The authors pair the batch's i-th HR and LR patches (both drawn at random) and take
            # sigmoid(mean(Hd / Ld)) of their mean inverse depths (their NYU maps' 255 - d): near over far, > 1.
            nearness = {side: tf.gather(self._inverse_depths[side], index // patches.NUM_TRANSFORMS)
                        for side, index in (("hr", hr_index), ("lr", lr_index))}
            self._learning_rate_scale.assign(tf.sigmoid(tf.reduce_mean(nearness["hr"] / nearness["lr"])))
        if self.conf.dgdml.update == "joint":
            return self._joint_step(lr, hr)
        return self._authors_step(lr, hr)

    def _cycle_loss(self, output: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        if self.vgg is not None:
            return perceptual_loss(self.vgg, output, target)
        return l1_loss(output, target)

    def _clip_critic(self, critic: keras.Model) -> None:
        if self.conf.dgdml.wgan == "clip":
            value = self.conf.dgdml.clip_value
            for variable in critic.trainable_variables:
                variable.assign(tf.clip_by_value(variable, -value, value))

    def _critic_step(self, name: str, real: tf.Tensor, fake: tf.Tensor) -> dict[str, tf.Tensor]:
        """One step of a critic on real vs (fixed) fake patches, then its clipping; its loss, penalty and
        Wasserstein estimate E[D(fake)] - E[D(real)]."""
        c, critic, optimizer = self.conf.dgdml, self.networks[name], self.optimizers[name]
        with tf.GradientTape() as tape:
            real_scores, fake_scores = critic(real, training=True), critic(fake, training=True)
            distance = -critic_loss(real_scores, fake_scores)
            penalty = tf.constant(0.0)
            if c.wgan == "gp":
                penalty = c.gradient_penalty_weight * gradient_penalty(
                    critic, real, fake, self._uniform.uniform([tf.shape(real)[0], 1, 1, 1]))
            loss = -distance + penalty
            scaled = optimizer.scale_loss(loss)
        optimizer.minimize(tape, scaled, critic.trainable_variables)
        self._clip_critic(critic)
        return {f"{name}_loss": loss, f"{name}_penalty": penalty,
                f"wasserstein_{name.removeprefix('critic_')}": distance}

    def _authors_step(self, y: tf.Tensor, x: tf.Tensor) -> dict[str, tf.Tensor]:
        """The authors' six RMSprop steps on one batch (main-wgan.py), each a forward pass of the networks as the
        steps before left them: y real LR patches, x real HR patches.

        1. D^L on y vs G^L(x);  2. D^H on x vs G^H(G^L(x)) (vs G^H(y) without bi-cycle training);
        3. G^L on D^L(G^L(x));  4. G^H on D^H(G^H(y));
        5. G^H on cycle(G^H(G^L(x)), x) + D^H(G^H(G^L(x)));
        6. G^L on cycle(G^L(G^H(G^L(x))), G^L(x)) + D^L(G^L(G^H(G^L(x)))), plus step 5's gradient on G^L: the
           authors clear G^L's gradients after its steps only, so step 6 applies both (PyTorch accumulates).
        Steps 5 and 6 are the bi-cycle training; --nodgdml_bicycle leaves them out.
        """
        c = self.conf.dgdml
        srn, dsn = self.networks["generator"], self.networks["dsn"]
        critic_hr, critic_lr = self.networks["critic_hr"], self.networks["critic_lr"]
        srn_optimizer, dsn_optimizer = self.optimizers["generator"], self.optimizers["dsn"]

        def score(critic: keras.Model, images: tf.Tensor) -> tf.Tensor:
            return tf.reduce_mean(tf.cast(critic(images, training=True), tf.float32))

        fake_lr = dsn(x, training=True)
        scalars = self._critic_step("critic_lr", y, tf.stop_gradient(fake_lr))
        fake_hr = srn(fake_lr, training=True) if c.bicycle else srn(y, training=True)
        scalars |= self._critic_step("critic_hr", x, tf.stop_gradient(fake_hr))
        with tf.GradientTape() as tape:
            dsn_adversarial = score(critic_lr, dsn(x, training=True))
            scaled = dsn_optimizer.scale_loss(dsn_adversarial)
        dsn_optimizer.minimize(tape, scaled, dsn.trainable_variables)
        with tf.GradientTape() as tape:
            srn_adversarial = score(critic_hr, srn(y, training=True))
            scaled = srn_optimizer.scale_loss(srn_adversarial)
        srn_optimizer.minimize(tape, scaled, srn.trainable_variables)
        scalars |= {"dsn_adversarial_loss": dsn_adversarial, "srn_adversarial_loss": srn_adversarial}
        loss = dsn_adversarial + srn_adversarial
        if c.bicycle:
            with tf.GradientTape(persistent=True) as tape:
                cycle_hr = srn(dsn(x, training=True), training=True)
                srn_cycle = self._cycle_loss(cycle_hr, x)
                srn_cycle_adversarial = score(critic_hr, cycle_hr)
                srn_loss = c.cycle_weight * srn_cycle + srn_cycle_adversarial
                scaled_for_srn, scaled_for_dsn = srn_optimizer.scale_loss(srn_loss), dsn_optimizer.scale_loss(srn_loss)
            carried = tape.gradient(scaled_for_dsn, dsn.trainable_variables)
            srn_optimizer.minimize(tape, scaled_for_srn, srn.trainable_variables)
            del tape
            with tf.GradientTape() as tape:
                fake_lr = dsn(x, training=True)
                cycle_lr = dsn(srn(fake_lr, training=True), training=True)
                dsn_cycle = self._cycle_loss(cycle_lr, tf.stop_gradient(fake_lr))
                dsn_cycle_adversarial = score(critic_lr, cycle_lr)
                dsn_loss = c.cycle_weight * dsn_cycle + dsn_cycle_adversarial
                scaled = dsn_optimizer.scale_loss(dsn_loss)
            gradients = tape.gradient(scaled, dsn.trainable_variables)
            dsn_optimizer.apply([g + h for g, h in zip(gradients, carried)], dsn.trainable_variables)
            scalars |= {"srn_cycle_loss": srn_cycle, "srn_cycle_adversarial_loss": srn_cycle_adversarial,
                        "dsn_cycle_loss": dsn_cycle, "dsn_cycle_adversarial_loss": dsn_cycle_adversarial}
            loss += srn_loss + dsn_loss
        return {"loss": loss, **scalars}

    def _joint_step(self, y: tf.Tensor, x: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update of the four networks from one forward pass on the sum of the paper's eqs. 5-8 (an earlier
        release's step, for comparison): y real LR patches, x real HR patches."""
        c = self.conf.dgdml
        srn, dsn = self.networks["generator"], self.networks["dsn"]
        critic_hr, critic_lr = self.networks["critic_hr"], self.networks["critic_lr"]
        with tf.GradientTape(persistent=True) as tape:
            fake_hr = srn(y, training=True)  # step (1), eq. 5
            fake_lr = dsn(x, training=True)  # step (3), eq. 7
            real_hr_scores, real_lr_scores = critic_hr(x, training=True), critic_lr(y, training=True)
            fakes_hr, fakes_lr = [fake_hr], [fake_lr]
            cycle = tf.constant(0.0)
            if c.bicycle:
                cycle_lr = dsn(fake_hr, training=True)  # step (2), eq. 6
                cycle_hr = srn(fake_lr, training=True)  # step (4), eq. 8
                fakes_hr.append(cycle_hr)
                fakes_lr.append(cycle_lr)
                cycle = self._cycle_loss(cycle_lr, y) + self._cycle_loss(cycle_hr, x)
            scores_hr = [critic_hr(fake, training=True) for fake in fakes_hr]
            scores_lr = [critic_lr(fake, training=True) for fake in fakes_lr]
            adversarial = tf.add_n([tf.reduce_mean(tf.cast(s, tf.float32)) for s in scores_hr + scores_lr])
            critic_hr_loss = tf.add_n([critic_loss(real_hr_scores, s) for s in scores_hr])
            critic_lr_loss = tf.add_n([critic_loss(real_lr_scores, s) for s in scores_lr])
            penalty = tf.constant(0.0)
            if c.wgan == "gp":
                # A penalty on the critics' inputs: no gradient flows back into the generators through it.
                def penalties(critic: keras.Model, real: tf.Tensor, fakes: list[tf.Tensor]) -> tf.Tensor:
                    return c.gradient_penalty_weight * tf.add_n([gradient_penalty(
                        critic, real, tf.stop_gradient(fake), self._uniform.uniform([tf.shape(real)[0], 1, 1, 1]))
                        for fake in fakes])

                penalty_hr, penalty_lr = penalties(critic_hr, x, fakes_hr), penalties(critic_lr, y, fakes_lr)
                critic_hr_loss += penalty_hr
                critic_lr_loss += penalty_lr
                penalty = penalty_hr + penalty_lr
            generator_loss = adversarial + c.cycle_weight * cycle
            scaled = {name: self.optimizers[name].scale_loss(loss) for name, loss in
                      (("generator", generator_loss), ("dsn", generator_loss), ("critic_hr", critic_hr_loss),
                       ("critic_lr", critic_lr_loss))}
        # Every gradient comes from this one forward pass (the tape keeps its values), so the order of the
        # updates does not matter.
        if not any(self.optimizers[name].loss_scaled for name in ("generator", "dsn")):
            # The SRN and the DSN minimise the same loss: one backward pass (through the critics) for both.
            srn_variables, dsn_variables = srn.trainable_variables, dsn.trainable_variables
            gradients = tape.gradient(generator_loss, srn_variables + dsn_variables)
            self.optimizers["generator"].apply(gradients[:len(srn_variables)], srn_variables)
            self.optimizers["dsn"].apply(gradients[len(srn_variables):], dsn_variables)
            del scaled["generator"], scaled["dsn"]
        for name, loss in scaled.items():
            self.optimizers[name].minimize(tape, loss, self.networks[name].trainable_variables)
        del tape
        self._clip_critic(critic_hr)
        self._clip_critic(critic_lr)
        return {"loss": generator_loss, "adversarial_loss": adversarial, "cycle_loss": cycle,
                "critic_hr_loss": critic_hr_loss, "critic_lr_loss": critic_lr_loss, "gradient_penalty": penalty,
                # The critics' estimates of the Wasserstein distances of eqs. 5 and 7 (falling as G^H and G^L learn).
                "wasserstein_hr": -critic_loss(real_hr_scores, scores_hr[0]),
                "wasserstein_lr": -critic_loss(real_lr_scores, scores_lr[0])}

    def example_dataset(self, num_examples: int) -> tf.data.Dataset:
        return patches.build_patch_index_dataset(self.collection, self.batch_size, seed=self.conf.run.seed * 7 + 3,
                                                 num_batches=num_examples)

    # Schedule: epochs; quick tests for monitoring; the learning-rate steps logged.
    @property
    def max_iters(self) -> int:
        return self.conf.dgdml.epochs * self.steps_per_epoch

    @property
    def _decay_every(self) -> int:
        return self.conf.dgdml.learning_rate_decay_epochs * self.steps_per_epoch

    @property
    def learning_rate(self) -> float:
        return self.conf.dgdml.learning_rate * 0.1 ** (self.iter // self._decay_every)

    def schedule_iterations(self, first: int) -> list[int]:
        test_every = self.conf.dgdml.test_every_epochs * self.steps_per_epoch
        return [next_multiple(first, test_every, 1), next_multiple(first, self._decay_every, 1)]

    def after_sync(self) -> bool:
        c, h = self.conf.dgdml, self.history[-1]
        if (self.iter + 1) % (c.test_every_epochs * self.steps_per_epoch) == 0:
            logging.info("%s epoch %d of %d", self._sf_text, (self.iter + 1) // self.steps_per_epoch, c.epochs)
            self.quick_test()
        if (self.iter + 1) % self._decay_every == 0 and self.iter + 1 < self.max_iters:
            h.learning_rate_change_iters.append(self.iter)
        return False

    # Inference: the SRN on the Y channel, CbCr bicubic.
    def forward_pass(self, lr_image: np.ndarray, output_shape: Sequence[int] | None = None) -> np.ndarray:
        if lr_image.shape[2] == 1:
            return super().forward_pass(lr_image, output_shape)
        ycbcr = rgb_to_ycbcr(lr_image)
        y = super().forward_pass(ycbcr[:, :, :1], output_shape)
        cbcr = imresize(ycbcr[:, :, 1:], self.sf, output_shape=y.shape[:2], kernel=self.conf.task.upscale_method)
        return ycbcr_to_rgb(np.concatenate([y, cbcr.astype(np.float32)], axis=2))

    @property
    def back_projection_iters(self) -> int:
        return self.conf.dgdml.back_projection_iters

    @property
    def output_flip(self) -> bool:
        return self.conf.dgdml.output_flip
