"""A one-line progress bar on stderr, for work long enough that a person waits on it."""

from __future__ import annotations

import sys

__all__ = ["Progress", "stderr_is_terminal"]


def stderr_is_terminal() -> bool:
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Redrawn only when the visible text changes; ``done`` and ``total`` are divided by
    ``scale`` for display in ``unit``."""

    _WIDTH = 30

    def __init__(self, name: str, total: int | None, *, unit: str = "", scale: float = 1.0) -> None:
        self._name = name
        self._total = total
        self._unit = unit
        self._scale = scale
        self._last = ""

    def update(self, done: int) -> None:
        shown = f"{done / self._scale:.1f}" if self._scale != 1.0 else f"{done}"
        if self._total:
            filled = min(self._WIDTH, self._WIDTH * done // self._total)
            percent = min(100, 100 * done // self._total)
            bar = "#" * filled + "-" * (self._WIDTH - filled)
            total = f"{self._total / self._scale:.1f}" if self._scale != 1.0 else f"{self._total}"
            text = f"{self._name} [{bar}] {percent:3d}% {shown}/{total} {self._unit}".rstrip()
        else:
            text = f"{self._name} {shown} {self._unit}".rstrip()
        if text != self._last:
            sys.stderr.write("\r" + text)
            sys.stderr.flush()
            self._last = text

    def close(self) -> None:
        if self._last:
            sys.stderr.write("\n")
            sys.stderr.flush()
