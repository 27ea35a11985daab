"""Optimizers with another library's exact update, for methods ported from PyTorch code.

Keras's RMSprop and PyTorch's differ in where epsilon goes: Keras divides the step by sqrt(v + epsilon), PyTorch by
sqrt(v) + eps. With eps = 1e-8 Keras's denominator never falls below 1e-4, so a weight whose gradients are ~1e-7
(a clipped WGAN critic's) moves ~1000x less than in PyTorch; PyTorch's moves it by about the learning rate.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zssr_tf")
class TorchRMSprop(keras.optimizers.RMSprop):
    """RMSprop with PyTorch's update (`torch.optim.RMSprop`, no momentum, not centred):

        v <- rho v + (1 - rho) g^2;    w <- w - lr g / (sqrt(v) + epsilon)

    with PyTorch's defaults rho (its `alpha`) 0.99 and epsilon 1e-8. A subclass, so Keras's learning-rate schedules,
    loss scaling, checkpoints and the engine's guard work as with any Keras optimizer.
    """

    def __init__(self, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-2,
                 rho: float = 0.99, epsilon: float = 1e-8, **kwargs):
        if kwargs.get("momentum") or kwargs.get("centered"):
            raise ValueError("TorchRMSprop has PyTorch's plain update only (no momentum, not centred)")
        super().__init__(learning_rate=learning_rate, rho=rho, epsilon=epsilon, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self._velocities[self._get_variable_index(variable)]
        self.assign(velocity, ops.add(ops.multiply(self.rho, velocity),
                                      ops.multiply(1 - self.rho, ops.square(gradient))))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient),
                                             ops.add(ops.sqrt(velocity), self.epsilon)))


class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule times a factor that the train step sets (a scalar `tf.Variable`), e.g. DGDML-SR's authors'
    per-batch depth scale of the learning rate."""

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule | float, factor):
        self.schedule, self.factor = schedule, factor

    def __call__(self, step):
        base = self.schedule(step) if callable(self.schedule) else self.schedule
        return ops.multiply(ops.cast(base, "float32"), ops.cast(self.factor, "float32"))
