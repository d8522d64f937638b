"""The gateway's side of the serial protocol (protocol.md sections 4 and 5), played by a test.

Used where the gateway itself is not in the loop: it reads the frames that reach the far end of a board's
serial line, keeps each reading (in memory: the test double for the gateway's durable spool), and answers
every reading frame with the end-to-end ack ``!A {...}`` carrying, per (device, node, boot), the highest
``seq`` up to which it holds every reading. While "down" it neither reads nor acks, like an unplugged cable.
Parsing and framing come from ``gateway.protocol``, the gateway's own code.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.protocol import Reading, Rejected, frame, parse_frame, parse_reading

from .board import Board

__all__ = ["GatewayLink", "Received"]


@dataclass(frozen=True)
class Received:
    """A reading frame as received: the parsed reading, and the board time the line arrived at."""

    reading: Reading
    ms: float

    @property
    def identity(self) -> tuple[str, str, int, int]:
        r = self.reading
        return (r.device, r.node, r.boot, r.seq)


class GatewayLink:
    """Reads ``board.wire`` in a thread; acks what it holds. Use as a context manager."""

    def __init__(self, board: Board, site: str = "hil", clock: Callable[[], int] | None = None) -> None:
        self.board = board
        self.site = site
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.received: list[Received] = []  # every reading frame, in arrival order, duplicates included
        self.held: dict[tuple[str, str, int, int], Received] = {}  # one per identity (the "database")
        self.acks: list[dict] = []
        self.rejected: list[str] = []
        self.up = True
        self.cuts = 0  # each unplug may cut a line in two: the gateway rejects the fragment (bad_frame)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GatewayLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        wire = self.board.open_wire()
        self._cursor = len(wire)
        self._thread = threading.Thread(target=self._run, name=f"link-{self.board.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def set_up(self, up: bool) -> None:
        """Plug (True) or unplug the line: physically where the rig can, and in any case stop reading."""
        try:
            self.board.serial_link(up)
        except Exception:  # noqa: BLE001 - a rig without a cuttable line: ignoring frames is the cut
            pass
        with self._cond:
            self.cuts += not up and self.up
            self.up = up
            self._cursor = len(self.board.wire)  # what was sent while down never arrived

    # ---- the protocol -----------------------------------------------------------------------------
    def _upto(self, dev: str, node: str, boot: int) -> int:
        seq = -1
        while (dev, node, boot, seq + 1) in self.held:
            seq += 1
        return seq

    def _run(self) -> None:
        wire = self.board.wire
        while not self._stop.is_set():
            with self._cond:
                lines = wire.since(self._cursor)
                self._cursor += len(lines)
                up = self.up
            for line in lines if up else []:
                self._handle(line.text, line.ms)
            wire.wait_new(self._cursor, 0.1)

    def _handle(self, text: str, ms: float) -> None:
        try:
            parsed = parse_frame(text)
        except Rejected as e:
            with self._cond:
                self.rejected.append(f"{e}: {text}")
            return
        if parsed is None or parsed[0] != "R":
            return
        try:
            reading = parse_reading(parsed[1].encode(), site=self.site, received_ms=self.clock())
        except Rejected as e:
            with self._cond:
                self.rejected.append(f"{e}: {text}")
            return
        got = Received(reading, ms)
        with self._cond:
            self.received.append(got)
            self.held.setdefault(got.identity, got)
            upto = self._upto(reading.device, reading.node, reading.boot)
            self._cond.notify_all()
        if upto >= 0:  # no ack before seq 0 is held (section 5)
            ack = {"v": 1, "dev": reading.device, "node": reading.node, "boot": reading.boot, "upto": upto,
                   "t": self.clock()}
            self.board.send_line(frame("A", json.dumps(ack, separators=(",", ":"))))
            with self._cond:
                self.acks.append(ack)

    # ---- waiting ----------------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[GatewayLink], bool], timeout: float,
                 what: str | Callable[[], str]) -> None:
        """Wait (wall clock) until ``predicate(self)`` holds; fail with ``what`` (a text, or a function
        giving one when the wait failed) and the board's last lines."""
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self), timeout)
        if not ok:
            text = what() if callable(what) else what
            self.board.check(ok, f"link: timed out after {timeout:g} s waiting for {text}; "
                                 f"held {len(self.held)} readings, rejected {self.rejected[-3:]}")

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.received)
