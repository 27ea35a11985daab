"""Shared fixtures: tiny images and configurations so that every test runs in seconds on a CPU."""

import os

import numpy as np
import pytest

from zssr_tf.config import Config

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth random image in [0, 1] with some structure at several scales."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    planes = []
    for _ in range(channels):
        a, b, c = rng.uniform(2, 9, size=3)
        planes.append(0.5 + 0.25 * np.sin(a * x + b * y) * np.cos(c * x * y + a))
    return np.clip(np.stack(planes, axis=2), 0, 1).astype(np.float32)


@pytest.fixture
def tiny_conf() -> Config:
    """A tiny but complete ZSSR configuration (runs in about a second)."""
    return Config().replace(width=8, depth=3, crop_size=24, max_iters=40, min_iters=10, run_test_every=5,
                  learning_rate_slope_range=20, learning_rate_policy_check_every=10, back_projection_iters=(2,),
                  display_every=10)


@pytest.fixture
def example_paths() -> tuple[str, str]:
    """The bundled example LR image and its ground truth."""
    return os.path.join(EXAMPLES, "astronaut.png"), os.path.join(EXAMPLES, "astronaut_gt.png")
