"""Errant transactions, live: explain them from a server's binlog (`check`) and repair them (`fix`).

The decisions are pure and live in `gateway.ops.errant` (detection, the repair statements, the strict-mode
rule); this module reads binlogs, compares checksums and carries a repair out, refusing any repair that would
hide rows differing from the primary's. Every maintenance statement runs with `sql_log_bin=0`
(`maintenance_session`) so it never becomes an errant transaction itself; only the inject no-op is binlogged.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql

from gateway.ops.errant import (
    ErrantError,
    ErrantFinding,
    ErrantTransaction,
    choose_repair,
    clean_sql,
    find_errant,
    inject_sql,
    transactions_from_events,
)
from gateway.topology import analysis
from gateway.topology.conn import Credentials, maintenance_session, open_connection
from gateway.topology.dialect import dialect_for, quote_ident
from gateway.topology.model import Snapshot
from gateway.topology.operation import Steps
from gateway.topology.tools import BINLOG_TOOL, CLIENT, tool_command

MAX_EVENTS_PER_FILE = 200_000  # bound on the explanation scan of one binlog file


def _rows(cur: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in cur.fetchall()]


def explain(conn: pymysql.connections.Connection, finding: ErrantFinding) -> list[ErrantTransaction]:
    """The errant transactions of `finding`, read from the server's binlog (newest files first).

    MariaDB: a transaction is errant if its GTID falls in one of the finding's ranges; the scan stops after a
    file whose starting `Gtid_list` is at or below every range's lower end (older files cannot hold any of
    them). MySQL: membership in the set (every file is read).
    """
    d = dialect_for(finding.flavor)
    found: list[ErrantTransaction] = []
    with conn.cursor() as cur:
        cur.execute(d.binary_logs_sql)
        files = [str(r[0]) for r in _rows(cur)]
        for name in reversed(files):
            cur.execute(*d.binlog_events_sql(name, MAX_EVENTS_PER_FILE))
            rows = _rows(cur)
            found.extend(trx for trx in transactions_from_events(rows)
                         if d.is_errant_event(trx.gtid, finding.gtids, finding.ranges))
            if d.older_files_hold_none(rows, finding.ranges):
                break
    found.sort(key=lambda t: (files.index(t.file) if t.file in files else 0, t.start))
    return found


# --------------------------------------------------------------------------------------------- live: check
@dataclass
class ServerReport:
    """`errant check` for one server: the finding and its transactions explained."""

    finding: ErrantFinding
    transactions: list[ErrantTransaction] = field(default_factory=list)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        f = self.finding
        return {"endpoint": f.endpoint, "server_id": f.server_id, "flavor": f.flavor, "errant": list(f.gtids),
                "reference": f.reference, "transactions": [t.to_dict() for t in self.transactions],
                "error": self.error}


def check(snap: Snapshot, admin: Credentials) -> list[ServerReport]:
    """Find errant transactions in `snap` and explain each from its server's binlog."""
    out = []
    for f in find_errant(snap):
        report = ServerReport(f)
        try:
            with open_connection(f.endpoint, admin) as conn:
                report.transactions = explain(conn, f)
        except (pymysql.MySQLError, OSError) as exc:
            report.error = f"could not read its binlog: {exc}"
        out.append(report)
    return out


@dataclass
class FixResult:
    """What `fix` did (or would do, with dry_run), in order."""

    server: str
    method: str
    errant: list[str]
    transactions: list[ErrantTransaction] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    sql: list[str] = field(default_factory=list)  # the statements, for --dry-run and the record
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.server, "method": self.method, "errant": self.errant, "ok": self.ok,
                "transactions": [t.to_dict() for t in self.transactions], "steps": self.steps, "sql": self.sql}


def _checksums(ep: str, admin: Credentials, tables: list[str]) -> dict[str, str]:
    out = {}
    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        for t in tables:
            schema, _, name = t.partition(".")
            try:
                cur.execute(f"CHECKSUM TABLE {quote_ident(schema)}.{quote_ident(name)}")
                out[t] = str(cur.fetchone()[1])
            except pymysql.MySQLError as exc:
                out[t] = f"error {exc.args[0]}"
    return out


