"""What each collector sent lately, kept in memory with fixed bounds: the input for the device tables.

`ActivityTracker` sees every valid reading as it is handed to the spool writer (`wrap(writer)` puts it in
front of the writer the ingests use). That is the one place every reading passes with its unit, clock and
`cached` flag, without reading the spool back (the spool keeps only a per-stream watermark, not times or
units) and without touching the ingest, spool or drain code. A reading refused there (spool full) comes
again later; the tracker counts a sequence number once per (device, node, boot), so redeliveries and
duplicates do not inflate the counts.

`PairTracker` turns the pairs' statuses over time into takeovers and hand-backs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gateway.protocol import Reading
from gateway.status.model import NodeActivity, PairSwitch

MINUTES = 60  # readings are counted per minute over the last hour


class _Node:
    __slots__ = ("device", "node", "site", "boot", "seq", "ts", "received_ms", "value", "unit", "clock",
                 "replayed", "boots", "minute", "counts")

    def __init__(self, device: str, node: str) -> None:
        self.device, self.node = device, node
        self.site = ""
        self.boot: int | None = None
        self.seq: int | None = None
        self.ts: int | None = None
        self.received_ms: int | None = None
        self.value: float | None = None
        self.unit = ""
        self.clock = ""
        self.replayed = 0
        self.boots: dict[int, int] = {}  # boot -> highest seq seen (the last few boots only)
        self.minute = [-1] * MINUTES  # ring of (minute number, count): slot = minute % MINUTES
        self.counts = [0] * MINUTES


class ActivityTracker:
    """Per (device, node): newest reading, replayed count, readings per minute over the last hour."""

    def __init__(self, *, max_nodes: int = 10_000, max_boots: int = 4,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_nodes, self.max_boots, self.clock = max_nodes, max_boots, clock
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._last_ms: dict[str, int] = {}  # device -> newest received_ms of a new reading
        self._gap_ms: dict[str, int] = {}  # device -> largest gap between consecutive new readings
        self._lock = threading.Lock()
        self.untracked = 0  # readings of nodes beyond max_nodes (not tracked: the bound holds)

    def wrap(self, writer: Any) -> _TrackingWriter:
        """A stand-in for the spool writer that shows each reading to this tracker, then submits it."""
        return _TrackingWriter(writer, self)

    def saw_all(self, readings: Iterable[Reading]) -> None:
        """Count a read's worth of readings under one lock (called from the ingest threads)."""
        with self._lock:
            for r in readings:
                self._saw_locked(r)

    def _saw_locked(self, r: Reading) -> None:
        """Count one reading; the caller holds the lock."""
        key = (r.device, r.node)
        n = self._nodes.get(key)
        if n is None:
            if len(self._nodes) >= self.max_nodes:
                self.untracked += 1
                return
            n = self._nodes[key] = _Node(r.device, r.node)
        top = n.boots.get(r.boot, -1)
        if r.seq <= top:
            return  # seen already (a redelivery, a duplicate, a resend)
        n.boots[r.boot] = r.seq
        if len(n.boots) > self.max_boots:
            del n.boots[min(n.boots)]
        if r.cached:
            n.replayed += 1
        if n.boot is None or r.boot > n.boot or (r.boot == n.boot and r.seq > (n.seq or -1)):
            n.boot, n.seq, n.ts, n.value, n.unit, n.clock, n.site = (r.boot, r.seq, r.ts, r.value, r.unit,
                                                                    r.clock, r.site)
            n.received_ms = r.received_ms
        minute = r.received_ms // 60_000
        slot = minute % MINUTES
        if n.minute[slot] != minute:
            n.minute[slot], n.counts[slot] = minute, 0
        n.counts[slot] += 1
        if not r.cached:  # the coverage of live readings: cached replays fill gaps after the fact
            last = self._last_ms.get(r.device)
            if last is not None and r.received_ms > last:
                self._gap_ms[r.device] = max(self._gap_ms.get(r.device, 0), r.received_ms - last)
            if last is None or r.received_ms > last:
                self._last_ms[r.device] = r.received_ms

    def snapshot(self, now_ms: int | None = None) -> list[NodeActivity]:
        """The tracked nodes as plain values (readings per hour counted up to `now_ms`)."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        current = now_ms // 60_000
        with self._lock:
            return [NodeActivity(n.device, n.node, n.site, n.boot, n.seq, n.ts, n.received_ms, n.value, n.unit,
                                 n.clock, n.replayed,
                                 sum(c for m, c in zip(n.minute, n.counts, strict=True) if current - m < MINUTES))
                    for n in self._nodes.values()]

    def gaps_s(self) -> dict[str, float]:
        """Per device, the largest gap between consecutive live readings seen so far, in seconds."""
        with self._lock:
            return {dev: ms / 1000.0 for dev, ms in self._gap_ms.items()}

    def __len__(self) -> int:
        return len(self._nodes)


class _TrackingWriter:
    """Forwards everything to the spool writer; `submit` and `submit_all` show valid readings to the tracker first."""

    def __init__(self, writer: Any, tracker: ActivityTracker) -> None:
        self._writer, self._tracker = writer, tracker

    def submit(self, entry: Any) -> None:
        self.submit_all((entry,))

    def submit_all(self, entries: Sequence[Any]) -> None:
        self._tracker.saw_all(e.item for e in entries if type(e.item) is Reading)
        self._writer.submit_all(entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class PairTracker:
    """Follows each pair's active node from status to status and records the switches (bounded)."""

    def __init__(self, max_switches: int = 200) -> None:
        self._active: dict[str, str | None] = {}
        self._home: dict[str, str] = {}  # the first node seen active: going back to it is a hand-back
        self.switches: deque[PairSwitch] = deque(maxlen=max_switches)

    def observe(self, statuses: Iterable[Any], now_ms: int) -> None:
        """Feed the current statuses (objects with device, node, state, role)."""
        seen: dict[str, list[str]] = {}
        for st in statuses:
            if st.role in ("active", "standby"):
                nodes = seen.setdefault(st.device, [])
                if st.role == "active" and st.state != "offline":
                    nodes.append(st.node)
        for dev, active in seen.items():
            now = active[0] if len(active) == 1 else None
            before = self._active.get(dev)
            if now is not None:
                home = self._home.setdefault(dev, now)
                if before is not None and before != now:
                    self.switches.append(PairSwitch(dev, now_ms, "hand-back" if now == home else "takeover",
                                                    before, now))
                self._active[dev] = now
            # no single active node right now: remember who was active before, to name the next switch
