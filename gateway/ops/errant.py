"""Errant transactions: GTIDs a replica holds that its primary never had, and the repairs that work.

An errant transaction is a write made on a replica itself (a person's `INSERT`, `ANALYZE TABLE`, `FLUSH
TABLES`, `CREATE USER` … without `sql_log_bin=0`). It is harmless until the replica is promoted: then the other
replicas fetch it (or fail to), and with `gtid_strict_mode` (MariaDB) the replica stops with error 1950 at the
primary's next write in that domain.

Detection (tested on stored states): MariaDB compares `@@gtid_binlog_state` per domain *and server
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
Everything here is pure (decided on snapshots, binlog states and binlog event rows); `gateway.ops.errant_repair`
reads the binlogs and carries a repair out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.topology import analysis
from gateway.topology.dialect import dialect_for, gtid_of_event
from gateway.topology.gtid import GtidRange
from gateway.topology.model import ServerState, Snapshot
from gateway.topology.operation import OpError

NOOP_TABLE = "iotgw_meta.no_such_table_errant_skip"

# Statements that change no rows: an errant transaction made only of these is safe to inject or clean.
_HARMLESS = re.compile(r"^\s*(?:use\s+`[^`]*`;\s*)?(ANALYZE|OPTIMIZE|FLUSH|CHECK|REPAIR)\b"
                       r"|^\s*DROP\s+TABLE\s+IF\s+EXISTS\s+`?iotgw_meta`?\.`?no_such_table", re.IGNORECASE)
_TABLE_MAP = re.compile(r"table_id: \d+ \(([^)]+)\)")


class ErrantError(OpError):
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


def choose_repair(snap: Snapshot, s: ServerState, finding: ErrantFinding, transactions: list[ErrantTransaction],
                  method: str, revert: bool, primary_state: str) -> str:
    """The repair to run on `s` ("inject" or "clean"; "auto" picks inject when strict mode accepts it), or
    ErrantError with the reason it is refused. Pure: decided on the snapshot, the explained transactions and
    the primary's binlog state."""
    flavor = s.flavor
    if method == "auto":
        method = "clean" if (revert or inject_refusal(flavor, finding, primary_state)) else "inject"
    if method not in ("inject", "clean"):
        raise ErrantError(f"unknown repair {method!r}: inject, clean or auto")
    if revert and not dialect_for(flavor).supports_flashback:
        raise ErrantError("--revert uses mariadb-binlog --flashback, which MySQL lacks: undo the rows by hand "
                          "with sql_log_bin=0, or rebuild the replica (clone)")
    if revert and method != "clean":
        raise ErrantError("--revert undoes the rows on the replica, which only the clean repair goes with")
    if method == "clean" and (s.replica_hosts or analysis.children(snap, s)):
        raise ErrantError(f"{s.endpoint} has replicas of its own: resetting its binlog would cut them off; "
                          "move them first (or use inject)")
    if method == "inject":
        why = inject_refusal(flavor, finding, primary_state)
        if why:
            raise ErrantError(f"refused: {why}")
    statements = [t for t in transactions if not t.harmless and not t.changes_rows]
    if statements:
        raise ErrantError("refused: " + "; ".join(f"{t.gtid} is a {t.kind}" for t in statements)
                          + ": no automatic check can prove the servers agree; undo it by hand with "
                          "sql_log_bin=0 and inject, or rebuild the replica (clone)")
    return method