def _position(ep: str, admin: Credentials, flavor: str) -> tuple[str, str]:
    """(binlog state, applied position) of a server, live."""
    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        cur.execute(dialect_for(flavor).binlog_state_sql)
        state, applied = (str(x or "").replace("\n", "") for x in cur.fetchone())
        return state, applied


def diverged_tables(replica: str, primary: str, admin: Credentials, trxs: list[ErrantTransaction],
                    flavor: str) -> dict[str, tuple[str, str]]:
    """Tables the errant transactions changed whose checksum differs between replica and primary.

    Only meaningful when the replica has applied everything the primary has; otherwise a difference may be
    lag, which the caller reports as "cannot prove" (the refusal is the safe side).
    """
    tables = sorted({t for trx in trxs for t in trx.tables})
    if not tables:
        return {}
    mine, theirs = _checksums(replica, admin, tables), _checksums(primary, admin, tables)
    return {t: (mine[t], theirs[t]) for t in tables if mine[t] != theirs[t]}


def _caught_up(replica_applied: str, primary_binlog_pos: str, flavor: str) -> bool:
    d = dialect_for(flavor)
    return d.parse_position(replica_applied).contains(d.parse_position(primary_binlog_pos))


def revert_with_flashback(ep: str, admin: Credentials, trxs: list[ErrantTransaction], timeout: float = 60) -> list[str]:
    """Undo the row changes of `trxs` on `ep` (newest first), replayed with sql_log_bin=0 (MariaDB only).

    `mariadb-binlog --flashback` reads the server's binlog remotely and writes the inverse row events; the
    client replays them in a session that does not binlog, so the undo is not a new errant transaction.
    """
    steps = []
    for trx in sorted(trxs, key=lambda t: (t.file, t.start), reverse=True):
        with tool_command(BINLOG_TOOL, ep, admin, ["--read-from-remote-server", "--flashback",
                                                   f"--start-position={trx.start}", f"--stop-position={trx.end}"],
                          names=[trx.file]) as cmd:
            dump = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        if dump.returncode != 0:
            raise ErrantError(f"{BINLOG_TOOL} --flashback failed for {trx.gtid}: {dump.stderr.decode()[-300:]}")
        with tool_command(CLIENT, ep, admin, ["--init-command=SET SESSION sql_log_bin=0", "--batch"]) as cmd:
            load = subprocess.run(cmd, input=dump.stdout, capture_output=True, timeout=timeout, check=False)
        if load.returncode != 0:
            raise ErrantError(f"replaying the inverse of {trx.gtid} failed: {load.stderr.decode()[-300:]}")
        steps.append(f"{ep}: reverted the row changes of {trx.gtid} ({', '.join(trx.tables)}) with sql_log_bin=0")
    return steps


