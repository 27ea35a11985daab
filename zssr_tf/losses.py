"""Loss functions: pure tensor -> scalar functions shared by the trainers."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def l1_loss(output: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean absolute error over every pixel and channel, computed in float32 (ZSSR's loss, on the unclipped output).

    Args:
      output: [N, H, W, C] network output (any float dtype).
      target: [N, H, W, C] HR fathers in [0, 1].

    Returns:
      float32 scalar.
    """
    return tf.reduce_mean(tf.abs(tf.cast(output, tf.float32) - tf.cast(target, tf.float32)))


@tf.custom_gradient
def _torch_bce(p: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, Any]:
    """PyTorch's `BCELoss` per entry: the logs clamped at -100 in the value only; the gradient is
    (p - label) / max(p (1 - p), 1e-12), so it never vanishes short of p being exactly 0 or 1."""
    value = -(label * tf.maximum(tf.math.log(p), -100.0) + (1.0 - label) * tf.maximum(tf.math.log(1.0 - p), -100.0))

    def grad(upstream: tf.Tensor) -> tuple[tf.Tensor, None]:
        return upstream * (p - label) / tf.maximum(p * (1.0 - p), 1e-12), None

    return value, grad


def binary_cross_entropy(probabilities: tf.Tensor, real: bool) -> tf.Tensor:
    """Mean binary cross-entropy of a discriminator's probability map against all-real (1) or all-fake (0), as
    PyTorch's `nn.BCELoss` (ZSRGAN's authors' code): not clipped, so a saturated discriminator still passes a
    gradient (Keras's loss clips the probabilities to [1e-7, 1 - 1e-7], where the gradient is 0).

    Args:
      probabilities: [N, h, w, 1] sigmoid outputs.
      real: the label every entry is compared with.

    Returns:
      float32 scalar.
    """
    p = tf.cast(probabilities, tf.float32)
    return tf.reduce_mean(_torch_bce(p, tf.fill(tf.shape(p), 1.0 if real else 0.0)))


def vgg_preprocess(images: tf.Tensor) -> tf.Tensor:
    """[N, H, W, C] images in [0, 1] (C = 1 or 3) -> VGG's input: 0..255, BGR, ImageNet means subtracted (Keras's
    `vgg16.preprocess_input`); one channel is repeated to three."""
    images = tf.cast(images, tf.float32)
    if images.shape[-1] == 1:
        images = tf.repeat(images, 3, axis=-1)
    return keras.applications.vgg16.preprocess_input(images * 255.0)


def perceptual_loss(features: keras.Model, output: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """L1 distance between the frozen `features` of the output and of the target (ZSRGAN's eq. 2).

    Args:
      features: e.g. `models.perceptual.build_vgg_features`.
      output, target: [N, H, W, C] images in [0, 1].

    Returns:
      float32 scalar.
    """
    return l1_loss(features(vgg_preprocess(output), training=False), features(vgg_preprocess(target), training=False))


def critic_loss(real_scores: tf.Tensor, fake_scores: tf.Tensor) -> tf.Tensor:
    """A Wasserstein critic's loss in DGDML-SR's convention (its eqs. 5-8, the authors' code): the critic
    maximises E[D(fake)] - E[D(real)] (its estimate of the Wasserstein distance), so it minimises
    E[D(real)] - E[D(fake)]; the generator minimises E[D(fake)]. Scores are [N, 1]; float32 scalar."""
    return tf.reduce_mean(tf.cast(real_scores, tf.float32)) - tf.reduce_mean(tf.cast(fake_scores, tf.float32))


def gradient_penalty(critic: keras.Model, real: tf.Tensor, fake: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """WGAN-GP's penalty (Gulrajani et al.): E[(||grad D(x_hat)||_2 - 1)^2] with x_hat = u real + (1 - u) fake,
    the gradient's norm taken per sample.

    Args:
      critic: maps [N, H, W, C] to [N, 1] scores (one per sample).
      real, fake: [N, H, W, C] batches.
      uniform: [N, 1, 1, 1] draws from U(0, 1).

    Returns:
      float32 scalar (not yet weighted).
    """
    real, fake = tf.cast(real, tf.float32), tf.cast(fake, tf.float32)
    mixed = uniform * real + (1.0 - uniform) * fake
    with tf.GradientTape() as tape:
        tape.watch(mixed)
        scores = tf.cast(critic(mixed, training=True), tf.float32)
    gradients = tape.gradient(scores, mixed)
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]) + 1e-12)
    return tf.reduce_mean(tf.square(norms - 1.0))
