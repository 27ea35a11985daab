"""ZSRGAN (Lee, Teodoro, Kim): ZSSR's generator trained adversarially against a DCGAN-style discriminator.

The generator (ZSSR's network on the interpolated son, global residual) minimises
lambda_R * L1 + lambda_P * L1(VGG16 relu3_1 features) + lambda_G * BCE(D(G(son)), real), the discriminator
0.5 * (BCE(D(father), real) + BCE(D(G(son)), fake)) (the report's eqs. 1-5). Both use Adam (1e-3, beta_1 0.5), the
learning rate halved every 500 of 2000 iterations (a Keras `ExponentialDecay` with `staircase`). Each iteration is
one batch: a father drawn as the report's 3.1 says, in its 12 rotations and mirrors (`data.build_zsrgan_dataset`).
The output is the generator on the interpolated input; ZSSR's self-ensemble and back-projection are flags.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from zssr_tf import data
from zssr_tf.engine import Trainer, next_multiple
from zssr_tf.losses import binary_cross_entropy, l1_loss, perceptual_loss
from zssr_tf.models import build_dcgan_discriminator, build_vgg_features, build_zssr_generator


class ZSRGAN(Trainer):
    """ZSRGAN on one image (arguments as `zssr_tf.engine.Trainer`)."""

    method_name = "zsrgan"
    min_input_size = 64  # the discriminator's smallest crop

    resumable = True  # its schedule is a function of the iteration: no state of its own between checkpoints

    def __init__(self, *args, **kwargs):
        self.vgg: keras.Model | None = None
        super().__init__(*args, **kwargs)
        # Crops of one fixed size (one trace of the step), at most the input's shorter side.
        self.crop_size = min(self.conf.zsrgan.crop_size, *self.input.shape[:2])

    def build_networks(self, stage: int, restart: int = 0) -> None:
        """The generator, the discriminator, their Adams, and (once) the frozen VGG16 of the perceptual loss."""
        c, seed = self.conf.zsrgan, self.conf.run.seed * 1000 + stage * 100
        generator = build_zssr_generator(
            channels=self.channels, depth=c.depth, width=c.width, init_variance=c.init_variance, learn_residual=True,
            seed=seed, dtype_policy=self.precision)
        discriminator = build_dcgan_discriminator(
            channels=self.channels, width=c.discriminator_width, seed=seed + 50, dtype_policy=self.precision)
        if self.vgg is None and self.conf.run.vgg_weights != "none" and c.perceptual_weight > 0:
            self.vgg = build_vgg_features(self.conf.run.vgg_weights, c.vgg_layer)
        elif self.vgg is None and not restart and stage == 0:
            logging.warning("%s: no perceptual loss (vgg_weights=none or zsrgan_perceptual_weight=0): the "
                            "generator learns from the L1 and adversarial losses only", self.conf.run.name)
        self.set_networks({"generator": generator, "discriminator": discriminator}, self._new_optimizers())
        self.load_init_weights()

    def _new_optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        c = self.conf.zsrgan

        def adam() -> keras.optimizers.Optimizer:
            schedule = keras.optimizers.schedules.ExponentialDecay(
                c.learning_rate, c.learning_rate_decay_every, c.learning_rate_decay, staircase=True)
            return keras.optimizers.Adam(learning_rate=schedule, beta_1=c.beta_1, beta_2=0.999, epsilon=1e-8)

        return {"generator": adam(), "discriminator": adam()}

    def start_stage(self, stage: int) -> None:
        if stage > 0:  # the learning-rate schedule starts again (new Adams); the networks go on
            self.set_networks(self.networks, self._new_optimizers())

    def train_step(self, lr_son: tf.Tensor, hr_father: tf.Tensor) -> dict[str, tf.Tensor]:
        """One generator and one discriminator step on one batch (both from the same forward pass)."""
        c = self.conf.zsrgan
        generator, discriminator = self.networks["generator"], self.networks["discriminator"]
        g_optimizer, d_optimizer = self.optimizers["generator"], self.optimizers["discriminator"]
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            sr = generator(lr_son, training=True)
            real = discriminator(hr_father, training=True)
            fake = discriminator(sr, training=True)
            reconstruction = l1_loss(sr, hr_father)
            adversarial = binary_cross_entropy(fake, real=True)
            perceptual = perceptual_loss(self.vgg, sr, hr_father) if self.vgg is not None else tf.constant(0.0)
            g_loss = (c.reconstruction_weight * reconstruction + c.adversarial_weight * adversarial
                      + c.perceptual_weight * perceptual)
            d_loss = c.discriminator_loss_weight * (binary_cross_entropy(real, real=True)
                                                    + binary_cross_entropy(fake, real=False))
            g_scaled, d_scaled = g_optimizer.scale_loss(g_loss), d_optimizer.scale_loss(d_loss)
        g_optimizer.minimize(g_tape, g_scaled, generator.trainable_variables)
        d_optimizer.minimize(d_tape, d_scaled, discriminator.trainable_variables)
        return {"loss": g_loss, "reconstruction_loss": reconstruction, "perceptual_loss": perceptual,
                "adversarial_loss": adversarial, "discriminator_loss": d_loss,
                "discriminator_real": tf.reduce_mean(tf.cast(real, tf.float32)),
                "discriminator_fake": tf.reduce_mean(tf.cast(fake, tf.float32))}

    def example_dataset(self, num_examples: int) -> tf.data.Dataset:
        return data.build_zsrgan_dataset(self.input, tuple(self.sf), self.kernel, self.conf, self.crop_size,
                                         seed=(self.conf.run.seed, 2, self.stage), num_examples=num_examples)

    # Schedule: a fixed number of iterations, quick tests for monitoring, the learning-rate steps logged.
    @property
    def max_iters(self) -> int:
        return self.conf.zsrgan.max_iters

    @property
    def learning_rate(self) -> float:
        return self.conf.zsrgan.learning_rate_at(self.iter)

    def schedule_iterations(self, first: int) -> list[int]:
        c = self.conf.zsrgan
        return [next_multiple(first, c.test_every), next_multiple(first, c.learning_rate_decay_every, 1)]

    def after_sync(self) -> bool:
        c, h = self.conf.zsrgan, self.history[-1]
        if self.iter % c.test_every == 0:
            self.quick_test()
        if (self.iter + 1) % c.learning_rate_decay_every == 0 and self.iter + 1 < c.max_iters:
            h.learning_rate_change_iters.append(self.iter)
        return False

    @property
    def back_projection_iters(self) -> int:
        return self.conf.zsrgan.back_projection_iters

    @property
    def output_flip(self) -> bool:
        return self.conf.zsrgan.output_flip
