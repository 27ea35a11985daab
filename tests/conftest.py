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


# The fault table. A test marked `fault(case, expected)` is one row of benchmarks/results/faults.md; what it saw goes
# in `record_property("observed", ...)`. `ZSSR_FAULTS_TABLE=PATH pytest -m fault` writes the table
# (benchmarks/faults_table.sh); tests/test_fault_table.py checks that the committed one is complete and passing.
FAULT_ROWS: list[dict[str, str]] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(case, expected): a row of benchmarks/results/faults.md")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    marker = item.get_closest_marker("fault")
    if marker is not None and (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        FAULT_ROWS.append({"case": marker.args[0], "expected": marker.args[1], "outcome": report.outcome,
                           "observed": dict(report.user_properties).get("observed", ""), "test": item.nodeid})


def pytest_sessionfinish(session):
    path = os.environ.get("ZSSR_FAULTS_TABLE")
    if not path or not FAULT_ROWS:
        return
    if session.config.option.keyword or session.config.option.markexpr != "fault":
        raise pytest.UsageError("ZSSR_FAULTS_TABLE: the table is written by a whole `-m fault` run only")
    cell = lambda text: " ".join(str(text).split()).replace("|", "\\|")  # noqa: E731
    lines = ["| # | case | expected | observed | result | test |", "|---|---|---|---|---|---|"]
    for i, row in enumerate(FAULT_ROWS, 1):
        lines.append(f"| {i} | {cell(row['case'])} | {cell(row['expected'])} | {cell(row['observed'])} | "
                     f"{row['outcome']} | `{row['test'].split('::', 1)[-1]}` |")
    with open(path, "w") as f:
        f.write(os.environ.get("ZSSR_FAULTS_HEADER", "") + "\n".join(lines) + "\n")
