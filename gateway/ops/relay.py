"""Relay replicas: a replica on the BLACKHOLE engine that passes the primary's binlog on to leaves.

The hierarchical-replication recipe: a relay applies every event to tables that keep no rows, writes it to
its own binlog (`log_slave_updates`), and leaves replicate from it, so the primary serves one replica instead
of many. It adds a hop of lag, holds no data, and can never be promoted (failover and promote refuse it).

`add_relay` (on a direct replica of the primary):
1. check: reachable, replicating, binlog and `log_slave_updates` on (both need a restart to change, so they
   are prerequisites), not the primary; load the BLACKHOLE plugin if missing (`INSTALL SONAME 'ha_blackhole'`);
2. stop its SQL thread; in a session with `sql_log_bin=0` (so nothing becomes an errant transaction on it)
   alter every user table to `ENGINE=BLACKHOLE` and make BLACKHOLE the default engine; start the SQL thread
   (a new SQL thread takes the new default for replicated `CREATE TABLE` without an engine clause);
3. move the chosen leaves under it one by one with GTID positioning: stop the leaf's IO thread and let it
   apply its relay log, wait until the relay has applied at least the leaf's position (so the relay's binlog
   holds everything the leaf asks for next), then `CHANGE MASTER TO` the relay with `MASTER_USE_GTID=slave_pos`.
`remove_relay` is the reverse: every leaf of the relay moves back under the relay's source the same way. The
relay itself stays a leafless BLACKHOLE replica (it holds no rows): `iotgw topology clone` makes it a data
replica again.

`iotgw_meta` (the topology epoch) is left on InnoDB: the relay keeps the epoch rows like every other server.
A table created later with an explicit `ENGINE=InnoDB` (the gateway's schema does that) lands as InnoDB on the
relay; running `relay add` again converts it (it is idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pymysql

from gateway.topology import analysis
from gateway.topology.conn import Credentials, dialect_of, maintenance_session, open_connection
from gateway.topology.dialect import META_SCHEMA, Dialect, quote_ident
from gateway.topology.discovery import discover
from gateway.topology.model import ServerState, Snapshot, split_endpoint
from gateway.topology.operation import OpError, Steps

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys", META_SCHEMA)


class RelayError(OpError):
    """A relay operation was refused or failed; the message says which step and why."""


@dataclass
class RelayResult:
    relay: str
    moved: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def relay_refusal(snap: Snapshot, relay: ServerState) -> str:
    """Why `relay` cannot become a relay ('' if it can). Pure: decided on the snapshot."""
    primary = analysis.writer_primary(snap).primary
    if not relay.reachable:
        return f"{relay.endpoint} is not reachable"
    if primary is not None and relay is primary:
        return f"{relay.endpoint} is the primary"
    if relay.replication is None:
        return f"{relay.endpoint} does not replicate from anyone"
    if not relay.has_binlog:
        return f"{relay.endpoint} has no binlog (log_bin): leaves could not read from it; set it in its config"
    if not relay.log_replica_updates:
        return (f"{relay.endpoint} has log_slave_updates=OFF: it would not pass replicated events on; "
                "set it in its config and restart it")
    if relay.flavor != "mariadb" and relay.flavor != "mysql":
        return f"unknown flavour {relay.flavor}"
    return ""


def leaf_refusal(snap: Snapshot, relay: ServerState, leaf: ServerState) -> str:
    """Why `leaf` cannot move under `relay` ('' if it can)."""
    if not leaf.reachable:
        return f"{leaf.endpoint} is not reachable"
    if leaf is relay:
        return f"{leaf.endpoint} cannot replicate from itself"
    if leaf.replication is None:
        return f"{leaf.endpoint} is not a replica"
    if analysis.chain_to(snap, relay, leaf) is not None:
        return f"{leaf.endpoint} is a source of {relay.endpoint}: moving it under the relay would make a ring"
    return ""


def _status(cur: pymysql.cursors.Cursor, sql: str) -> dict:
    cur.execute(sql)
    cols = [c[0] for c in cur.description]
    row = cur.fetchone()
    return dict(zip(cols, row, strict=True)) if row else {}


def move_replica(ep: str, source: str, admin: Credentials, timeout: float = 30.0) -> str:
    """Make replica `ep` replicate from `source` with GTID positioning, losing nothing.

    The leaf applies what it has received first (never throw a relay log away), and the new source must
    have applied at least the leaf's position, so that its binlog holds everything the leaf asks for next.
    """
    host, port = split_endpoint(source)
    with open_connection(ep, admin, io_timeout=timeout + 10) as conn, conn.cursor() as cur:
        d = dialect_of(cur)
        cur.execute(d.stop_io_thread_sql)
        received = d.received_position(_status(cur, d.replica_status_sql))
        if received:
            cur.execute(*d.wait_for_gtid_sql(received, timeout))
            if str(cur.fetchone()[0]) != "0":
                cur.execute(d.start_replica_sql)
                raise RelayError(f"{ep} did not apply its relay log ({received}) within {timeout:g} s")
        cur.execute(d.stop_replica_sql)
        cur.execute(d.applied_position_sql)
        position = str(cur.fetchone()[0] or "").replace("\n", "")
        if position and not _binlog_reaches(source, admin, d, position, timeout):
            cur.execute(d.start_replica_sql)
            raise RelayError(f"{source} did not reach {ep}'s position {position} within {timeout:g} s")
        cur.execute(*d.repoint_sql(host, port))
        cur.execute(d.start_replica_sql)
    return f"{ep}: now replicates from {source} (GTID position {position or 'empty'})"


def _binlog_reaches(source: str, admin: Credentials, d: Dialect, position: str, timeout: float) -> bool:
    """Poll until `source`'s binlog holds `position` (MASTER_GTID_WAIT would not do on a primary: it only
    tracks replicated transactions and returns -1 for the primary's own)."""
    want = d.parse_position(position)
    deadline = time.monotonic() + timeout
    with open_connection(source, admin) as conn, conn.cursor() as cur:
        while True:
            cur.execute(d.binlog_position_sql)
            if d.parse_position(str(cur.fetchone()[0] or "")).contains(want):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def _user_tables(cur: pymysql.cursors.Cursor) -> list[tuple[str, str, str]]:
    marks = ", ".join(["%s"] * len(SYSTEM_SCHEMAS))
    cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE FROM information_schema.TABLES "
                f"WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({marks}) ORDER BY 1, 2", SYSTEM_SCHEMAS)
    return [(str(a), str(b), str(c or "")) for a, b, c in cur.fetchall()]


