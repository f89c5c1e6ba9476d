"""Plain-text progress lines for long work: "<what>: done/total (percent), rate unit/s, ETA mm:ss".

Dependency-free and log-friendly: one line to stderr at most every `every` seconds (no bars or carriage
returns, so captured logs stay readable), nothing at all for work shorter than that. Silent when
disabled, when the environment variable POSE_PRIOR_PROGRESS is "0" (tests, quiet scripts), or on a
`rank` other than 0 (one line per job, not one per process).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Optional, TextIO

ENV_VAR = "POSE_PRIOR_PROGRESS"


def progress_enabled_by_env() -> bool:
    """False when POSE_PRIOR_PROGRESS is set to 0 / false / no / off."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in {"0", "false", "no", "off"}


def format_duration(seconds: float) -> str:
    """mm:ss, or h:mm:ss from one hour on; '--:--' when unknown."""
    if not seconds >= 0 or seconds == float("inf"):
        return "--:--"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Counts done units of `total` and prints a progress line at most every `every` seconds.

    Use as a context manager (or call close()): the closing line is printed only if a line was printed
    before, so quick work stays silent. `clock` and `stream` exist for tests (a fake clock, a buffer).
    """

    def __init__(
        self,
        what: str,
        total: int,
        *,
        unit: str = "",
        every: float = 10.0,
        enabled: bool = True,
        rank: Optional[int] = None,
        clock: Callable[[], float] = time.monotonic,
        stream: Optional[TextIO] = None,
    ) -> None:
        self.what = what
        self.total = max(int(total), 0)
        self.unit = unit
        self.every = float(every)
        self.enabled = bool(enabled) and (rank is None or int(rank) == 0) and progress_enabled_by_env()
        self.clock = clock
        self._stream = stream
        self.done = 0
        self.lines = 0
        self._start = clock()
        self._last = self._start

    def line(self) -> str:
        """The current progress line (also used for the closing line)."""
        elapsed = self.clock() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        percent = 100.0 * self.done / self.total if self.total else 100.0
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        unit = f" {self.unit}" if self.unit else ""
        return (f"{self.what}: {self.done}/{self.total} ({percent:.1f}%), {_rate(rate)}{unit}/s, "
                f"ETA {format_duration(max(remaining, 0.0))}")

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        if not self.enabled:
            return
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self._print(self.line())

    def close(self) -> None:
        if self.enabled and self.lines:
            elapsed = self.clock() - self._start
            self._print(f"{self.line()} (took {format_duration(elapsed)})")
        self.enabled = False  # a second close() prints nothing

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _print(self, text: str) -> None:
        # sys.stderr looked up at print time so redirection (pytest's capture, logging setups) is honoured
        print(text, file=self._stream or sys.stderr, flush=True)
        self.lines += 1


def _rate(rate: float) -> str:
    """Three significant figures-ish: 0.123, 4.56, 78.9, 1234."""
    if rate >= 100:
        return f"{rate:.0f}"
    if rate >= 1:
        return f"{rate:.1f}"
    return f"{rate:.3g}"
