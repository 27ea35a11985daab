"""ZSRGAN (Lee, Teodoro, Kim): ZSSR's generator trained adversarially against a DCGAN-style discriminator.

The generator (ZSSR's network on the interpolated son, global residual) minimises
lambda_R * L1 + lambda_P * L1(VGG16 relu3_1 features) + lambda_G * BCE(D(G(son)), real), the discriminator
0.5 * (BCE(D(father), real) + BCE(D(G(son)), fake)) (the report's eqs. 1-5). Both use Adam (1e-3, beta_1 0.5), the
learning rate halved every 500 of 2000 iterations (a Keras `ExponentialDecay` with `staircase`). Each iteration is
one batch: a father drawn as the authors' code draws it, in its 12 rotations and mirrors
(`data.build_zsrgan_dataset`). As the authors' code (rlgnswk/AI604_Team19): the networks and the L1 compute in
[-1, 1], the generator adds N(0, 0.1) to its convolutions' input at every forward pass, the discriminator steps
first and the generator's loss sees the updated discriminator, the cross-entropy is PyTorch's (no clipping). Every
`test_every` iterations the generator's whole output is kept with its weights (and, with a ground truth, its RGB
PSNR and SSIM), and `--zsrgan_select=psnr` makes the output with the best test's weights (an oracle, as the
report's numbers). The output is the generator on the interpolated input; ZSSR's self-ensemble and back-projection
are flags.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zssr_tf import data, metrics
from zssr_tf.engine import Trainer, next_multiple
from zssr_tf.image_io import encode_image
from zssr_tf.losses import binary_cross_entropy, l1_loss, perceptual_loss
from zssr_tf.models import build_dcgan_discriminator, build_vgg_features, build_zssr_generator


@dataclasses.dataclass
class KeptTest:
    """One of ZSRGAN's tests: after `iterations` steps, the generator's output on the whole input and its
    weights; RGB PSNR (8-bit, no shave) and skimage-default SSIM against the ground truth when there is one."""

    stage: int
    iterations: int
    png: bytes | None  # the output as an 8-bit PNG (a float copy per test would be 4x larger and uncompressed)
    weights: list[np.ndarray] | None  # png and weights are None for tests from before a resume
    psnr_rgb: float | None = None
    ssim: float | None = None


class ZSRGAN(Trainer):
    """ZSRGAN on one image (arguments as `zssr_tf.engine.Trainer`)."""

    method_name = "zsrgan"
    min_input_size = 64  # the discriminator's smallest crop

    resumable = True  # its schedule is a function of the iteration; the generator's noise state is a variable

    def __init__(self, *args, **kwargs):
        self.vgg: keras.Model | None = None
        self.kept_tests: list[KeptTest] = []
        super().__init__(*args, **kwargs)
        # At most the input's shorter side; `--zsrgan_fathers=authors` crops smaller fathers smaller.
        self.crop_size = min(self.conf.zsrgan.crop_size, *self.input.shape[:2])
        if self.conf.zsrgan.select == "psnr" and self.gt is None:
            raise ValueError("zsrgan_select=psnr: picks the test closest to the ground truth; give --ground_truth "
                             "(or --zsrgan_select=last)")
        if self.conf.zsrgan.select == "psnr" and self.conf.run.checkpoint_every:
            raise ValueError("zsrgan_select=psnr: a resumed run keeps its earlier tests' numbers, not their "
                             "weights; drop --checkpoint_every (or --zsrgan_select=last)")
        self._minus_one_one = self.conf.zsrgan.value_range == "-1,1"

    def build_networks(self, stage: int, restart: int = 0) -> None:
        """The generator, the discriminator, their Adams, and (once) the frozen VGG16 of the perceptual loss."""
        c, seed = self.conf.zsrgan, self.conf.run.seed * 1000 + stage * 100
        generator = build_zssr_generator(
            channels=self.channels, depth=c.depth, width=c.width, init_variance=c.init_variance, learn_residual=True,
            seed=seed, dtype_policy=self.precision, branch_range=c.value_range, branch_noise_std=c.noise_std,
            branch_noise_at_test=c.noise_at_test)
        discriminator = build_dcgan_discriminator(
            channels=self.channels, width=c.discriminator_width, seed=seed + 50, dtype_policy=self.precision)
        if self.vgg is None and self.conf.run.vgg_weights != "none" and c.perceptual_weight > 0:
            self.vgg = build_vgg_features(self.conf.run.vgg_weights, c.vgg_layer)
        elif self.vgg is None and not restart and stage == 0:
            logging.warning("%s: no perceptual loss (vgg_weights=none or zsrgan_perceptual_weight=0): ZSRGAN "
                            "without it is unstable (the adversarial term can wreck the output in the first "
                            "iterations, see the README); --zsrgan_adversarial_weight=0.1 or 0 tames it",
                            self.conf.run.name)
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

    def _in_range(self, images: tf.Tensor) -> tf.Tensor:
        """[0, 1] images in the range the discriminator and the L1 compute in (`--zsrgan_value_range`)."""
        return images * 2.0 - 1.0 if self._minus_one_one else images

    def train_step(self, lr_son: tf.Tensor, hr_father: tf.Tensor) -> dict[str, tf.Tensor]:
        """One discriminator and one generator step on one batch: `d_then_g` as the authors' code (D's step on G's
        output, then G's loss against the updated D), or `joint` (both from one forward pass)."""
        c = self.conf.zsrgan
        generator, discriminator = self.networks["generator"], self.networks["discriminator"]
        g_optimizer, d_optimizer = self.optimizers["generator"], self.optimizers["discriminator"]
        father = self._in_range(hr_father)

        def d_loss_of(real: tf.Tensor, fake: tf.Tensor) -> tf.Tensor:
            return c.discriminator_loss_weight * (binary_cross_entropy(real, real=True)
                                                  + binary_cross_entropy(fake, real=False))

        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            sr = generator(lr_son, training=True)
            real = discriminator(father, training=True)
            if c.update == "d_then_g":
                with g_tape.stop_recording():
                    d_loss = d_loss_of(real, discriminator(tf.stop_gradient(self._in_range(sr)), training=True))
                    d_optimizer.minimize(d_tape, d_optimizer.scale_loss(d_loss), discriminator.trainable_variables)
            fake = discriminator(self._in_range(sr), training=True)
            if c.update == "joint":
                d_loss = d_loss_of(real, fake)
            reconstruction = l1_loss(self._in_range(sr), father)
            adversarial = binary_cross_entropy(fake, real=True)
            perceptual = perceptual_loss(self.vgg, sr, hr_father) if self.vgg is not None else tf.constant(0.0)
            g_loss = (c.reconstruction_weight * reconstruction + c.adversarial_weight * adversarial
                      + c.perceptual_weight * perceptual)
            g_scaled = g_optimizer.scale_loss(g_loss)
        g_optimizer.minimize(g_tape, g_scaled, generator.trainable_variables)
        if c.update == "joint":
            d_optimizer.minimize(d_tape, d_optimizer.scale_loss(d_loss), discriminator.trainable_variables)
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
        return [next_multiple(first, c.test_every), next_multiple(first, c.test_every, 1),
                next_multiple(first, c.learning_rate_decay_every, 1)]

    def checkpointed_state(self) -> dict:
        """The generator's noise draws go on after a resume: its seed state is not among Keras's weights."""
        layers = [layer for layer in self.networks["generator"].layers if hasattr(layer, "seed_generator")]
        return {f"generator_noise_{i}": layer.seed_generator.state for i, layer in enumerate(layers)}

    def resume_state(self) -> dict:
        """The tests so far, by their numbers (their images and weights are not in the checkpoint)."""
        return {"tests": [{"stage": t.stage, "iterations": t.iterations, "psnr_rgb": t.psnr_rgb, "ssim": t.ssim}
                          for t in self.kept_tests]}

    def set_resume_state(self, state: dict) -> None:
        self.kept_tests = [KeptTest(png=None, weights=None, **t) for t in state.get("tests", [])]

    def keep_test(self) -> None:
        """The authors' test after every `test_every` steps and the last: the generator on the whole interpolated
        input (its noise drawn if `noise_at_test`), kept with its weights; PSNR / SSIM with a ground truth."""
        image = self.forward_pass(self.input)
        test = KeptTest(self.stage, self.iter + 1, encode_image(image), self.networks["generator"].get_weights())
        if self.gt_per_sf is not None:
            test.psnr_rgb = metrics.psnr(image, self.gt_per_sf, y_channel=False)
            test.ssim = metrics.uniform_ssim(image, self.gt_per_sf)
            logging.info("%s iteration %d: test RGB PSNR %.2f dB, SSIM %.4f", self._sf_text, test.iterations,
                         test.psnr_rgb, test.ssim)
        self.kept_tests.append(test)

    def final_test(self) -> np.ndarray:
        """The stage's output from the last weights, or (`select=psnr`) from the best test's: an oracle."""
        tests = [t for t in self.kept_tests if t.stage == self.stage]
        report = self.report.setdefault("tests", [])
        report += [{"stage": t.stage, "iterations": t.iterations, "psnr_rgb": t.psnr_rgb, "ssim": t.ssim}
                   for t in tests]
        if self.conf.zsrgan.select == "psnr" and tests:
            best = max(tests, key=lambda t: t.psnr_rgb)
            last_weights = self.networks["generator"].get_weights()
            self.networks["generator"].set_weights(best.weights)
            self.report.setdefault("selected", []).append(
                {"stage": self.stage, "iterations": best.iterations, "psnr_rgb": best.psnr_rgb, "ssim": best.ssim,
                 "last_psnr_rgb": tests[-1].psnr_rgb, "last_ssim": tests[-1].ssim, "oracle": True})
            logging.warning("%s: the output is the test at iteration %d, chosen for its PSNR against the ground "
                            "truth (%.2f dB; the last iteration's %.2f dB): an oracle, not a result a user without "
                            "the ground truth can have", self._sf_text, best.iterations, best.psnr_rgb,
                            tests[-1].psnr_rgb)
            try:
                return super().final_test()
            finally:
                self.networks["generator"].set_weights(last_weights)  # a next stage goes on from the last
        return super().final_test()

    def after_sync(self) -> bool:
        c, h = self.conf.zsrgan, self.history[-1]
        if self.iter % c.test_every == 0:
            self.quick_test()
        if (self.iter + 1) % c.test_every == 0 or self.iter + 1 == c.max_iters:
            self.keep_test()
        if (self.iter + 1) % c.learning_rate_decay_every == 0 and self.iter + 1 < c.max_iters:
            h.learning_rate_change_iters.append(self.iter)
        return False

    @property
    def back_projection_iters(self) -> int:
        return self.conf.zsrgan.back_projection_iters

    @property
    def output_flip(self) -> bool:
        return self.conf.zsrgan.output_flip