def fix(snap: Snapshot, server: str, admin: Credentials, *, method: str = "auto", revert: bool = False,
        dry_run: bool = False, wait_timeout: float = 30.0,
        progress: Callable[[str], None] | None = None) -> FixResult:
    """Repair `server`'s errant transactions with `method` ("inject", "clean" or "auto": inject if strict
    mode allows it, else clean). Raises ErrantError, with the reason, for a refused repair."""
    s = snap.get(server)
    if s is None or not s.reachable:
        raise ErrantError(f"{server} is not a reachable server of this topology")
    finding = next((f for f in find_errant(snap) if f.endpoint == s.endpoint), None)
    if finding is None:
        raise ErrantError(f"{s.endpoint} has no errant transactions: nothing to fix")
    primary = analysis.writer_primary(snap).primary
    if primary is None:
        raise ErrantError("no live primary: repair errant transactions before (or after) a failover, not during")
    result = FixResult(s.endpoint, method, list(finding.gtids))

    step = Steps(progress, result.steps)

    with open_connection(s.endpoint, admin) as conn:
        result.transactions = explain(conn, finding)
    for trx in result.transactions:
        step(f"{s.endpoint}: errant {trx.gtid} in {trx.file}@{trx.start}: {trx.kind}")
    flavor = s.flavor
    primary_state, _ = _position(primary.endpoint, admin, flavor)
    replica_state, replica_applied = _position(s.endpoint, admin, flavor)
    primary_pos = _binlog_pos(primary.endpoint, admin, flavor)
    method = result.method = choose_repair(snap, s, finding, result.transactions, method, revert, primary_state)
    data = [t for t in result.transactions if not t.harmless]
    if data and not revert:
        if not _caught_up(replica_applied, primary_pos, flavor):
            raise ErrantError(f"refused: {', '.join(t.gtid for t in data)} changed rows in "
                              f"{', '.join(sorted({x for t in data for x in t.tables}))} and {s.endpoint} is behind the "
                              "primary, so equal data cannot be proven; the repair would hide diverged rows. "
                              "Undo them on the replica (clean --revert) or rebuild it (clone)")
        differ = diverged_tables(s.endpoint, primary.endpoint, admin, data, flavor)
        if differ:
            detail = ", ".join(f"{t} (replica {a}, primary {b})" for t, (a, b) in differ.items())
            raise ErrantError(f"refused: the errant rows differ from the primary's in {detail}: {method} would "
                              "hide diverged rows. Undo them on the replica (clean --revert) or rebuild it (clone)")
        step(f"the tables the errant transactions changed checksum equal on {s.endpoint} and the primary")
    if method == "inject":
        stmts = inject_sql(flavor, finding)
    else:
        stmts = clean_sql(flavor, replica_state, finding, primary_state)
    result.sql = [_render(sql, params) for sql, params in stmts]
    if dry_run:
        step("dry run: nothing changed")
        return result
    d = dialect_for(flavor)
    with open_connection(s.endpoint, admin, io_timeout=wait_timeout + 10) as rconn, rconn.cursor() as rcur:
        maintenance_session(rcur)
        rcur.execute(d.stop_replica_sql)
        step(f"{s.endpoint}: replication stopped")
        if method == "inject":
            with open_connection(primary.endpoint, admin) as pconn, pconn.cursor() as pcur:
                for sql, params in stmts:
                    pcur.execute(sql, params)
            step(f"{primary.endpoint}: wrote {', '.join(finding.gtids)} as binlogged no-op(s) (replicated to all)")
            for sql in d.resume_after_own_writes_sql():  # it wrote those GTIDs itself: resume after them
                rcur.execute(sql)
        else:
            if revert and data:
                for m in revert_with_flashback(s.endpoint, admin, data):
                    step(m)
            for sql, params in stmts:
                rcur.execute(sql, params)
            for sql, params in d.set_applied_position_sql(replica_applied):
                rcur.execute(sql, params)
            step(f"{s.endpoint}: binlog reset; errant GTIDs forgotten ({', '.join(finding.gtids)})")
        rcur.execute(d.start_replica_sql)
        step(f"{s.endpoint}: replication started")
        target = _binlog_pos(primary.endpoint, admin, flavor)
        rcur.execute(*d.wait_for_gtid_sql(target, wait_timeout))
        if str(rcur.fetchone()[0]) != "0":
            raise ErrantError(f"{s.endpoint} did not catch up with {target} within {wait_timeout:g} s after the repair")
    step(f"{s.endpoint}: caught up with the primary ({target})")
    if data:
        differ = diverged_tables(s.endpoint, primary.endpoint, admin, data, flavor)
        if differ:
            raise ErrantError(f"after the repair {', '.join(differ)} still differ from the primary: rebuild "
                              f"{s.endpoint} (clone)")
        step("the changed tables checksum equal on the replica and the primary")
    result.ok = True
    return result


def _binlog_pos(ep: str, admin: Credentials, flavor: str) -> str:
    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        cur.execute(dialect_for(flavor).binlog_position_sql)
        return str(cur.fetchone()[0] or "").replace("\n", "")


def _render(sql: str, params: tuple[Any, ...]) -> str:
    """A statement with its parameters shown literally (for --dry-run output only, never executed)."""
    for p in params:
        sql = sql.replace("%s", repr(p) if isinstance(p, str) else str(p), 1)
    return sql

