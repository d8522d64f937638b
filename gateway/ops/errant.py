"""Errant transactions: GTIDs a replica holds that its primary never had, and the repairs that work.

An errant transaction is a write made on a replica itself (a person's `INSERT`, `ANALYZE TABLE`, `FLUSH
TABLES`, `CREATE USER` … without `sql_log_bin=0`). It is harmless until the replica is promoted: then the other
replicas fetch it (or fail to), and with `gtid_strict_mode` (MariaDB) the replica stops with error 1950 at the
primary's next write in that domain.

Detection is pure (tested on stored states): MariaDB compares `@@gtid_binlog_state` per domain *and server
id* (a GTID `d-s-n` is on the primary if it holds `d-s-m` with m >= n; sequence numbers alone are not enough,
a new primary reaches the same numbers with its own writes); MySQL subtracts GTID sets (by source UUID). The reference is the live primary; with
the primary dead, the other data-bearing servers together. The (live or dead) primary's own GTIDs are never
counted: what a replica has of them and the reference lacks is a probe race under load or lag, not errant.

Repairs (`fix`), each refused when it would hide rows that differ from the primary's:
- inject: put the errant GTID into the primary's history with no data change, so every server agrees.
  MySQL: an empty transaction under `GTID_NEXT`. MariaDB does not binlog `BEGIN; COMMIT`, so a binlogged
  no-op (`SET SESSION gtid_domain_id=D, server_id=S, gtid_seq_no=N; DROP TABLE IF EXISTS …`), which strict
  mode accepts only while N is above the domain's current maximum on the primary (a primary that has not
  written since). The last errant GTID per (domain, server id) is enough: a binlog state keeps only that.
- clean: make the replica forget the GTIDs: `RESET MASTER` with `sql_log_bin=0`, then restore its binlog state
  without the errant entries (`SET GLOBAL gtid_binlog_state`; MySQL: `gtid_purged`). With `revert`, the errant
  row changes are first undone on the replica with `mariadb-binlog --flashback` (replayed with sql_log_bin=0):
  that is the path for data that was never meant to exist.
Every maintenance statement of ours runs with `sql_log_bin=0` (`maintenance_session`) so it never becomes an
errant transaction itself; only the inject no-op is binlogged on purpose.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pymysql

from gateway.topology import analysis
from gateway.topology.conn import Credentials, open_connection
from gateway.topology.dialect import dialect_for, gtid_of_event, quote_ident
from gateway.topology.gtid import GtidRange
from gateway.topology.model import ServerState, Snapshot
from gateway.topology.tools import BINLOG_TOOL, CLIENT, tool_command

MAX_EVENTS_PER_FILE = 200_000  # bound on the explanation scan of one binlog file
NOOP_TABLE = "iotgw_meta.no_such_table_errant_skip"

# Statements that change no rows: an errant transaction made only of these is safe to inject or clean.
_HARMLESS = re.compile(r"^\s*(?:use\s+`[^`]*`;\s*)?(ANALYZE|OPTIMIZE|FLUSH|CHECK|REPAIR)\b"
                       r"|^\s*DROP\s+TABLE\s+IF\s+EXISTS\s+`?iotgw_meta`?\.`?no_such_table", re.IGNORECASE)
_TABLE_MAP = re.compile(r"table_id: \d+ \(([^)]+)\)")


class ErrantError(RuntimeError):
    """A repair was refused or failed; the message says why and what to do instead."""


# ------------------------------------------------------------------------------------------------ pure part
# The errant transactions of one server id in one domain (MariaDB): sequence numbers in (after, upto].
ErrantRange = GtidRange


def binlog_state(snap: Snapshot, s: ServerState) -> str:
    """What `s`'s binlog holds, as the errant check needs it (the dialect says which variable that is)."""
    raw = next((r for r in snap.raw if r.endpoint == s.endpoint), None)
    return dialect_for(s.flavor).observed_binlog_state(raw, s)


@dataclass(frozen=True)
class ErrantFinding:
    """One server's errant transactions and what they were compared with."""

    endpoint: str
    server_id: int
    flavor: str
    gtids: tuple[str, ...]  # MariaDB: the last errant GTID per (domain, server id); MySQL: the set's members
    ranges: tuple[ErrantRange, ...] = ()  # MariaDB only
    reference: str = ""


