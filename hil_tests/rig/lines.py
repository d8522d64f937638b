"""A thread-safe log of the lines a board printed, each with the time it was printed."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    """One line a board printed: its text (no line ending), the board time in ms, and the regex match."""

    text: str
    ms: float
    index: int
    match: re.Match[str] | None = None


class LineLog:
    """Append-only list of lines with a condition variable, so readers can wait for new ones."""

    def __init__(self) -> None:
        self._lines: list[Line] = []
        self._cond = threading.Condition()
        self.closed_reason: str | None = None

    def append(self, text: str, ms: float) -> None:
        with self._cond:
            self._lines.append(Line(text, ms, len(self._lines)))
            self._cond.notify_all()

    def close(self, reason: str) -> None:
        """No more lines will come (the board's process or port went away)."""
        with self._cond:
            self.closed_reason = reason
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._lines)

    def since(self, index: int) -> list[Line]:
        with self._cond:
            return self._lines[index:]

    def tail(self, n: int) -> list[Line]:
        with self._cond:
            return self._lines[-n:]

    def find(self, pattern: re.Pattern[str], start: int) -> Line | None:
        """The first line at or after ``start`` that matches ``pattern`` (``re.search``)."""
        with self._cond:
            for line in self._lines[start:]:
                m = pattern.search(line.text)
                if m:
                    return Line(line.text, line.ms, line.index, m)
        return None

    def wait_new(self, seen: int, timeout: float) -> None:
        """Block until there are more than ``seen`` lines, the log is closed, or ``timeout`` s passed."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._lines) > seen or self.closed_reason is not None, timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)