def make_blackhole(ep: str, admin: Credentials, progress: Callable[[str], None]) -> list[str]:
    """Turn a replica into a BLACKHOLE relay in place (steps 1-2 of the module doc); returns altered tables."""
    altered = []
    with open_connection(ep, admin, io_timeout=120) as conn, conn.cursor() as cur:
        maintenance_session(cur)  # nothing done here may reach the binlog: it would be errant
        d = dialect_of(cur)
        cur.execute("SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE = 'BLACKHOLE'")
        row = cur.fetchone()
        if row is None or str(row[0]).upper() not in ("YES", "DEFAULT"):
            cur.execute(d.install_blackhole_sql)
            progress(f"{ep}: BLACKHOLE plugin loaded (add plugin_load_add=ha_blackhole to its config)")
        cur.execute(d.stop_sql_thread_sql)
        try:
            for schema, table, engine in _user_tables(cur):
                if engine.upper() != "BLACKHOLE":
                    cur.execute(f"ALTER TABLE {quote_ident(schema)}.{quote_ident(table)} ENGINE=BLACKHOLE")
                    altered.append(f"{schema}.{table}")
            cur.execute("SET GLOBAL default_storage_engine=BLACKHOLE")
        finally:
            cur.execute(d.start_sql_thread_sql)
    progress(f"{ep}: default engine BLACKHOLE; tables altered with sql_log_bin=0: {', '.join(altered) or 'none'} "
             "(put default_storage_engine=BLACKHOLE in its config)")
    return altered