def _reference(snap: Snapshot, s: ServerState, states: dict[str, str]) -> tuple[str, str, set[int], set[str]]:
    """(reference state, its description, server ids to ignore, UUIDs to ignore) for checking `s`."""
    primary = analysis.writer_primary(snap).primary
    if primary is not None and primary.flavor == s.flavor:
        # The primary's own GTIDs are never errant on a replica: one it seems to lack was written after it
        # was probed (the servers of a snapshot are probed one after another, under load).
        return (states[primary.endpoint], f"primary {primary.endpoint}", {primary.server_id},
                {primary.server_uuid.lower()} if primary.server_uuid else set())
    # No live primary: the other data-bearing servers together; the dead primary's own GTIDs are lag.
    old = analysis.old_primary(snap)
    ignore_ids = {old.server_id} if old and old.server_id else set()
    others = [o for o in snap.reachable if o is not s and o.flavor == s.flavor]
    ignore_uuids = {u for raw in snap.raw if raw.replica_status
                    for u in [str(raw.replica_status.get("Source_UUID") or raw.replica_status.get("Master_UUID") or "")]
                    if u and raw.flavor == "mysql"}
    text = dialect_for(s.flavor).merged_states([states[o.endpoint] for o in others])
    return text, "the other reachable servers (no live primary)", ignore_ids, ignore_uuids


def find_errant(snap: Snapshot, states: dict[str, str] | None = None) -> list[ErrantFinding]:
    """Every reachable replica (or relay) holding GTIDs its reference lacks. Pure: no server is asked.

    `states` maps endpoints to binlog states (MariaDB `gtid_binlog_state`, MySQL `gtid_executed`); by default
    they come from the snapshot (`binlog_state`).
    """
    states = dict(states or {})
    for s in snap.reachable:
        states.setdefault(s.endpoint, binlog_state(snap, s))
    primary = analysis.writer_primary(snap).primary
    out = []
    for s in snap.reachable:
        if s is primary or s.replication is None:
            continue
        ref, described, ignore_ids, ignore_uuids = _reference(snap, s, states)
        gtids, ranges = dialect_for(s.flavor).errant(states[s.endpoint], ref, frozenset(ignore_ids),
                                                      frozenset(ignore_uuids))
        if gtids:
            out.append(ErrantFinding(s.endpoint, s.server_id, s.flavor, gtids, ranges, described))
    return out


def errant_transactions(snap: Snapshot, states: dict[str, str] | None = None) -> dict[str, list[str]]:
    """{replica endpoint: errant GTIDs} for every replica that has some (empty dict: none has).

    This is the check `failover` and `switchover` run: a candidate listed here is not promoted silently.
    """
    return {f.endpoint: list(f.gtids) for f in find_errant(snap, states)}


def candidate_refusal(snap: Snapshot, candidate: str, states: dict[str, str] | None = None) -> str:
    """Why `candidate` must not be promoted because of errant transactions ('' if it may be)."""
    s = snap.get(candidate)
    if s is None:
        return ""
    found = errant_transactions(snap, states).get(s.endpoint)
    if not found:
        return ""
    return (f"{s.endpoint} has errant transactions {', '.join(found)} (not on the primary): promoting it would "
            f"send them to every replica; run `iotgw topology errant fix {s.endpoint}` first or exclude it")


# ------------------------------------------------------------------------------------ explaining (binlog events)
@dataclass
class ErrantTransaction:
    """One errant transaction as the replica's binlog shows it."""

    gtid: str
    file: str
    start: int
    end: int
    events: list[str] = field(default_factory=list)  # event types in order
    statements: list[str] = field(default_factory=list)  # Query / Annotate_rows / Rows_query texts
    tables: list[str] = field(default_factory=list)  # tables whose rows it changed
    row_events: int = 0

    @property
    def changes_rows(self) -> bool:
        return self.row_events > 0

    @property
    def harmless(self) -> bool:
        """Changes no data: no row events and only maintenance statements (ANALYZE, FLUSH, …)."""
        return not self.changes_rows and all(_HARMLESS.search(s) for s in self.statements)

    @property
    def kind(self) -> str:
        if self.harmless:
            return "no data change (" + "; ".join(s.strip()[:60] for s in self.statements) + ")"
        if self.changes_rows:
            return f"row changes in {', '.join(self.tables)} ({self.row_events} row event(s))"
        return "statement that may change schema or accounts: " + "; ".join(s.strip()[:80] for s in self.statements)

    def to_dict(self) -> dict[str, Any]:
        return {"gtid": self.gtid, "file": self.file, "start": self.start, "end": self.end, "kind": self.kind,
                "harmless": self.harmless, "tables": self.tables, "statements": self.statements,
                "events": self.events}


