"""Progress reporting shared by the CLI, the Slicer modules and subprocess workers.

A ``Progress`` receives (fraction 0..1, message) updates. ``sub(start, end)`` maps a child stage's 0..1 onto a
slice of its parent, so long stages report fine-grained progress without knowing where they sit in a pipeline.
``JsonLinesProgress`` writes one JSON object per line (the protocol of background workers).
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable, Optional


class Cancelled(RuntimeError):
    """Raised inside a stage when the user asked to cancel."""


class Progress:
    def __init__(self, callback: Optional[Callable[[float, str], None]] = None,
                 should_cancel: Optional[Callable[[], bool]] = None):
        self._callback = callback
        self._should_cancel = should_cancel

    def update(self, fraction: float, message: str = "") -> None:
        if self._should_cancel is not None and self._should_cancel():
            raise Cancelled("cancelled by the user")
        if self._callback is not None:
            self._callback(max(0.0, min(1.0, float(fraction))), message)

    def sub(self, start: float, end: float) -> "Progress":
        parent = self

        def cb(f, m):
            parent.update(start + (end - start) * f, m)
        return Progress(cb, None)


null_progress = Progress()


class ConsoleProgress(Progress):
    """Human-readable progress on stderr: one line per message with elapsed time."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stderr
        self._t0 = time.perf_counter()
        self._last = None
        super().__init__(self._print)

    def _print(self, fraction: float, message: str) -> None:
        if message == self._last:
            return
        self._last = message
        self._stream.write(f"[{time.perf_counter() - self._t0:6.1f}s {fraction * 100:5.1f}%] {message}\n")
        self._stream.flush()


class JsonLinesProgress(Progress):
    """One JSON object per line: {"progress": f, "message": m, "elapsed_s": t}."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stdout
        self._t0 = time.perf_counter()
        super().__init__(self._emit)

    def _emit(self, fraction: float, message: str) -> None:
        self._stream.write(json.dumps({"progress": round(fraction, 4), "message": message,
                                       "elapsed_s": round(time.perf_counter() - self._t0, 2)}) + "\n")
        self._stream.flush()