def add_relay(seeds: list[str], relay: str, leaves: list[str], admin: Credentials, *, timeout: float = 30.0,
              progress: Callable[[str], None] | None = None) -> RelayResult:
    """Make `relay` a BLACKHOLE relay and move `leaves` under it, one by one. Raises RelayError if refused."""
    result = RelayResult(relay)

    step = Steps(progress, result.steps)

    snap = discover([*seeds, relay, *leaves], admin)
    r = snap.get(relay)
    if r is None:
        raise RelayError(f"{relay} not found")
    why = relay_refusal(snap, r)
    if why:
        raise RelayError(f"refused: {why}")
    moving = []
    for name in leaves:
        leaf = snap.get(name)
        if leaf is None:
            raise RelayError(f"leaf {name} not found")
        why = leaf_refusal(snap, r, leaf)
        if why:
            raise RelayError(f"refused: {why}")
        moving.append(leaf)
    result.converted = make_blackhole(r.endpoint, admin, step)
    source = r.report_endpoint or r.endpoint
    for leaf in moving:
        if analysis.parent(snap, leaf) is r:
            step(f"{leaf.endpoint}: already replicates from {r.endpoint}")
            continue
        step(move_replica(leaf.endpoint, source, admin, timeout))
        result.moved.append(leaf.endpoint)
    return result


def remove_relay(seeds: list[str], relay: str, admin: Credentials, *, timeout: float = 30.0,
                 progress: Callable[[str], None] | None = None) -> RelayResult:
    """Move every leaf of `relay` back under the relay's own source, one by one (GTID positioning)."""
    result = RelayResult(relay)
    step = Steps(progress, result.steps)
    snap = discover([*seeds, relay], admin)
    r = snap.get(relay)
    if r is None or not r.reachable:
        raise RelayError(f"{relay} not found or not reachable")
    src = analysis.parent(snap, r)
    if r.replication is None:
        raise RelayError(f"{r.endpoint} replicates from nobody: it is not a relay")
    target = (src.report_endpoint or src.endpoint) if src is not None else r.replication.source
    for leaf in analysis.children(snap, r):
        step(move_replica(leaf.endpoint, target, admin, timeout))
        result.moved.append(leaf.endpoint)
    step(f"{r.endpoint}: no leaves left; it holds no rows (BLACKHOLE), is never read from or promoted; "
         "clone it (`iotgw topology clone --target`) to make it a data replica again")
    return result


def clone_refusal(snap: Snapshot, donor: ServerState | None, target: ServerState | None) -> str:
    """Why a clone from `donor` onto `target` must not run ('' if it may). Pure: decided on the snapshot.

    The donor must hold the data (a reachable replica or the primary, never a BLACKHOLE relay, which holds
    no rows); the target must not be the primary or have replicas of its own (they would lose their source's
    binlog). Whether the target holds rows is checked live (`target_rows`).
    """
    primary = analysis.writer_primary(snap).primary
    if primary is None:
        return "no live primary for the clone to replicate from"
    if donor is None or not donor.reachable:
        return "the donor is not a reachable server of this topology"
    if target is None or not target.reachable:
        return "the target is not a reachable server"
    if donor is target:
        return "donor and target are the same server"
    if donor.blackhole:
        return f"{donor.endpoint} is a BLACKHOLE relay: it holds no rows to copy"
    if target is primary:
        return f"{target.endpoint} is the primary: cloning would wipe it"
    if analysis.children(snap, target):
        return f"{target.endpoint} has replicas of its own: move them first"
    return ""


def target_rows(ep: str, admin: Credentials) -> list[str]:
    """User tables of `ep` that hold at least one row (a clone target should hold none)."""
    full = []
    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        for schema, table, _engine in _user_tables(cur):
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {quote_ident(schema)}.{quote_ident(table)} LIMIT 1)")
            if cur.fetchone()[0]:
                full.append(f"{schema}.{table}")
    return full


def restore_default_engine(ep: str, admin: Credentials) -> bool:
    """After cloning onto a former relay: InnoDB is the default engine again. True if it was BLACKHOLE."""
    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.default_storage_engine")
        if str(cur.fetchone()[0]).upper() != "BLACKHOLE":
            return False
        cur.execute("SET GLOBAL default_storage_engine=InnoDB")
    return True
