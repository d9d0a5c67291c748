"""A plain-text progress line for long sweeps: done/total variants, variants per second and time left."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A plain-text progress bar over chunks on stderr: done/total variants, variants/s and ETA.

    On a terminal it redraws one line; otherwise it prints a line at most every ``every`` seconds.

    Args:
        total: total variants.
        label: prefix.
        stream: defaults to ``sys.stderr``.
        enabled: False silences it.
    """

    def __init__(
        self, total: int, *, label: str = "sweep", stream: Any = None, enabled: bool = True, every: float = 5.0
    ):
        self.total = int(total)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.every = every
        self.done = 0
        self.computed = 0
        self.t0 = time.perf_counter()
        self.t_last = -math.inf
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    @property
    def rate(self) -> float:
        """Computed (not resumed) variants per second so far."""
        dt = time.perf_counter() - self.t0
        return self.computed / dt if dt > 0 else 0.0

    def update(self, n: int, *, computed: bool = True, note: str = "") -> None:
        """Advance by ``n`` variants (``computed=False`` for chunks found on disk)."""
        self.done += n
        if computed:
            self.computed += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.tty and now - self.t_last < self.every and self.done < self.total:
            return
        self.t_last = now
        text = self.line(note)
        if self.tty:
            self.width = max(getattr(self, "width", 0), len(text))
            self.stream.write("\r" + text.ljust(self.width))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, note: str = "") -> str:
        frac = self.done / self.total if self.total else 1.0
        width = 24
        bar = "#" * int(round(frac * width))
        rate = self.rate
        remaining = self.total - self.done
        eta = _fmt_time(remaining / rate) if rate > 0 and remaining else ("--" if remaining else "0s")
        text = (
            f"{self.label} [{bar:<{width}}] {self.done}/{self.total} variants {100 * frac:5.1f}% "
            f"{rate:7.0f} var/s  ETA {eta}"
        )
        return text + (f"  {note}" if note else "")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
