"""Bringing a server back: rejoin it if it has not diverged, otherwise clone it afresh from a healthy replica.

Rejoin (`rejoin`): an old primary (or any detached server) whose binlog holds nothing the current primary lacks
(`gateway.ops.plan.diverged`, which compares server ids as well as sequence numbers) is fenced and made a
replica with `MASTER_USE_GTID=current_pos` (its own old writes are in its binlog, not in `gtid_slave_pos`).

Clone (`clone`): MariaDB has no CLONE plugin, so the copy is a logical dump: `mariadb-dump --single-transaction
--master-data=2 --gtid` from a donor (a replica, so the primary is not loaded) gives the data and, in a comment,
the GTID position it corresponds to; the target loads it with `sql_log_bin=0` (nothing of it may become an
errant transaction), sets `gtid_slave_pos` to that position and replicates from the primary. `mariadb-backup`
would be the physical alternative for large data sets.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pymysql

from gateway.ops.plan import diverged
from gateway.topology.conn import Credentials, open_connection, set_read_only
from gateway.topology.dialect import MARIADB, quote_ident  # the logical dump and its GTID comment are MariaDB's
from gateway.topology.model import split_endpoint
from gateway.topology.operation import OpError, Steps
from gateway.topology.tools import CLIENT, DUMP, tool_command

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


class CloneError(OpError):
    """A rejoin or clone step failed; the message names it."""


@dataclass
class RejoinResult:
    rejoined: bool
    diverged: list[str] = field(default_factory=list)  # GTIDs the primary never had (then: rebuild)
    steps: list[str] = field(default_factory=list)


def _one(cur: pymysql.cursors.Cursor, sql: str) -> str:
    cur.execute(sql)
    return str(cur.fetchone()[0] or "")


def rejoin(ep: str, primary: str, admin: Credentials, repl: tuple[str, str], *, fence_first: bool = True,
           progress: Callable[[str], None] | None = None) -> RejoinResult:
    """Fence `ep`, then make it a replica of `primary` if it has not diverged (MariaDB)."""
    result = RejoinResult(False)

    step = Steps(progress, result.steps)

    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        if fence_first:
            set_read_only(cur, True, MARIADB)
            step(f"{ep}: fenced (read_only=ON)")
        own = _one(cur, MARIADB.binlog_position_sql)
    with open_connection(primary, admin) as conn, conn.cursor() as cur:
        state = _one(cur, MARIADB.binlog_state_sql)
    result.diverged = diverged(own, state)
    if result.diverged:
        step(f"{ep}: DIVERGED: holds {', '.join(result.diverged)} that {primary} never had: needs a rebuild")
        return result
    host, port = split_endpoint(primary)
    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        cur.execute(MARIADB.stop_replica_sql)
        cur.execute(*MARIADB.change_source_sql(host, port, repl[0], repl[1], gtid_mode="current_pos"))
        cur.execute(MARIADB.start_replica_sql)
    result.rejoined = True
    step(f"{ep}: not diverged ({own or 'empty binlog'}): replicates from {primary} (current_pos)")
    return result


def user_databases(ep: str, admin: Credentials) -> list[str]:
    """Databases to copy: everything but the system schemas (the epoch schema is copied: it is data)."""
    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        return sorted(r[0] for r in cur.fetchall() if r[0] not in SYSTEM_SCHEMAS)


def clone(donor: str, target: str, primary: str, admin: Credentials, repl: tuple[str, str], *,
          timeout: float = 120.0, progress: Callable[[str], None] | None = None) -> list[str]:
    """Copy `donor`'s data onto the empty server `target` and make it a replica of `primary`. Returns the steps.

    `target` must hold no data of its own: its binlog and replication settings are reset first.
    """
    steps: list[str] = []

    step = Steps(progress, steps)

    started = time.monotonic()
    with open_connection(target, admin) as conn, conn.cursor() as cur:
        set_read_only(cur, True, MARIADB)
        cur.execute(MARIADB.stop_replica_sql)
        cur.execute(MARIADB.reset_replica_all_sql)
        cur.execute("RESET MASTER")  # an empty binlog: nothing on it can be errant
        cur.execute("SET SESSION sql_log_bin=0")
        for db in user_databases(target, admin):
            cur.execute(f"DROP DATABASE {quote_ident(db)}")
    step(f"{target}: fenced, replication and binlog reset, emptied")
    databases = user_databases(donor, admin)
    if databases:
        position = _dump_and_load(donor, target, databases, admin, timeout, step)
    else:  # nothing to copy: the donor's position is all the new replica needs
        with open_connection(donor, admin) as conn, conn.cursor() as cur:
            position = _one(cur, MARIADB.binlog_position_sql)
        step(f"{donor}: no user databases; starting from its position {position or 'empty'}")
    host, port = split_endpoint(primary)
    with open_connection(target, admin, io_timeout=timeout) as conn, conn.cursor() as cur:
        for sql, params in MARIADB.set_applied_position_sql(position):
            cur.execute(sql, params)
        cur.execute(*MARIADB.change_source_sql(host, port, repl[0], repl[1]))
        cur.execute(MARIADB.start_replica_sql)
    with open_connection(primary, admin) as conn, conn.cursor() as cur:
        now = _one(cur, MARIADB.binlog_position_sql)
    with open_connection(target, admin, io_timeout=timeout + 10) as conn, conn.cursor() as cur:
        cur.execute(*MARIADB.wait_for_gtid_sql(now, timeout))
        if cur.fetchone()[0] != 0:
            cur.execute(MARIADB.replica_status_sql)
            cols = [c[0] for c in cur.description]
            row = dict(zip(cols, cur.fetchone() or (), strict=False))
            raise CloneError(f"{target} did not catch up with {primary} ({now}): "
                             f"{row.get('Last_IO_Error') or row.get('Last_SQL_Error') or 'timeout'}")
    step(f"{target}: replicates from {primary}, caught up with {now} ({time.monotonic() - started:.1f} s)")
    return steps


def _dump_and_load(donor: str, target: str, databases: list[str], admin: Credentials, timeout: float,
                   step: Callable[[str], None]) -> str:
    """Dump `databases` from the donor into the target (sql_log_bin=0); the dump's GTID position."""
    with tool_command(DUMP, donor, admin, ["--single-transaction", "--master-data=2", "--gtid", "--routines",
                                           "--triggers", "--databases"], names=databases) as cmd:
        dump = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if dump.returncode != 0:
        raise CloneError(f"mariadb-dump from {donor} failed: {dump.stderr.strip()[-500:]}")
    position = MARIADB.dump_position(dump.stdout)
    if position is None:
        raise CloneError(f"the dump from {donor} names no GTID position (is its binlog on?)")
    step(f"{donor}: dumped {', '.join(databases)} at GTID position {position} ({len(dump.stdout)} bytes)")
    with tool_command(CLIENT, target, admin, ["--init-command=SET SESSION sql_log_bin=0"]) as cmd:
        load = subprocess.run(cmd, input=dump.stdout, capture_output=True, text=True, timeout=timeout)
    if load.returncode != 0:
        raise CloneError(f"loading the dump into {target} failed: {load.stderr.strip()[-500:]}")
    step(f"{target}: loaded with sql_log_bin=0")
    return position
