"""Gathering the status model's inputs from a running gateway (the impure half of `gateway.status`).

`StatusService` belongs to one `Gateway`: it holds the reading tracker, the pair tracker and the chart
history, and a sampler thread that every `tick_s` seconds takes what is slow to read (counter rates, the
quarantine table, the topology when no failover monitor already looks at it). `document()` then builds the
status from those cached parts and the cheap in-memory ones, so a request costs no database round trip.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.client.reads import TopologySource
from gateway.status.activity import ActivityTracker, PairTracker
from gateway.status.history import History
from gateway.status.model import GatewayFacts, ReadsFacts, StatusInputs, Thresholds, build_status
from gateway.topology import analysis
from gateway.topology.conn import credentials_from_config
from gateway.topology.model import Snapshot

log = logging.getLogger(__name__)


def counter_total(counter: Any) -> float:
    """The sum of a prometheus_client counter over its labels."""
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


class StatusService:
    """The status of one gateway: trackers, history, a sampler thread, and `document()`."""

    def __init__(self, gateway: Any, *, clock: Callable[[], float] = time.time, tick_s: float = 1.0,
                 history_step_s: float = 10.0, thresholds: Thresholds | None = None) -> None:
        self.gateway = gateway
        self.clock, self.tick_s = clock, tick_s
        self.thresholds = thresholds or Thresholds()
        self.activity = ActivityTracker(clock=clock)
        self.pairs = PairTracker()
        self.history = History(step_s=history_step_s)
        self.started_ms = int(clock() * 1000)
        self._counts: deque[tuple[float, float, float]] = deque(maxlen=16)  # (t, received, written)
        self._rates = (0.0, 0.0)
        self._quarantine: tuple[dict[str, int], list[dict[str, Any]]] = ({}, [])
        self._snapshot: Snapshot | None = None
        self._snapshot_at = 0.0
        self._qconn: sqlite3.Connection | None = None
        self._source = None  # our own topology source, when no failover monitor runs in the gateway
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the sampler thread (one tick every `tick_s` seconds)."""
        self._thread = threading.Thread(target=self._run, name="iotgw-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sampler and close what it opened."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._source is not None:
            self._source.close()
        if self._qconn is not None:
            self._qconn.close()
            self._qconn = None

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                self.tick()
            except Exception:  # the status must never take the gateway down; the next tick tries again
                log.exception("status sampler")
            self._halt.wait(self.tick_s)

    # ------------------------------------------------------------------ sampling
    def tick(self, now: float | None = None) -> None:
        """Take one sample: rates, pairs, quarantine, topology, and a chart point when one is due."""
        now = self.clock() if now is None else now
        gw = self.gateway
        self._counts.append((now, counter_total(gw.metrics.received), counter_total(gw.metrics.written)))
        recent = [c for c in self._counts if now - c[0] <= 10.0] or [self._counts[-1]]
        t0, r0, w0 = recent[0]
        dt = now - t0
        self._rates = ((self._counts[-1][1] - r0) / dt, (self._counts[-1][2] - w0) / dt) if dt > 0 else (0.0, 0.0)
        self.pairs.observe(self.statuses(), int(now * 1000))
        self._quarantine = self._read_quarantine()
        snap = self._topology()
        lags: dict[str, float | None] = {}
        if snap is not None:
            primary = analysis.writer_primary(snap).primary
            lags = {h.server.endpoint: h.lag_s for h in analysis.replica_health(snap, primary)}
        self.history.add(now, ingest_rate=self._rates[0], drain_rate=self._rates[1], spool_depth=gw.spool.depth,
                         lag_s=lags)

    def _read_quarantine(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        if self._qconn is None:
            self._qconn = sqlite3.connect(f"file:{self.gateway.spool.path}?mode=ro", uri=True, timeout=1.0,
                                          check_same_thread=False)
        c = self._qconn
        by_reason = dict(c.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason").fetchall())
        recent = [{"id": i, "received_ms": ms, "source": src, "topic": topic, "reason": reason, "detail": detail,
                   "raw": bytes(raw).decode("utf-8", "replace")}
                  for i, ms, src, topic, reason, detail, raw in c.execute(
                      "SELECT id, received_ms, source, topic, reason, detail, substr(raw, 1, 160) FROM quarantine "
                      "ORDER BY id DESC LIMIT 8")]
        return by_reason, recent

    def _topology(self) -> Snapshot | None:
        """The monitor's latest snapshot when it runs here; otherwise our own discovery every few seconds."""
        gw = self.gateway
        if gw.cfg.database.kind != "mysql":
            return None
        monitor = getattr(gw, "monitor", None)
        if monitor is not None:
            self._snapshot = monitor.snapshot
            return self._snapshot
        now = time.monotonic()
        if self._snapshot is None or now - self._snapshot_at >= 2.0:
            if self._source is None:
                creds = credentials_from_config(gw.cfg.database).with_timeouts(connect=1.0, io=2.0)
                self._source = TopologySource(gw.cfg.database.servers, creds, refresh_s=0.0)
            self._snapshot, self._snapshot_at = self._source.snapshot(force=True), now
        return self._snapshot

    # ------------------------------------------------------------------ inputs and the document
    def statuses(self) -> list[Any]:
        """The collectors' statuses: the latest of each node, from the gateway's status book."""
        return list(self.gateway.statuses.snapshot())

    def inputs(self, now: float | None = None) -> StatusInputs:
        """Everything the model needs, at `now` (seconds; the service's clock by default)."""
        now = self.clock() if now is None else now
        now_ms = int(now * 1000)
        gw, cfg = self.gateway, self.gateway.cfg
        by_reason, recent = self._quarantine
        mqtt = None
        if gw.mqtt is not None:
            mqtt = {"connected": bool(gw.mqtt.connected), "error": gw.mqtt.last_error,
                    "url": gw.mqtt.settings.url}
        facts = GatewayFacts(
            ingest_rate=self._rates[0], drain_rate=self._rates[1], spool_depth=gw.spool.depth,
            spool_limit=gw.spool.max_readings, spool_full=gw.spool.full,
            spool_unconfirmed=gw.spool.depth - gw.spool.pending_count(), quarantine=by_reason,
            quarantine_recent=recent, broker_drops=_broker_drops(gw), mqtt=mqtt,
            serial={s.port_name: bool(s.connected) for s in gw.serial}, ack_mode=_ack_mode(cfg),
            database_available=gw.drain.available, database_error=gw.drain.last_error,
            workers_ok=gw.healthy())
        db = cfg.database
        monitor = getattr(gw, "monitor", None)
        events, failovers = _monitor_events(monitor)
        snapshot = monitor.snapshot if monitor is not None else self._snapshot  # the monitor's is the freshest
        return StatusInputs(
            now_ms=now_ms, started_ms=self.started_ms, statuses=self.statuses(),
            activity=self.activity.snapshot(now_ms), coverage_gaps_s=self.activity.gaps_s(),
            pair_switches=list(self.pairs.switches), gateway=facts, database_kind=db.kind,
            database_where=db.sqlite_path if db.kind == "sqlite" else "", snapshot=snapshot,
            monitor_events=events, failovers=failovers, monitor=monitor is not None,
            reads=ReadsFacts(db.read_strategy, db.read_shared_rotation, db.read_max_lag_s, db.read_max_lag_trx,
                             db.read_fallback_primary),
            history=self.history.to_dict(), thresholds=self.thresholds)

    def document(self) -> dict[str, Any]:
        """The status document (`/api/status`)."""
        return build_status(self.inputs())

    def alerts(self) -> list[dict[str, Any]]:
        """The current alerts (for `/healthz`)."""
        return self.document()["alerts"]


def _ack_mode(cfg: Any) -> str:
    ack = getattr(cfg, "ack", None)  # `[ack] after = …` once the later ack points exist; the spool today
    return str(getattr(ack, "after", "spool")) if ack is not None else "spool"


def _broker_drops(gw: Any) -> int | None:
    """Messages the broker dropped since this gateway started, when it watches `$SYS` (None when it does not)."""
    seen = getattr(gw.metrics, "broker_dropped_seen", None)  # growth of $SYS/.../dropped seen by this gateway
    return int(counter_total(seen)) if seen is not None else None


def _monitor_events(monitor: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The monitor's events (newest 20) and its failovers with their durations, oldest first."""
    if monitor is None:
        return [], []
    evs = list(monitor.events)
    results = list(monitor.failovers)
    quiet = ("suspect", "unconfirmed")  # every check while a primary is dying: kept out of the short list
    events = [{"at_ms": int(e.at * 1000), "kind": e.kind, "message": e.message} for e in evs
              if e.kind not in quiet][-20:]
    failovers = []
    for e in evs:
        if e.kind != "failover":
            continue
        d = e.data
        match = next((r for r in results if r.new_primary == d.get("new") and r.epoch == d.get("epoch")), None)
        failovers.append({"at_ms": int(e.at * 1000), "old": d.get("old", ""), "new": d.get("new", ""),
                          "epoch": d.get("epoch"), "seconds": round(match.seconds, 3) if match else None})
    return events, failovers[-10:]