def transactions_from_events(rows: Iterable[tuple[Any, ...]]) -> list[ErrantTransaction]:
    """Group `SHOW BINLOG EVENTS` rows (Log_name, Pos, Event_type, Server_id, End_log_pos, Info) into
    transactions, one per GTID event (MariaDB `BEGIN GTID d-s-n` / `GTID d-s-n`; MySQL `GTID_NEXT= 'uuid:n'`)."""
    out: list[ErrantTransaction] = []
    cur: ErrantTransaction | None = None
    for log_name, pos, etype, _sid, end, info in rows:
        info = (info.decode() if isinstance(info, bytes) else str(info or "")).strip()
        etype = str(etype)
        if etype in ("Gtid", "Anonymous_Gtid"):
            cur = ErrantTransaction(gtid_of_event(info), str(log_name), int(pos), int(end), [etype])
            out.append(cur)
            continue
        if cur is None:
            continue
        cur.events.append(etype)
        cur.end = int(end)
        if etype in ("Query", "Annotate_rows", "Rows_query") and info.upper() not in ("BEGIN", "COMMIT"):
            cur.statements.append(info)
        elif etype == "Table_map":
            m = _TABLE_MAP.search(info)
            if m and m.group(1) not in cur.tables:
                cur.tables.append(m.group(1))
        elif etype.startswith(("Write_rows", "Update_rows", "Delete_rows")):
            cur.row_events += 1
        if etype == "Xid" or (etype == "Query" and info.upper() == "COMMIT"):
            cur = None
    return out


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


# ---------------------------------------------------------------------------------------------- live: fix
def maintenance_session(cur: Any) -> None:
    """Make this session's statements invisible to replication (`sql_log_bin=0`): run it before any
    maintenance statement, so what we do on one server never becomes an errant transaction there."""
    cur.execute("SET SESSION sql_log_bin=0")


def inject_sql(flavor: str, finding: ErrantFinding) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements (on the primary) that put the finding's GTIDs into its history with no data change;
    this one session binlogs on purpose: the no-ops must replicate."""
    return [("SET SESSION sql_log_bin=1", ()), *dialect_for(flavor).inject_sql(finding.gtids, finding.ranges)]


def clean_sql(flavor: str, replica_state: str, finding: ErrantFinding, reference_state: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements (on the replica, replication stopped, not binlogged) that make it forget its errant GTIDs."""
    return [("SET SESSION sql_log_bin=0", ()),
            *dialect_for(flavor).forget_sql(replica_state, finding.gtids, finding.ranges, reference_state)]


def inject_refusal(flavor: str, finding: ErrantFinding, primary_state: str) -> str:
    """Why strict mode would reject the no-op on the primary ('' when it is accepted)."""
    return dialect_for(flavor).inject_refusal(finding.ranges, primary_state)


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
    return d.parse_position(replica_applied).contains(d.parse_position(primary_binlog_pos))  # type: ignore[arg-type]


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
    say = progress or (lambda _m: None)
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

    def step(m: str) -> None:
        result.steps.append(m)
        say(m)

    with open_connection(s.endpoint, admin) as conn:
        result.transactions = explain(conn, finding)
    for trx in result.transactions:
        step(f"{s.endpoint}: errant {trx.gtid} in {trx.file}@{trx.start}: {trx.kind}")
    flavor = s.flavor
    primary_state, _ = _position(primary.endpoint, admin, flavor)
    replica_state, replica_applied = _position(s.endpoint, admin, flavor)
    primary_pos = _binlog_pos(primary.endpoint, admin, flavor)
    if method == "auto":
        method = "clean" if (revert or inject_refusal(flavor, finding, primary_state)) else "inject"
        result.method = method
    if method not in ("inject", "clean"):
        raise ErrantError(f"unknown repair {method!r}: inject, clean or auto")
    if revert and not dialect_for(flavor).supports_flashback:
        raise ErrantError("--revert uses mariadb-binlog --flashback, which MySQL lacks: undo the rows by hand "
                          "with sql_log_bin=0, or rebuild the replica (clone)")
    if revert and method != "clean":
        raise ErrantError("--revert undoes the rows on the replica, which only the clean repair goes with")
    if s.replica_hosts or analysis.children(snap, s):
        if method == "clean":
            raise ErrantError(f"{s.endpoint} has replicas of its own: resetting its binlog would cut them off; "
                              "move them first (or use inject)")

    if method == "inject":
        why = inject_refusal(flavor, finding, primary_state)
        if why:
            raise ErrantError(f"refused: {why}")
    data = [t for t in result.transactions if not t.harmless]
    statements = [t for t in data if not t.changes_rows]
    if statements:
        raise ErrantError("refused: " + "; ".join(f"{t.gtid} is a {t.kind}" for t in statements)
                          + ": no automatic check can prove the servers agree; undo it by hand with "
                          "sql_log_bin=0 and inject, or rebuild the replica (clone)")
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

