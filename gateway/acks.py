"""The ack point (`[ack] after`): when a collector is told it may forget a reading.

`spool` (the default) acks after the spool commit: the ingest publishes the spool's watermark itself and
nothing here runs. With `database` or `replica` the end-to-end ack is held back until the reading is in the
database: the `AckGate` thread asks the database, after every drain write and a few times a second, for the
contiguous `upto` of every stream a collector is waiting on, starting from the last `upto` acknowledged, and
publishes it through the connection the reading came in on. The watermark comes from the database, not from
this gateway's spool, so a gateway may acknowledge a stream whose earlier readings another gateway wrote
(several gateways in one MQTT shared subscription, docs/deployment.md). `database` asks the primary the
replication-aware writer verified; `replica` asks a healthy replica of it, so an ack means a second server
holds the reading. The MQTT PUBACK is not affected: it is always sent after the spool commit.

A reading refused by the protocol but with a valid identity is held in this gateway's quarantine, never in
the database: it counts as held for the stream's watermark here (shared/protocol.md section 5), so one bad
reading never stops a collector's acks.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pymysql

from gateway.protocol import Ack
from gateway.topology.conn import credentials_from_config, open_connection

log = logging.getLogger(__name__)

MODES = ("spool", "database", "replica")

StreamKey = tuple[str, str, int]  # (device, node, boot)
Range = tuple[StreamKey, int, int]  # (stream, lowest seq asked, highest seq asked)
Publisher = Callable[[str, Ack], None]  # (site, ack): queue an ack on the connection a reading came from

# Streams per statement: one OR of primary-key ranges, an index range scan each.
CHUNK = 50


class WatermarkSource(Protocol):
    """Where held readings are looked up: the primary, a replica, or the local SQLite database."""

    def present(self, ranges: Sequence[Range]) -> dict[StreamKey, list[int] | int]:
        """Per stream: the seqs in [lo, hi] that the database holds, or the int `hi` when all of them are there.

        Raises on a database error (the gate retries on its next round)."""

    def close(self) -> None:
        """Release the connection."""


def _where(ranges: Sequence[Range], ph: str) -> tuple[str, list]:
    cond = f"(device={ph} AND node={ph} AND boot={ph} AND seq BETWEEN {ph} AND {ph})"
    params: list = []
    for (device, node, boot), lo, hi in ranges:
        params += [device, node, boot, lo, hi]
    return " OR ".join([cond] * len(ranges)), params


def query_present(execute: Callable[[str, list], list[tuple]], ranges: Sequence[Range],
                  ph: str = "%s") -> dict[StreamKey, list[int] | int]:
    """`WatermarkSource.present` over any DB-API `execute(sql, params) -> rows` on the readings table.

    First one count per stream over its primary-key range (no rows travel when the range is complete, the
    usual case), then the seqs of the incomplete ranges only."""
    out: dict[StreamKey, list[int] | int] = {}
    for i in range(0, len(ranges), CHUNK):
        chunk = ranges[i:i + CHUNK]
        where, params = _where(chunk, ph)
        counts = {(d, n, int(b)): int(c) for d, n, b, c in
                  execute(f"SELECT device, node, boot, COUNT(*) FROM readings WHERE {where} "
                          "GROUP BY device, node, boot", params)}
        partial = []
        for key, lo, hi in chunk:
            if counts.get(key, 0) == hi - lo + 1:
                out[key] = hi
            elif counts.get(key, 0) == 0:
                out[key] = []
            else:
                partial.append((key, lo, hi))
        if partial:
            where, params = _where(partial, ph)
            for key, _lo, _hi in partial:
                out[key] = []
            for d, n, b, seq in execute(f"SELECT device, node, boot, seq FROM readings WHERE {where} "
                                        "ORDER BY device, node, boot, seq", params):
                out[(d, n, int(b))].append(int(seq))  # type: ignore[union-attr]
    return out


class SQLiteWatermarks:
    """The local SQLite readings database (`database.kind = "sqlite"`, ack mode `database`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def present(self, ranges: Sequence[Range]) -> dict[StreamKey, list[int] | int]:
        if self._conn is None:
            self._conn = sqlite3.connect(str(self.path), timeout=5, check_same_thread=False)
        conn = self._conn
        return query_present(lambda sql, params: list(conn.execute(sql, params)), ranges, "?")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class MySQLWatermarks:
    """The primary (`database`) or a healthy replica (`replica`) the replication-aware writer knows."""

    def __init__(self, sink, creds, *, database: str, replica: bool) -> None:  # noqa: ANN001 - ReplicatedSink, Credentials
        self.sink, self.creds, self.database, self.replica = sink, creds, database, replica
        self._conn = None
        self._endpoint: str | None = None
        self._rotation = 0

    def target(self) -> str | None:
        """The server to ask now: the writer's verified primary, or one of its healthy replicas."""
        primary = self.sink.primary
        if primary is None:
            return None
        if not self.replica:
            return primary.endpoint
        replicas = self.sink.confirmers
        if not replicas:
            return None
        if self._endpoint in replicas:
            return self._endpoint
        self._rotation += 1
        return replicas[self._rotation % len(replicas)]

    def present(self, ranges: Sequence[Range]) -> dict[StreamKey, list[int] | int]:
        endpoint = self.target()
        if endpoint is None:
            raise LookupError("no " + ("healthy replica" if self.replica else "verified primary") + " known yet")
        if endpoint != self._endpoint:
            self.close()
        try:
            if self._conn is None:
                self._conn = open_connection(endpoint, self.creds)
                self._endpoint = endpoint
            conn = self._conn

            def execute(sql: str, params: list) -> list[tuple]:
                with conn.cursor() as cur:
                    cur.execute(sql.replace("FROM readings", f"FROM `{self.database}`.readings"), params)
                    rows = list(cur.fetchall())
                conn.commit()  # end the read view: the next round must see rows committed since
                return rows

            return query_present(execute, ranges)
        except pymysql.MySQLError:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken: nothing to release
                pass
            self._conn = None
        self._endpoint = None


@dataclass
class _Stream:
    site: str
    publish: Publisher
    want: int = -1  # highest seq a collector sent us on this stream
    acked: int = -1  # highest upto acknowledged (published) by this gateway
    repeat: bool = False  # a duplicate arrived: send the current ack again even if unchanged
    waiting_since: float | None = None  # monotonic time since which a reading is waiting for its ack
    seen: float = 0.0  # monotonic time of the last reading
    local: set[int] = field(default_factory=set)  # quarantined seqs held in this gateway's spool


def advance(upto: int, present: list[int] | int, local: set[int]) -> int:
    """The contiguous watermark after `upto`, given the seqs the database holds (or all up to an int) and
    the seqs held locally in the quarantine."""
    if isinstance(present, int):
        upto = max(upto, present)
        seqs: set[int] = set()
    else:
        seqs = set(present)
    while upto + 1 in seqs or upto + 1 in local:
        upto += 1
    return upto


class AckGate(threading.Thread):
    """Holds end-to-end acks back until the database has the readings (ack modes `database`, `replica`)."""

    def __init__(self, mode: str, source: WatermarkSource, *, interval_s: float = 0.1,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name="ack-gate", daemon=True)
        if mode not in ("database", "replica"):
            raise ValueError(f"AckGate is for the modes database and replica, not {mode!r}")
        self.mode, self.source = mode, source
        self.interval_s = interval_s
        self.clock = clock
        self._streams: dict[StreamKey, _Stream] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self.error: BaseException | None = None
        self.last_error = ""
        # Called with (site, ack) just before an ack is handed to the connection: tests check there that the
        # database already holds what the ack covers.
        self.before_publish: Callable[[str, Ack], None] | None = None
        # Told (site, upto) per stream after each round's acks: the spool raises its own watermarks to them.
        self.on_acked: Callable[[dict[StreamKey, tuple[str, int]]], None] | None = None
        self.published = 0
        self.forget_after_s = 600.0  # a stream acked to its end and silent this long is forgotten (old boots)
        self._pruned_at = time.monotonic()

    # --- fed by the ingest (spool writer thread) and the drain --------------------------------------
    def want(self, site: str, key: StreamKey, seq: int, publish: Publisher) -> None:
        """A reading of `key` with `seq` is durably in the spool: ack it once the database holds it."""
        with self._lock:
            s = self._streams.get(key)
            if s is None:
                s = self._streams[key] = _Stream(site, publish)
            s.site, s.publish = site, publish  # ack on the connection the latest reading came in on
            s.seen = time.monotonic()
            if seq <= s.acked:
                s.repeat = True  # a resend of an acknowledged reading: its ack was lost, send it again
            if seq > s.want:
                s.want = seq
            if s.want > s.acked and s.waiting_since is None:
                s.waiting_since = time.monotonic()

    def held_locally(self, site: str, key: StreamKey, seq: int, publish: Publisher) -> None:
        """A refused reading with a valid identity is in this gateway's quarantine: it counts as held."""
        with self._lock:
            s = self._streams.get(key)
            if s is None:
                s = self._streams[key] = _Stream(site, publish)
            if seq > s.acked:
                s.local.add(seq)
        self.want(site, key, seq, publish)

    def wake(self) -> None:
        """The drain wrote a batch: look now rather than at the next tick."""
        self._wake.set()

    # --- what /healthz and /metrics show -------------------------------------------------------------
    def held(self) -> tuple[int, float]:
        """(streams waiting for an ack, seconds the oldest of them has waited)."""
        now = time.monotonic()
        with self._lock:
            waits = [now - s.waiting_since for s in self._streams.values() if s.waiting_since is not None]
        return len(waits), round(max(waits, default=0.0), 3)

    # --- the thread ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                self._wake.wait(self.interval_s)
                self._wake.clear()
                if self._halt.is_set():
                    break
                self.round()
        except BaseException as exc:  # the service's watchdog sees the dead thread and this reason
            log.exception("ack gate failed")
            self.error = exc
        finally:
            self.source.close()

    def round(self) -> int:
        """Look up every waiting stream once and publish what advanced; returns the acks published."""
        with self._lock:
            ranges = [(key, s.acked + 1, s.want) for key, s in self._streams.items() if s.want > s.acked]
            repeats = [key for key, s in self._streams.items() if s.repeat and s.want <= s.acked]
        found: dict[StreamKey, list[int] | int] = {}
        if ranges:
            try:
                found = self.source.present(ranges)
            except Exception as exc:  # the database is away: acks stay held, the collectors keep their caches
                message = f"{type(exc).__name__}: {exc}"
                if message != self.last_error:
                    log.warning("acks held back: cannot read the watermarks (%s)", message)
                self.last_error = message
                found = {}
            else:
                if self.last_error:
                    log.info("acks flowing again")
                self.last_error = ""
        out: list[tuple[Publisher, str, Ack]] = []
        now_ms = int(self.clock() * 1000)
        with self._lock:
            for key in [*found, *repeats]:
                s = self._streams.get(key)
                if s is None:
                    continue
                upto = advance(s.acked, found[key], s.local) if key in found else s.acked
                if upto > s.acked or (s.repeat and upto >= 0):
                    s.acked, s.repeat = upto, False
                    s.local = {q for q in s.local if q > upto}
                    out.append((s.publish, s.site, Ack(key[0], key[1], key[2], upto, now_ms)))
                # Still waiting (for the drain, or for another gateway to write the rest) keeps its age.
                s.waiting_since = None if s.want <= s.acked else (s.waiting_since or time.monotonic())
        for publish, site, ack in out:
            if self.before_publish:
                self.before_publish(site, ack)
            publish(site, ack)
        self.published += len(out)
        if out and self.on_acked:
            self.on_acked({(a.device, a.node, a.boot): (site, a.upto) for _p, site, a in out})
        self._prune()
        return len(out)

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        with self._lock:
            for key in [k for k, s in self._streams.items()
                        if s.want <= s.acked and not s.repeat and now - s.seen > self.forget_after_s]:
                del self._streams[key]


def make_gate(cfg, sink) -> AckGate | None:  # noqa: ANN001 - gateway.config.Config, gateway.sinks.base.Sink
    """The gate for `[ack] after` (None for `spool`: the ingest acks after the spool commit)."""
    mode = cfg.ack.after
    if mode == "spool":
        return None
    source: WatermarkSource
    if cfg.database.kind == "sqlite":
        source = SQLiteWatermarks(cfg.database.sqlite_path)
    else:
        source = MySQLWatermarks(sink, credentials_from_config(cfg.database), database=cfg.database.database,
                                 replica=mode == "replica")
    return AckGate(mode, source, interval_s=cfg.ack.poll_ms / 1000)
