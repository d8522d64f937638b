"""Read selection: spread reads over the healthy replicas, skipping the dead, the stopped and the lagging.

The classic read-scaling recipe walked `SHOW SLAVE HOSTS` in server-id order and stored the last choice in
`read_scaling.current_slave` so several clients shared one rotation. We keep both ideas and drop its
defects: replicas are probed before use (that list keeps dead ones for a while), SQL is parameterised, the
cursor moves inside one transaction (`SELECT … FOR UPDATE`), connections are reused, and a topology with
no healthy replica gives a clear error (or the primary, if configured) instead of an exception from a loop.

Strategies: `round_robin` (by server id, wrapping), `weighted` (smooth weighted round robin: exact shares,
evenly interleaved), `least_lag` (the replicas with the smallest lag, taken in turn).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import pymysql

from gateway.client.retry import SmoothWeighted
from gateway.topology import analysis
from gateway.topology.conn import Credentials, open_connection
from gateway.topology.discovery import ProbeConnections, discover
from gateway.topology.model import Snapshot, endpoint, split_endpoint

STRATEGIES = ("round_robin", "weighted", "least_lag")


class NoReadableServer(RuntimeError):
    """No healthy replica (and no primary fallback); the message lists why each server was skipped."""


@dataclass(frozen=True)
class ReadTarget:
    """The server chosen for a read (the shape of a `read_scaling.current_slave` row)."""

    server_id: int
    host: str
    port: int
    is_primary: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


class TopologySource:
    """Snapshots of one topology, re-discovered when older than `refresh_s` or after `invalidate()`.

    Every server ever seen stays a seed, so the walk still finds the topology when the first seed dies.
    """

    def __init__(self, seeds: Iterable[str], creds: Credentials, refresh_s: float = 1.0) -> None:
        self.creds = creds
        self.refresh_s = refresh_s
        self._known = {endpoint(*split_endpoint(s)): None for s in seeds}
        if not self._known:
            raise ValueError("at least one seed server is needed")
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._at = 0.0
        self._probes = ProbeConnections()

    def close(self) -> None:
        """Close the probe connections kept between discoveries."""
        self._probes.close()

    def snapshot(self, force: bool = False) -> Snapshot:
        with self._lock:
            if not force and self._snap is not None and time.monotonic() - self._at < self.refresh_s:
                return self._snap
            known = list(self._known)
        snap = discover(known, self.creds, cache=self._probes)
        with self._lock:
            for s in snap.servers:
                self._known.setdefault(s.endpoint, None)
            self._snap, self._at = snap, time.monotonic()
        return snap

    def invalidate(self) -> None:
        """The next `snapshot()` probes the servers again (call it when a connection failed)."""
        with self._lock:
            self._snap = None


def _target(h: analysis.ReplicaHealth) -> ReadTarget:
    host, port = split_endpoint(h.server.report_endpoint or h.server.endpoint)
    return ReadTarget(h.server.server_id, host, port)


def _after(cursor: int, targets: list[ReadTarget]) -> ReadTarget:
    """The first target with a server id above `cursor`, wrapping to the lowest."""
    return next((t for t in targets if t.server_id > cursor), targets[0])


class LocalRotation:
    """The rotation cursor in this process only (the last server id chosen)."""

    shared = False

    def __init__(self) -> None:
        self._cursor = 0
        self._lock = threading.Lock()

    def choose(self, targets: list[ReadTarget], primary: ReadTarget | None) -> ReadTarget:
        with self._lock:
            chosen = _after(self._cursor, targets)
            self._cursor = chosen.server_id
        return chosen

    def close(self) -> None:
        pass


class SharedRotation:
    """The cursor in a table on the primary, so several processes share one rotation.

    One transaction per choice: lock the cursor row (`SELECT … FOR UPDATE`), pick the next healthy replica
    after it, write it back. The table keeps the classic recipe's columns (server_id, host, port) plus a
    key, and replicates like any table (a new primary has the cursor too). The account needs SELECT,
    INSERT, UPDATE and CREATE on the schema.
    """

    shared = True

    def __init__(self, creds: Credentials, schema: str = "read_scaling", table: str = "current_slave") -> None:
        if not (schema.replace("_", "").isalnum() and table.replace("_", "").isalnum()):
            raise ValueError(f"schema and table must be plain identifiers: {schema}.{table}")
        self.creds = creds
        self.table = f"`{schema}`.`{table}`"
        self.schema = schema
        self._conn: pymysql.connections.Connection | None = None
        self._conn_ep = ""
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def _connection(self, ep: str) -> pymysql.connections.Connection:
        if self._conn is None or self._conn_ep != ep:
            self.close()
            self._conn = open_connection(ep, self.creds, autocommit=False)
            self._conn_ep = ep
        if ep not in self._ready:
            with self._conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.schema}`")
                cur.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id TINYINT UNSIGNED NOT NULL PRIMARY KEY, "
                            "server_id INT UNSIGNED NOT NULL, host VARCHAR(255) NOT NULL, port INT UNSIGNED NOT NULL)"
                            " ENGINE=InnoDB")
                cur.execute(f"INSERT IGNORE INTO {self.table} (id, server_id, host, port) VALUES (1, 0, '', 0)")
            self._conn.commit()
            self._ready.add(ep)
        return self._conn

    def choose(self, targets: list[ReadTarget], primary: ReadTarget | None) -> ReadTarget:
        if primary is None:
            raise NoReadableServer("shared rotation needs the primary (its table lives there), and there is none")
        with self._lock:
            try:
                conn = self._connection(primary.endpoint)
                with conn.cursor() as cur:
                    cur.execute(f"SELECT server_id FROM {self.table} WHERE id = 1 FOR UPDATE")
                    row = cur.fetchone()
                    chosen = _after(int(row[0]) if row else 0, targets)
                    cur.execute(f"UPDATE {self.table} SET server_id = %s, host = %s, port = %s WHERE id = 1",
                                (chosen.server_id, chosen.host, chosen.port))
                conn.commit()
            except pymysql.MySQLError:
                self.close()
                raise
        return chosen

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already gone
                pass
            self._conn = None


class ReadSelector:
    """Chooses the server for the next read."""

    def __init__(self, source: TopologySource, strategy: str = "round_robin", *, max_lag_s: float | None = None,
                 max_lag_trx: int | None = None, fallback_primary: bool = False,
                 weights: dict[str, int] | None = None, rotation: LocalRotation | SharedRotation | None = None) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if strategy == "weighted" and rotation is not None and rotation.shared:
            raise ValueError("the weighted strategy keeps its state per process; use round_robin with a shared rotation")
        self.source = source
        self.strategy = strategy
        self.max_lag_s, self.max_lag_trx = max_lag_s, max_lag_trx
        self.fallback_primary = fallback_primary
        self.weights = {endpoint(*split_endpoint(k)): v for k, v in (weights or {}).items()}
        self.rotation = rotation or LocalRotation()
        self._weighted_rotation: SmoothWeighted[int] = SmoothWeighted()  # by server id
        self.last_skipped: list[tuple[str, tuple[str, ...]]] = []

    def healthy(self, snap: Snapshot | None = None) -> tuple[list[analysis.ReplicaHealth], ReadTarget | None]:
        """The healthy replicas (by server id) and the primary, from the current snapshot."""
        snap = snap or self.source.snapshot()
        primary = analysis.writer_primary(snap).primary
        health = analysis.replica_health(snap, primary, self.max_lag_s, self.max_lag_trx)
        self.last_skipped = [(h.server.endpoint, h.reasons) for h in health if not h.healthy]
        p = None
        if primary is not None:
            host, port = split_endpoint(primary.report_endpoint or primary.endpoint)
            p = ReadTarget(primary.server_id, host, port, is_primary=True)
        return [h for h in health if h.healthy], p

    def next(self) -> ReadTarget:
        """The server for the next read; NoReadableServer if none is usable."""
        good, primary = self.healthy()
        if not good:
            if self.fallback_primary and primary is not None:
                return primary
            why = "; ".join(f"{ep}: {', '.join(r)}" for ep, r in self.last_skipped) or "no replicas"
            raise NoReadableServer(f"no healthy replica ({why})")
        if self.strategy == "weighted":
            return self._weighted(good)
        if self.strategy == "least_lag":
            def lag(h: analysis.ReplicaHealth) -> tuple[int, int]:
                return (h.lag_s or 0, h.lag_trx or 0)
            best = min(lag(h) for h in good)
            good = [h for h in good if lag(h) == best]
        return self.rotation.choose([_target(h) for h in good], primary)

    def _weighted(self, good: list[analysis.ReplicaHealth]) -> ReadTarget:
        """Smooth weighted round robin (as in nginx): shares exact over a cycle, picks evenly interleaved."""
        weights = {h.server.server_id: max(0, self.weights.get(h.server.endpoint, self.weights.get(
            h.server.report_endpoint, 1))) for h in good}
        try:
            chosen_id = self._weighted_rotation.pick(weights)
        except ValueError:
            raise NoReadableServer("every healthy replica has weight 0") from None
        return next(_target(h) for h in good if h.server.server_id == chosen_id)

    def close(self) -> None:
        self.rotation.close()
        self.source.close()
