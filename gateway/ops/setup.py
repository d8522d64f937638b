"""`iotgw topology setup`: turn independent servers into a GTID replication topology (like `mysqlreplicate`).

Check every prerequisite first (`check_prerequisites`, a pure function of a snapshot) and refuse with the
reasons; then, printing each step and its result: create the replication account on every server with
`sql_log_bin=0` (so it never becomes an errant transaction), publish epoch 1 on the primary and open it for
writes, point each replica at it with GTID positioning, start it, and verify that it applied the primary's
position with both threads running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pymysql

from gateway.topology.conn import Credentials, open_connection, set_read_only
from gateway.topology.dialect import dialect_for
from gateway.topology.discovery import discover
from gateway.topology.epoch import write_epoch
from gateway.topology.model import RawObservation, Snapshot, split_endpoint
from gateway.topology.operation import OpError, Steps


class SetupError(OpError):
    """Setup refused (prerequisites) or failed (a step); the message lists why."""


@dataclass
class SetupResult:
    primary: str
    replicas: list[str]
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _flag(v: object) -> bool:
    return str(v).upper() in ("1", "ON", "YES", "TRUE")


def check_prerequisites(snap: Snapshot, primary: str) -> list[str]:
    """Every reason the servers cannot be set up with `primary` as the primary (empty: go ahead).

    Works on the raw observations, because the parsed snapshot keeps only one server per server id, and a
    duplicate server id is exactly what must be reported.
    """
    problems: list[str] = []
    raws: list[RawObservation] = list(snap.raw)
    if not any(r.endpoint == primary for r in raws):
        problems.append(f"{primary}: the primary is not among the servers")
    ids: dict[int, str] = {}
    for r in raws:
        if not r.reachable:
            problems.append(f"{r.endpoint}: not reachable ({r.error})")
            continue
        v = r.variables
        sid = int(v.get("server_id") or 0)
        if sid == 0:
            problems.append(f"{r.endpoint}: server_id is 0 (replication needs a unique non-zero id)")
        elif sid in ids:
            problems.append(f"{r.endpoint}: duplicate server id {sid} (also {ids[sid]}): give each server its own")
        else:
            ids[sid] = r.endpoint
        if not _flag(v.get("log_bin")):
            problems.append(f"{r.endpoint}: binary log is off (set log_bin)")
        problems.extend(f"{r.endpoint}: {p}" for p in dialect_for(r.flavor).setup_problems(v))
        if not v.get("report_host") or not v.get("report_port"):
            problems.append(f"{r.endpoint}: report_host/report_port not set (discovery needs them)")
        if r.replica_status and (r.replica_status.get("Master_Host") or r.replica_status.get("Source_Host")):
            problems.append(f"{r.endpoint}: already replicates: stop and reset it first")
    primary_raw = next((r for r in raws if r.endpoint == primary and r.reachable), None)
    if primary_raw is not None:
        d = dialect_for(primary_raw.flavor)
        for r in raws:
            if r is primary_raw or not r.reachable:
                continue
            extra = d.transactions_missing_from(r.variables, primary_raw.variables)
            if extra:
                problems.append(f"{r.endpoint}: has transactions the primary lacks ({', '.join(extra)}): "
                                "clone it from the primary instead")
    return problems


def setup(seeds: list[str], primary: str, admin: Credentials, repl_user: str, repl_password: str, *,
          timeout: float = 30.0, progress: Callable[[str], None] | None = None) -> SetupResult:
    """Build the topology; raises SetupError with the reasons if a prerequisite fails or a step fails."""
    started = time.monotonic()
    snap = discover(seeds, admin)
    problems = check_prerequisites(snap, primary)
    if problems:
        raise SetupError("prerequisites not met:\n" + "\n".join(f"  - {p}" for p in problems))
    servers = [s for s in snap.reachable]
    prim = next(s for s in servers if s.endpoint == primary)
    replicas = [s for s in servers if s is not prim]
    result = SetupResult(primary=prim.endpoint, replicas=[s.endpoint for s in replicas])

    step = Steps(progress, result.steps)

    step(f"prerequisites OK on {len(servers)} servers (unique ids, binlog, gtid_strict_mode, log_slave_updates, "
         "report_host/port)")
    try:
        for s in servers:
            with open_connection(s.endpoint, admin) as conn, conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin=0")  # an account on each server, never replicated
                cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (repl_user, repl_password))
                cur.execute("GRANT REPLICATION SLAVE ON *.* TO %s@'%%'", (repl_user,))
                cur.execute("SET SESSION sql_log_bin=1")
            step(f"{s.endpoint}: replication account {repl_user!r} ready (sql_log_bin=0)")
        d = dialect_for(prim.flavor)
        host, port = split_endpoint(prim.report_endpoint or prim.endpoint)
        with open_connection(prim.endpoint, admin) as conn, conn.cursor() as cur:
            if prim.epoch is None:
                write_epoch(cur, 1, prim.server_id, host, port, "iotgw topology setup")
                step(f"{prim.endpoint}: published epoch 1 naming server {prim.server_id}")
            set_read_only(cur, False, d)
            cur.execute(d.binlog_position_sql)
            position = cur.fetchone()[0]
        step(f"{prim.endpoint}: read_only=OFF, the primary (position {position or 'empty'})")
        for s in replicas:
            rd = dialect_for(s.flavor)
            with open_connection(s.endpoint, admin) as conn, conn.cursor() as cur:
                set_read_only(cur, True, rd)
                cur.execute(*rd.change_source_sql(host, port, repl_user, repl_password))
                cur.execute(rd.start_replica_sql)
            step(f"{s.endpoint}: CHANGE MASTER TO {host}:{port} (GTID), START SLAVE")
        for s in replicas:
            rd = dialect_for(s.flavor)
            with open_connection(s.endpoint, admin, io_timeout=timeout + 10) as conn, conn.cursor() as cur:
                if position:
                    cur.execute(*rd.wait_for_gtid_sql(position, timeout))
                    applied = str(cur.fetchone()[0]) == "0"
                else:
                    applied = True
                cur.execute(rd.replica_status_sql)
                cols = [c[0] for c in cur.description]
                row = dict(zip(cols, cur.fetchone() or (), strict=False))
            rep = rd.parse_replication(row)
            wait_io = time.monotonic() + timeout
            while rep is not None and rep.io_starting and time.monotonic() < wait_io:
                time.sleep(0.1)
                with open_connection(s.endpoint, admin) as conn, conn.cursor() as cur:
                    cur.execute(rd.replica_status_sql)
                    cols = [c[0] for c in cur.description]
                    rep = rd.parse_replication(dict(zip(cols, cur.fetchone() or (), strict=False)))
            if rep is None or not rep.running or not applied:
                why = (rep.last_io_error or rep.last_sql_error or f"IO {rep.io_running}") if rep else "no status"
                raise SetupError(f"{s.endpoint}: replication not running or behind after {timeout:g} s: {why}")
            step(f"{s.endpoint}: verified: IO and SQL threads running, applied {position or 'everything'}")
    except pymysql.MySQLError as exc:
        raise SetupError(f"setup failed: {exc}") from exc
    result.seconds = time.monotonic() - started
    return result
