"""The one board interface both rigs implement (the idea of pytest-embedded's DUT, kept small).

A test talks to a :class:`Board`: it waits for lines with :meth:`Board.expect`, sends lines with
:meth:`Board.send_line`, resets it, and, where the rig can, cuts its power, freezes it or reads the
rig's clock. Times are the board's clock in milliseconds: simulated time on the sim rig, the host's
monotonic clock on a serial rig. Every failure message ends with the board's last output lines.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod

from .lines import Line, LineLog

__all__ = ["Board", "BoardTimeout", "Line", "Unsupported"]

# Wall-clock guard on every wait, on top of the board-time timeout: a simulation on a loaded machine may
# run at a fraction of real time, but a dead one must not hang the suite.
WALL_SLACK = 20.0
WALL_EXTRA_S = 60.0


class BoardTimeout(AssertionError):
    """An expected line did not come in time. The message shows the board's last lines."""


class Unsupported(RuntimeError):
    """The rig cannot do this (for example cut the power of a board with no relay); tests skip on it."""


class Board(ABC):
    """A collector board on a rig. Subclasses feed :attr:`lines` and implement the primitives."""

    #: what this rig can do besides expect/send_line/reset: a subset of
    #: {"power", "freeze", "sim_time", "rtc", "adc", "i2c", "serial_cut", "eeprom"}
    capabilities: frozenset[str] = frozenset()

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines = LineLog()
        #: what arrives at the far end of the board's serial line (frames and console text): on a
        #: serial rig the same log as :attr:`lines`; on the sim rig, what came through the pty.
        self.wire = self.lines
        self.cursor = 0  # expect() searches from here and moves it past the match

    # ---- reading --------------------------------------------------------------------------------
    @abstractmethod
    def now_ms(self) -> float:
        """The board clock now (simulated ms on the sim rig)."""

    def expect(self, pattern: str | re.Pattern[str], timeout: float = 10.0, *, start: int | None = None) -> Line:
        """Wait for the next line matching ``pattern`` (``re.search``), at most ``timeout`` board seconds.

        Searches from :attr:`cursor` (or ``start``) and moves the cursor past the match, like pexpect.
        Raises :class:`BoardTimeout` with the board's last lines when it does not come.
        """
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        begin = self.cursor if start is None else start
        t0 = self.now_ms()
        wall_deadline = time.monotonic() + timeout * WALL_SLACK + WALL_EXTRA_S
        while True:
            seen = len(self.lines)
            found = self.lines.find(rx, begin)
            if found:
                self.cursor = found.index + 1
                return found
            if self.lines.closed_reason:
                self._fail(f"waiting for /{rx.pattern}/: {self.lines.closed_reason}")
            if self.now_ms() - t0 > timeout * 1000:
                self._fail(f"no line matching /{rx.pattern}/ within {timeout:g} s of board time")
            if time.monotonic() > wall_deadline:
                self._fail(f"no line matching /{rx.pattern}/ within {timeout * WALL_SLACK + WALL_EXTRA_S:g} s of wall time")
            self.lines.wait_new(seen, 0.2)

    def expect_all(self, pattern: str | re.Pattern[str], count: int, timeout: float) -> list[Line]:
        """The next ``count`` lines matching ``pattern``, each within ``timeout`` board seconds."""
        return [self.expect(pattern, timeout) for _ in range(count)]

    def lines_matching(self, pattern: str | re.Pattern[str], start: int = 0) -> list[Line]:
        """Every line printed so far (from index ``start``) that matches ``pattern``."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        out = []
        for line in self.lines.since(start):
            m = rx.search(line.text)
            if m:
                out.append(Line(line.text, line.ms, line.index, m))
        return out

    def wait(self, seconds: float) -> float:
        """Let ``seconds`` of board time pass (simulated time on the sim rig); return the board time then."""
        end = self.now_ms() + seconds * 1000
        wall_deadline = time.monotonic() + seconds * WALL_SLACK + WALL_EXTRA_S
        while (now := self.now_ms()) < end:
            if time.monotonic() > wall_deadline:
                self._fail(f"board time did not advance {seconds:g} s")
            self.lines.wait_new(len(self.lines), 0.05)
        return now

    def mark(self) -> int:
        """Move the cursor to the end of what was printed so far and return it."""
        self.cursor = len(self.lines)
        return self.cursor

    def last_output(self, n: int = 30) -> str:
        tail = self.lines.tail(n)
        if not tail:
            return f"  (board {self.name} printed nothing)"
        return "\n".join(f"  [{line.ms:10.1f} ms] {line.text}" for line in tail)

    def _fail(self, what: str) -> None:
        raise BoardTimeout(f"board {self.name}: {what}\nlast lines of board {self.name}:\n{self.last_output()}")

    def check(self, condition: object, what: str) -> None:
        """``assert`` with the board's last lines in the message."""
        if not condition:
            raise AssertionError(f"board {self.name}: {what}\nlast lines of board {self.name}:\n{self.last_output()}")

    # ---- acting ---------------------------------------------------------------------------------
    def open_wire(self) -> LineLog:
        """Start receiving the board's serial line into :attr:`wire` (for a test playing the gateway)."""
        return self.wire

    def serial_link(self, connected: bool) -> None:
        """Unplug or replug the serial line between the board and the gateway."""
        raise Unsupported(f"board {self.name}: this rig cannot cut the serial line")

    @abstractmethod
    def send_line(self, text: str) -> None:
        """Send ``text`` and a newline to the board's serial port."""

    @abstractmethod
    def reset(self) -> None:
        """Reset the board (EEPROM and RTC keep their contents)."""

    def power(self, on: bool) -> None:
        """Cut or restore the board's power."""
        raise Unsupported(f"board {self.name}: this rig has no power control")

    def freeze(self, frozen: bool) -> None:
        """Stop the board's CPU where it is / let it continue (a hung board)."""
        raise Unsupported(f"board {self.name}: this rig cannot freeze a board")

    def close(self) -> None:  # noqa: B027 - optional for subclasses, nothing to release by default
        """Release the port or process behind the board."""
