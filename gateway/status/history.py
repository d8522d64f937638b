"""The last hour of a few numbers, for the page's charts: fixed-size, whatever runs how long.

One point every `step_s` seconds (points offered sooner are dropped), at most `span_s / step_s` points:
ingest and drain rate, spool depth, and the lag of each replica (at most `max_series` replicas).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class History:
    """A bounded time series of status samples (the clock is the caller's: tests inject one)."""

    def __init__(self, *, step_s: float = 10.0, span_s: float = 3600.0, max_series: int = 16) -> None:
        self.step_s, self.span_s, self.max_series = step_s, span_s, max_series
        self.points: deque[dict[str, Any]] = deque(maxlen=max(2, int(span_s / step_s)))
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self.points.maxlen or 0

    def add(self, at: float, *, ingest_rate: float, drain_rate: float, spool_depth: int,
            lag_s: dict[str, float | None]) -> bool:
        """Record a sample taken at `at` (seconds); False if it came sooner than `step_s` after the last."""
        with self._lock:
            if self.points and at - self.points[-1]["t"] < self.step_s:
                return False
            lags = {ep: v for ep, v in sorted(lag_s.items())[: self.max_series]}
            self.points.append({"t": round(at, 3), "ingest": round(ingest_rate, 2), "drain": round(drain_rate, 2),
                                "spool": int(spool_depth), "lag": lags})
            return True

    def to_dict(self) -> dict[str, Any]:
        """The points, oldest first (JSON-friendly)."""
        with self._lock:
            return {"step_s": self.step_s, "span_s": self.span_s, "points": list(self.points)}
