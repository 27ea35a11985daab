"""Loss functions: pure tensor -> scalar functions shared by the trainers."""

from __future__ import annotations

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
