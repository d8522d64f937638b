"""What every operation on a topology shares: the log of its steps and the error it refuses or fails with.

An operation (promote, failover, switchover, setup, clone, relay, errant repair, sandbox rebuild) reports each
step as a sentence: kept in order for its result and passed to the caller's `progress` callback as it happens
(the command line prints it). It raises a subclass of `OpError` whose message says why and what to do instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class OpError(RuntimeError):
    """An operation was refused or failed; the message names the cause and, where there is one, the way out."""


class Steps:
    """The steps an operation took, in order; each also goes to `progress` as it happens."""

    def __init__(self, progress: Callable[[str], None] | None = None, lines: list[str] | None = None, *,
                 timeline: list[tuple[float, str]] | None = None, started: float | None = None) -> None:
        """`lines` (and `timeline`: (seconds since `started`, step)) are filled in place when given."""
        self.lines: list[str] = [] if lines is None else lines
        self.timeline = timeline
        self.started = time.monotonic() if started is None else started
        self._progress = progress

    def __call__(self, message: str) -> None:
        self.lines.append(message)
        if self.timeline is not None:
            self.timeline.append((round(time.monotonic() - self.started, 3), message))
        if self._progress is not None:
            self._progress(message)
