"""Ctrl-C and SIGTERM: a run stops at a safe point of its train loop and says where, in one line. No TensorFlow.

Python runs a signal handler between two bytecodes of the main thread, wherever that is. Raising there (the default
KeyboardInterrupt) in the middle of TensorFlow's Python code crashed the process now and then (SIGSEGV, about one
run in ten after SIGTERM). So the command's handler (`request_stop`) only records the signal while the train loop
runs (`safe_points`), and the loop raises `Interrupted` between two calls of its train step (`check`); outside the
loop, or at a second signal, it raises at once.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; `signum` is the signal (the command exits with 128 + signum)."""

    def __init__(self, message: str = "interrupted", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


_state = {"safe_points": 0, "signum": None}


def request_stop(signum: int, frame: object = None) -> None:
    """The signal handler (SIGINT, SIGTERM): inside `safe_points`, stop at the next `check`; elsewhere, now."""
    if _state["safe_points"] and _state["signum"] is None:
        _state["signum"] = signum
        return
    raise Interrupted("interrupted", signum)


def install() -> None:
    """Makes Ctrl-C and SIGTERM stop a run at a safe point (the command does this; a library caller may)."""
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)


@contextlib.contextmanager
def safe_points() -> Iterator[None]:
    """While the block runs, a signal is recorded and raised by `check` instead of where it lands."""
    _state["safe_points"] += 1
    try:
        yield
    finally:
        _state["safe_points"] -= 1
        if not _state["safe_points"]:
            _state["signum"] = None


def check(where: str) -> None:
    """Raises `Interrupted` ("interrupted at <where>") if a signal came since the block began."""
    signum = _state["signum"]
    if signum is not None:
        _state["signum"] = None
        raise Interrupted(f"interrupted at {where}", signum)
