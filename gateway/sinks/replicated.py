"""The writer that follows the primary through a replicated topology, and confirms batches on a replica.

Write path (the drain thread): a batch goes only to the server last verified as the primary by the epoch
rule (`gateway.topology.analysis.writer_primary`), after a one-round-trip check on that very connection
(`read_only` off, same server id, same highest epoch). Any error, a read-only refusal (1290/1836) or a changed
topology drops the connection; the next write rediscovers, polling with jittered backoff for a short while
(`resolve_wait_s`) so a promotion is picked up within a fraction of a second, then raises `SinkUnavailable`
so the drain keeps spooling and backs off.

Confirmation (a background thread): each batch's token names the epoch, the primary's server id and the
batch's GTID position. The thread waits (`MASTER_GTID_WAIT`) on a healthy data-bearing replica of the
current primary for the newest position written, then checks that the replica still holds our epoch: after
a failover the new primary's GTIDs make an old `0-1-N` look applied (MariaDB compares sequence numbers only),
and any replica that applied anything of the new primary also holds its newer epoch row, so the check
rejects exactly those false confirmations. `confirmed()` only compares tokens with the position confirmed so
far: it never blocks the drain. After every change of primary `take_requeue_signal()` says so once and the
drain writes every unconfirmed batch again, idempotently; a token naming another primary (a batch an earlier
run left unconfirmed) raises the same signal as soon as `confirmed()` sees it.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pymysql
from pymysql.constants import CLIENT

from gateway.sinks.base import Sink, SinkUnavailable, WriteOutcome
from gateway.sinks.mysql import (
    INSERT_PREFIX,
    SESSION_OPTIONS,
    build_values_sql,
    init_schema,
    no_backslash_escapes,
    risky_grants,
    upsert_statuses,
)
from gateway.spool import ReadingRow
from gateway.topology.analysis import healthy_replicas, writer_primary
from gateway.topology.conn import Credentials, credentials_from_config, open_connection
from gateway.topology.dialect import dialect_for
from gateway.topology.discovery import ProbeConnections, discover
from gateway.topology.epoch import write_epoch
from gateway.topology.gtid import Position
from gateway.topology.model import Snapshot, endpoint, split_endpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrimaryRef:
    """The primary the writer currently trusts: the epoch that named it and who it is."""

    endpoint: str
    server_id: int
    epoch: int
    flavor: str = "mariadb"


def make_token(p: PrimaryRef, position: str) -> str:
    """`e<epoch>/<server id>/<GTID position>` (the position may hold commas: it comes last)."""
    return f"e{p.epoch}/{p.server_id}/{position}"


def parse_token(token: str) -> tuple[int, int, str]:
    """(epoch, server id, position) of a token made by `make_token`."""
    epoch, server_id, position = token.split("/", 2)
    return int(epoch.lstrip("e")), int(server_id), position


@dataclass(frozen=True)
class WriterSettings:
    """How the writer behaves, fixed for its life (the keywords of `ReplicatedSink`)."""

    database: str = "iot"
    resolve_wait_s: float = 2.0  # how long a write polls for a primary before it raises SinkUnavailable
    verify_interval_s: float = 1.0  # how often the watch thread checks the epoch rule again
    confirm_wait_s: float = 0.25  # one wait for a position on a replica
    auto_init: bool = True  # create or upgrade the schema on every server the writer makes its primary


class _Servers:
    """Every server the writer has seen, and the probe connections kept to them.

    A server once seen stays known: a restarted old primary must be probed to be refused.
    """

    def __init__(self, seeds: Iterable[str]) -> None:
        self._known: dict[str, None] = {endpoint(*split_endpoint(s)): None for s in seeds}
        if not self._known:
            raise ValueError("ReplicatedSink needs at least one seed server")
        self._lock = threading.Lock()  # the drain thread and the watch thread both discover
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="iotgw-writer-probe")
        self._probes = ProbeConnections()  # kept open: a rediscovery during a failover is then a few ms

    def snapshot(self, creds: Credentials) -> Snapshot:
        """Probe every known server; the servers they report become known too."""
        with self._lock:
            known = list(self._known)
        snap = discover(known, creds, pool=self._pool, cache=self._probes)
        with self._lock:
            for s in snap.servers:
                self._known.setdefault(s.endpoint, None)
        return snap

    def close(self) -> None:
        self._probes.close()
        self._pool.shutdown(wait=False)


@dataclass
class _PrimaryLink:
    """The write side: the primary the writer trusts and its connection (used by the drain thread; `primary` and
    `stale` are shared with the watch thread under the sink's lock)."""

    primary: PrimaryRef | None = None
    conn: pymysql.connections.Connection | None = None
    stale: bool = True  # find and verify the primary again before the next write
    last_gtid: str = ""  # @@last_gtid after the previous batch: the same again means the batch wrote no event
    switches: int = 0  # changes of primary, the first one included
    switched_at: float = 0.0  # time.monotonic() of the last change of primary
    # What opening a primary did once: the schema per (endpoint, server id), the warning about risky grants.
    schema_ready: set[tuple[str, int]] = field(default_factory=set)
    grants_checked: bool = False

    def drop(self) -> None:
        """Close the connection (the primary stays named until the next resolve)."""
        if self.conn is not None:
            _quiet_close(self.conn)
            self.conn = None


@dataclass
class _Confirmation:
    """The confirm side: how far a replica has applied the current primary's writes (the positions, confirmers
    and requeue flag are shared under the sink's lock; the replica connections belong to the watch thread)."""

    target: Position | None = None  # newest position written to the current primary
    confirmed: Position | None = None  # position a replica of the current primary has applied
    confirmers: list[str] = field(default_factory=list)  # healthy replicas of the current primary, last discovered
    requeue: bool = False  # the drain must write every unconfirmed batch again (told once)
    rotation: int = 0  # which confirmer to wait on next: moves on past a slow or dead one
    checks: int = 0  # waits done on replicas (tests wait on this instead of sleeping)
    replica_conns: dict[str, pymysql.connections.Connection] = field(default_factory=dict)

    def forget_positions(self) -> None:
        """A new primary: positions of the old one mean nothing there."""
        self.target = self.confirmed = None

    def wrote(self, pos: Position) -> None:
        self.target = pos if self.target is None else self.target.merged(pos)  # type: ignore[arg-type]

    def applied(self, pos: Position) -> None:
        self.confirmed = pos if self.confirmed is None else self.confirmed.merged(pos)  # type: ignore[arg-type]

    def replica(self, ep: str, creds: Credentials, io_timeout: float) -> pymysql.connections.Connection:
        """The kept connection to replica `ep` (opened on first use)."""
        conn = self.replica_conns.get(ep)
        if conn is None:
            conn = open_connection(ep, creds, io_timeout=io_timeout)
            self.replica_conns[ep] = conn
        return conn

    def drop_replica(self, ep: str) -> None:
        conn = self.replica_conns.pop(ep, None)
        if conn is not None:
            _quiet_close(conn)

    def close(self) -> None:
        for conn in self.replica_conns.values():
            _quiet_close(conn)
        self.replica_conns.clear()


class ReplicatedSink(Sink):
    """Writes batches to the verified primary of a replicated topology and confirms them on a replica.

    State, one object per job: `settings` (fixed), `_servers` (discovery), `_link` (the write side: which primary,
    its connection), `_confirm` (the confirm side: positions written and applied, the requeue signal), and the
    watch thread (`_thread`, woken by `_wake`, ended by `_closed`). `_lock` guards what both threads share.
    """

    values_prefix = INSERT_PREFIX  # the drain may hand over batches rendered natively (prepare_values)

    def __init__(self, seeds: Iterable[str], creds: Credentials, *, database: str = "iot", confirm: bool = True,
                 resolve_wait_s: float = 2.0, verify_interval_s: float = 1.0, confirm_wait_s: float = 0.25,
                 auto_init: bool = True, on_switch: Callable[[PrimaryRef], None] | None = None) -> None:
        self.creds = creds
        self.settings = WriterSettings(database, resolve_wait_s, verify_interval_s, confirm_wait_s, auto_init)
        self.needs_confirmation = confirm
        self.on_switch = on_switch
        self._servers = _Servers(seeds)
        self._link = _PrimaryLink()
        self._confirm = _Confirmation()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the drain's interface
    @property
    def primary(self) -> PrimaryRef | None:
        return self._link.primary

    @property
    def confirmers(self) -> list[str]:
        """The healthy replicas of the current primary (endpoints), as last discovered."""
        with self._lock:
            return list(self._confirm.confirmers)

    @property
    def switches(self) -> int:
        """Changes of primary so far, the first one included."""
        return self._link.switches

    @property
    def switched_at(self) -> float:
        """time.monotonic() of the last change of primary (0.0: none yet)."""
        return self._link.switched_at

    @property
    def confirm_checks(self) -> int:
        """Waits done on replicas so far (tests wait on this instead of sleeping)."""
        return self._confirm.checks

    def write(self, rows: Sequence[ReadingRow]) -> WriteOutcome:
        """Write one batch to the verified primary; raise SinkUnavailable if there is none right now."""
        return self.write_prepared(self.prepare(rows))

    def prepare(self, rows: Sequence[ReadingRow]) -> _Prepared:
        """The batch's INSERT, built ahead (by the drain, while the previous batch is being written)."""
        conn = self._link.conn
        nbe = no_backslash_escapes(conn) if conn is not None else False
        return _Prepared(list(rows), build_values_sql(rows, no_backslash_escapes=nbe), nbe)

    def prepare_values(self, sql: str) -> _Prepared:
        """A batch the native reader rendered: its text escapes to itself under either rule (see _Prepared)."""
        return _Prepared([], sql, None)

    def write_prepared(self, prepared: object) -> WriteOutcome:
        """Write a prepared batch to the verified primary in two round trips: (check; INSERT), then
        (COMMIT; GTID read). The check runs in the batch's own transaction, which commits only if the check
        passed: the same guarantee as checking first, one round trip fewer per batch."""
        assert isinstance(prepared, _Prepared)
        p, conn = self._ready_primary()
        sql = prepared.sql
        if prepared.no_backslash_escapes not in (None, no_backslash_escapes(conn)):  # built for another rule
            sql = build_values_sql(prepared.rows, no_backslash_escapes=not prepared.no_backslash_escapes)
        try:
            with conn.cursor() as cur:
                cur.execute(f"{dialect_for(p.flavor).writer_check_sql()};\n{sql}")
                read_only, server_id, epoch = cur.fetchone()
                if read_only or server_id != p.server_id or int(epoch or 0) != p.epoch:
                    try:
                        cur.nextset()  # the INSERT's outcome (on a read-only server, a refusal)
                    except pymysql.MySQLError:
                        pass
                    conn.rollback()
                    self._invalidate()
                    raise SinkUnavailable(f"{p.endpoint} is no longer the primary of epoch {p.epoch} "
                                          f"(read_only={read_only}, server {server_id}, epoch {epoch})")
                cur.nextset()  # the INSERT's outcome: raises its error, if any
                cur.execute(f"COMMIT;\n{dialect_for(p.flavor).last_write_sql()}")
                cur.nextset()
                gtid, whole = cur.fetchone()
                # A batch that wrote no binlog event (all rows were there) keeps an older @@last_gtid
                # (MySQL has none): wait for the server's whole position instead.
                position = gtid if gtid and gtid != self._link.last_gtid else whole
                self._link.last_gtid = gtid
        except pymysql.MySQLError as exc:
            self._invalidate()
            raise SinkUnavailable(f"{p.endpoint}: {exc}") from exc
        if not self.needs_confirmation:
            return WriteOutcome(None)
        d = dialect_for(p.flavor)
        with self._lock:
            if self._link.primary == p:
                self._confirm.wrote(d.parse_position(position))
        self._wake.set()
        return WriteOutcome(make_token(p, position))

    def write_statuses(self, statuses: Sequence) -> None:
        """Upsert collector statuses on the verified primary (small, rare: not confirmed on a replica)."""
        if not statuses:
            return
        p, conn = self._ready_primary()
        try:
            with conn.cursor() as cur:
                cur.execute(dialect_for(p.flavor).writer_check_sql())
                read_only, server_id, epoch = cur.fetchone()
                if read_only or server_id != p.server_id or int(epoch or 0) != p.epoch:
                    conn.rollback()
                    self._invalidate()
                    raise SinkUnavailable(f"{p.endpoint} is no longer the primary of epoch {p.epoch}")
            upsert_statuses(conn, statuses)
        except pymysql.MySQLError as exc:
            self._invalidate()
            raise SinkUnavailable(f"{p.endpoint}: {exc}") from exc

    def confirmed(self, tokens: Sequence[str]) -> list[str]:
        """Tokens of the current primary whose position a replica has applied (never blocks)."""
        with self._lock:
            p, done = self._link.primary, self._confirm.confirmed
        if p is None:
            if tokens:  # batches of an earlier run, and no primary known yet to judge them: write them again
                with self._lock:
                    self._confirm.requeue = True
            return []
        if done is None:
            done = dialect_for(p.flavor).parse_position("")
        d = dialect_for(p.flavor)
        out, foreign = [], False
        for token in tokens:
            epoch, server_id, position = parse_token(token)
            if epoch != p.epoch or server_id != p.server_id:
                foreign = True  # written to another primary (before a failover, or by an earlier run)
            elif done.contains(d.parse_position(position)):  # type: ignore[arg-type]
                out.append(token)
        if foreign:
            with self._lock:
                self._confirm.requeue = True  # never confirmable here: the drain writes them again
        return out

    def take_requeue_signal(self) -> bool:
        with self._lock:
            signal, self._confirm.requeue = self._confirm.requeue, False
        return signal

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.settings.confirm_wait_s + self.creds.io_timeout + 5)
        self._link.drop()
        self._confirm.close()
        self._servers.close()

    # ------------------------------------------------------------------ finding and verifying the primary
    def _ready_primary(self) -> tuple[PrimaryRef, pymysql.connections.Connection]:
        """The verified primary and its connection, resolved first if the link is stale (the drain thread)."""
        self._start_thread()
        if self._link.stale or self._link.conn is None:
            self._resolve()
        p, conn = self._link.primary, self._link.conn
        assert p is not None and conn is not None
        return p, conn

    def _invalidate(self) -> None:
        self._link.stale = True
        self._link.drop()

    def _resolve(self) -> None:
        """Find and open the primary, polling with jittered backoff for up to `resolve_wait_s`."""
        self._link.drop()
        deadline = time.monotonic() + self.settings.resolve_wait_s
        delay = 0.02  # a rediscovery costs a few ms over kept connections: poll often, with jitter
        while True:
            started = time.monotonic()
            snap = self._servers.snapshot(self.creds)
            decision = writer_primary(snap)
            log.debug("resolve: discovery %.3f s: %s", time.monotonic() - started, decision.reason)
            if decision.primary is not None:
                try:
                    self._open(snap, decision.primary, decision.epoch, decision.adopt)
                    return
                except (pymysql.MySQLError, _Refused) as exc:
                    reason = f"{decision.primary.endpoint}: {exc}"
            else:
                reason = decision.reason
            if self._closed.is_set() or time.monotonic() + delay > deadline:
                raise SinkUnavailable(f"no primary to write to: {reason}")
            self._closed.wait(random.uniform(delay / 2, delay))  # jitter: many gateways do not probe in step
            delay = min(delay * 2, 0.2)

    def _open(self, snap: Snapshot, primary, epoch: int, adopt: bool) -> None:  # noqa: ANN001 - ServerState
        # Multi-statement queries: a batch is two round trips (see write_prepared).
        conn = open_connection(primary.endpoint, self.creds, database="", autocommit=False,
                               client_flag=CLIENT.MULTI_STATEMENTS, **SESSION_OPTIONS)
        link = self._link
        try:
            if not link.grants_checked:
                link.grants_checked = True
                for grant in risky_grants(conn):
                    log.warning("database account %s can write through read_only (%s): a fenced old primary "
                                "would accept its writes; use a plain account (docs/configuration.md)",
                                self.creds.user, grant)
            with conn.cursor() as cur:
                if adopt:
                    rhost, rport = split_endpoint(primary.report_endpoint or primary.endpoint)
                    write_epoch(cur, 1, primary.server_id, rhost, rport, "iotgw writer: adopted topology")
                    conn.commit()
                    epoch = 1
                    log.warning("adopted %s as primary: wrote epoch 1 (the topology had none)", primary.endpoint)
                cur.execute(dialect_for(primary.flavor).writer_check_sql())  # verify on this very connection: the snapshot is already a little old
                read_only, server_id, held = cur.fetchone()
                if read_only or server_id != primary.server_id or int(held or 0) != epoch:
                    raise _Refused(f"changed while connecting (read_only={read_only}, server {server_id}, "
                                   f"epoch {held} != {epoch})")
            key = (primary.endpoint, primary.server_id)
            if self.settings.auto_init and key not in link.schema_ready:
                init_schema(conn, self.settings.database)
                link.schema_ready.add(key)
            else:
                conn.select_db(self.settings.database)
            conn.commit()
        except BaseException:
            _quiet_close(conn)
            raise
        new = PrimaryRef(primary.endpoint, primary.server_id, epoch, primary.flavor)
        confirmers = [h.server.endpoint for h in healthy_replicas(snap, primary)]
        with self._lock:
            old = link.primary
            if old != new:
                # Forget positions of the old primary and have the drain write unconfirmed batches again.
                # (Not for the first primary: batches an earlier run left unconfirmed are found by
                # `confirmed()`, which asks for a requeue when a token names another primary.)
                self._confirm.requeue = old is not None
                self._confirm.forget_positions()
                link.switches += 1
                link.switched_at = time.monotonic()
            link.primary, link.conn, link.stale = new, conn, False
            self._confirm.confirmers = confirmers
            link.last_gtid = ""
        if old != new:
            log.warning("writing to %s (epoch %d, server %d)%s", new.endpoint, new.epoch, new.server_id,
                        f", was {old.endpoint}" if old else "")
            if self.on_switch:
                self.on_switch(new)

    # ------------------------------------------------------------------ background: verify and confirm
    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="iotgw-writer-watch", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        next_check = time.monotonic() + self.settings.verify_interval_s
        while not self._closed.is_set():
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.settings.verify_interval_s
                    self._verify()
                busy = self._confirm_once()
            except Exception:  # the watcher must survive anything a server does; the write path re-checks
                if self._closed.is_set() or sys.is_finalizing():
                    return  # closed, or the interpreter is exiting under an unclosed sink
                log.exception("writer watch thread")
                busy = False
            if not busy:
                self._wake.wait(max(0.0, min(0.2, next_check - time.monotonic())))
                self._wake.clear()

    def _verify(self) -> None:
        """Rediscover; mark the primary stale if the epoch rule now names another (or none)."""
        with self._lock:
            p = self._link.primary
        if p is None:
            return
        snap = self._servers.snapshot(self.creds)
        decision = writer_primary(snap)
        chosen = decision.primary
        with self._lock:
            if self._link.primary != p:
                return
            if chosen is None or chosen.server_id != p.server_id or decision.epoch != p.epoch:
                log.warning("primary %s (epoch %d) no longer verified: %s", p.endpoint, p.epoch, decision.reason)
                self._link.stale = True
            else:
                self._confirm.confirmers = [h.server.endpoint for h in healthy_replicas(snap, chosen)]

    def _confirm_once(self) -> bool:
        """Wait briefly on one replica for the newest written position; True if there was work."""
        c = self._confirm
        with self._lock:
            p, target, done, confirmers = self._link.primary, c.target, c.confirmed, list(c.confirmers)
        if p is None or target is None or not confirmers or (done is not None and done.contains(target)):  # type: ignore[arg-type]
            return False
        ep = confirmers[c.rotation % len(confirmers)]
        d = dialect_for(p.flavor)
        wait_s = self.settings.confirm_wait_s
        try:
            conn = c.replica(ep, self.creds, io_timeout=wait_s + self.creds.io_timeout)
            with conn.cursor() as cur:
                c.checks += 1
                cur.execute(*d.wait_for_gtid_sql(str(target), wait_s))
                if str(cur.fetchone()[0]) != "0":
                    c.rotation += 1  # this replica is slow: try another next time
                    return True
                # Applied, by sequence number. Ours only if nothing of a newer primary reached the replica
                # (it would hold the newer epoch row) and, on MariaDB, if its last GTID of each domain comes
                # from the server that wrote ours (a newer primary's GTIDs carry its own server id).
                cur.execute(d.confirm_check_sql())
                applied, held = cur.fetchone()
                held = int(held or 0)
        except pymysql.MySQLError:
            c.drop_replica(ep)
            c.rotation += 1
            return False  # idle a moment: a dead replica refuses at once, no hot loop
        same_source = d.same_writers(str(target), str(applied or ""))
        with self._lock:
            if self._link.primary == p and held == p.epoch and same_source:
                c.applied(target)
            else:
                self._link.stale = True  # a newer primary exists (or may): the write path must re-resolve
                return False  # and no hot loop on a replica that keeps answering "applied"
        if self.on_confirmed is not None:
            self.on_confirmed()
        return True


@dataclass(frozen=True)
class _Prepared:
    """A batch with its INSERT text, built for one escaping rule (None: valid under either, as the native reader's
    text is: its strings contain nothing either rule escapes)."""

    rows: list[ReadingRow]
    sql: str
    no_backslash_escapes: bool | None


class _Refused(Exception):
    """The server changed between discovery and connecting."""


def _quiet_close(conn: pymysql.connections.Connection) -> None:
    try:
        conn.close()
    except Exception:  # already dead: nothing to release
        pass


def from_config(db, **kwargs) -> ReplicatedSink:  # noqa: ANN001 - gateway.config.DatabaseConfig
    """A ReplicatedSink for a `[database]` section with `kind = "mysql"`."""
    return ReplicatedSink(db.servers, credentials_from_config(db), database=db.database,
                          confirm=db.confirm_replica, **kwargs)
