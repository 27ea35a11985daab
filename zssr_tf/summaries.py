"""What a run reports while it trains: TensorBoard event files and the per-stage progress bar.

Both are fed from the trainer's Python loop with values it has already read (losses every `display_every`
iterations, quick-test errors, each stage's output), never from inside the `tf.function` step, so they add no
device synchronisation.

TensorBoard: `tf.summary.scalar`/`image` (they need the `tensorboard` package, which TensorFlow 2.21 no longer
installs itself; it is one of our requirements).

Progress: `tqdm.auto` draws a widget in notebooks and a line that updates in place on a terminal. Anywhere else
(stderr redirected to a log file, CI) the bar is switched off, because carriage-return updates turn into one line
per refresh there; the absl log lines every `display_every` iterations report progress instead.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow as tf
from absl import logging

with warnings.catch_warnings():
    # In a notebook without ipywidgets tqdm.auto warns and falls back to its console bar (then shown only on a
    # terminal, so not there): the log lines report progress, which needs no warning.
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

class SummaryWriter:
    """TensorBoard scalars and images of one run, in the event files of one directory.

    Args:
      logdir: the run's directory (created when missing); `tensorboard --logdir` on it or on a parent shows it.
    """

    def __init__(self, logdir: str):
        self.logdir = logdir
        self._writer = tf.summary.create_file_writer(logdir)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Writes each `tag: value` as a TensorBoard scalar at `step`."""
        with self._writer.as_default():
            for tag, value in values.items():
                tf.summary.scalar(tag, float(value), step=step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Writes one image (H x W or H x W x C float in [0, 1], C = 1, 3 or 4) as a TensorBoard image at `step`."""
        pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)  # rounded, as the saved images
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        with self._writer.as_default():
            tf.summary.image(tag, pixels[None], step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (where a bar can redraw itself in place)."""
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def in_notebook() -> bool:
    """Whether `tqdm.auto` picked its notebook widget (Jupyter, Colab)."""
    return any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)


_bars_off = [0]  # how many `progress_bars_off` blocks are running


@contextlib.contextmanager
def progress_bars_off() -> Iterator[None]:
    """No progress bars while the block runs (several images training at once would interleave them)."""
    _bars_off[0] += 1
    try:
        yield
    finally:
        _bars_off[0] -= 1


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[tqdm]:
    """A progress bar over `total` iterations, shown only in a notebook or on a terminal.

    Args:
      total: the most iterations (ETA is to this; a stage that stops earlier closes its bar early).
      description: the bar's prefix (the run's name and scale factor).
      enabled: False never shows it (the config's `progress`).

    Yields:
      A `tqdm` bar; a disabled one (every call a no-op) where it is not shown.
    """
    notebook = in_notebook()
    shown = enabled and not _bars_off[0] and (notebook or stderr_is_terminal())
    bar = tqdm(total=total, desc=description, unit="it", disable=not shown, dynamic_ncols=True, leave=True)
    try:
        with _log_lines_above() if shown and not notebook else contextlib.nullcontext():
            yield bar
    finally:
        bar.close()


class _AboveBar:
    """A stream whose writes go above the progress bar (tqdm clears the bar, writes, redraws)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> None:
        tqdm.write(text, file=self._stream, end="")

    def flush(self) -> None:
        self._stream.flush()


@contextlib.contextmanager
def _log_lines_above() -> Iterator[None]:
    """Prints absl's log lines above a terminal bar instead of into the middle of its line."""
    handler = logging.get_absl_handler().python_handler
    if handler.stream is not sys.stderr:  # logging to a file: nothing to keep apart
        yield
        return
    handler.setStream(_AboveBar(sys.stderr))
    try:
        yield
    finally:
        handler.setStream(sys.stderr)
