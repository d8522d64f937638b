"""Failover decisions from a topology snapshot: pure functions, no servers (tested on stored snapshots).

The live commands (`failover`, `monitor`) take a snapshot with `gateway.topology.discovery.discover` and ask
this module what to do; only then do they touch a server. The rules:

- the old primary is the server named by the highest epoch (or, with no epoch, the source the replicas name);
- it is dead only if it is unreachable *and* every reachable replica has lost it too (IO thread not running);
- candidates are its direct replicas that are reachable, have a binlog, are not BLACKHOLE relays, are not
  excluded and have no SQL error (they must be able to apply their relay log);
- the best candidate has the most *received* GTID position (what it can still apply), then the most
  *applied* position (less to apply, a shorter wait), then the lowest server id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.ops.errant import errant_transactions
from gateway.topology import analysis
from gateway.topology.analysis import OldPrimary, old_primary
from gateway.topology.dialect import dialect_for
from gateway.topology.gtid import MariaBinlogState, MariaPos
from gateway.topology.model import ServerState, Snapshot


def direct_replicas(snap: Snapshot, primary: OldPrimary) -> list[ServerState]:
    """Reachable servers whose replication source is the old primary (by server id or by address)."""
    out = []
    for s in snap.reachable:
        rep = s.replication
        if rep is None or (primary.state is not None and s is primary.state):
            continue
        if (primary.server_id and rep.source_server_id == primary.server_id) or rep.source == primary.endpoint or (
                primary.state is not None and rep.source == primary.state.report_endpoint):
            out.append(s)
    return sorted(out, key=lambda s: s.server_id)


@dataclass(frozen=True)
class DeadCheck:
    """Whether the primary is dead, and the evidence."""

    dead: bool
    reason: str
    primary: OldPrimary | None = None


def confirm_dead(snap: Snapshot) -> DeadCheck:
    """Dead means: we cannot reach it AND every reachable direct replica has lost it (IO thread not 'Yes').

    The second half keeps a network problem between the monitor and the primary from causing a failover
    while the replicas still read the primary's binlog. With no reachable replica there is no confirmation
    (and nothing to promote).
    """
    primary = old_primary(snap)
    if primary is None:
        return DeadCheck(False, "no primary known (no epoch and no replica names a source)")
    if primary.reachable:
        state = primary.state
        assert state is not None
        if state.writable and not state.is_replica:
            return DeadCheck(False, f"primary {primary.endpoint} answers and is writable", primary)
        return DeadCheck(False, f"primary {primary.endpoint} answers (read_only={state.read_only}): "
                         "not dead; use switchover or promote", primary)
    replicas = direct_replicas(snap, primary)
    if not replicas:
        return DeadCheck(False, f"primary {primary.endpoint} unreachable, but no reachable replica to confirm",
                         primary)
    # Only "Yes" counts as still reading: a hung primary accepts TCP connections, so a replica can sit in a
    # starting state ("Preparing") against a source that will never answer.
    still = [s.endpoint for s in replicas if s.replication and s.replication.io_running == "Yes"]
    if still:
        return DeadCheck(False, f"primary {primary.endpoint} unreachable from here, but replicas still read "
                         f"from it: {', '.join(still)}", primary)
    return DeadCheck(True, f"primary {primary.endpoint} unreachable and lost by all {len(replicas)} replicas",
                     primary)


@dataclass(frozen=True)
class Candidate:
    """One replica considered for promotion, with its positions and, if refused, why."""

    server: ServerState
    received: int  # transactions in the received position (summed over domains)
    applied: int
    refused: str = ""


@dataclass(frozen=True)
class FailoverPlan:
    """What a failover would do. `refused` non-empty: it would do nothing, and says why."""

    old: OldPrimary | None
    candidate: ServerState | None
    repoint: tuple[ServerState, ...] = ()
    considered: tuple[Candidate, ...] = ()
    epoch: int = 0  # the epoch the promotion will write
    refused: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.refused and self.candidate is not None

    def lines(self) -> list[str]:
        """The plan in words, one step per line (for --dry-run and logs)."""
        out = []
        if self.old is not None:
            out.append(f"old primary: {self.old.endpoint} (server {self.old.server_id}, known by {self.old.how}, "
                       f"{'reachable' if self.old.reachable else 'unreachable'})")
        for c in self.considered:
            verdict = f"refused: {c.refused}" if c.refused else "eligible"
            out.append(f"  candidate {c.server.endpoint} id {c.server.server_id}: received {c.received} trx, "
                       f"applied {c.applied} trx, {verdict}")
        if self.refused:
            out.append(f"REFUSED: {self.refused}")
            return out
        assert self.candidate is not None
        cand = self.candidate.endpoint
        out.append(f"1. {cand}: stop the IO thread, wait until the relay log is applied (MASTER_GTID_WAIT)")
        out.append(f"2. {cand}: STOP SLAVE; RESET SLAVE ALL")
        out.append(f"3. {cand}: write epoch {self.epoch} naming server {self.candidate.server_id}")
        out.append(f"4. {cand}: SET GLOBAL read_only=OFF")
        for s in self.repoint:
            out.append(f"5. {s.endpoint}: wait for its relay log, then CHANGE MASTER TO {cand} "
                       "(MASTER_USE_GTID=slave_pos), START SLAVE")
        if self.old is not None:
            out.append(f"6. {self.old.endpoint}: fence (read_only=ON) if it answers; rejoin later only if it "
                       "has not diverged")
        out.extend(f"note: {n}" for n in self.notes)
        return out


def _count(pos_text: str, flavor: str) -> int:
    d = dialect_for(flavor)
    return d.parse_position("").distance_to(d.parse_position(pos_text))


def plan_failover(snap: Snapshot, *, exclude: tuple[str, ...] = (), candidate: str | None = None,
                  require_dead: bool = True, force: bool = False) -> FailoverPlan:
    """Choose the candidate and the replicas to repoint; refuse (with the reason) when it is not safe.

    `candidate` overrides the choice, but only for an eligible server, and (unless `force`) only if no other
    eligible replica has received more than it (that replica's extra transactions would be lost).
    """
    top_epoch = max((s.epoch.epoch for s in snap.reachable if s.epoch), default=0)
    check = confirm_dead(snap)
    old = check.primary
    if old is None:
        return FailoverPlan(None, None, refused=check.reason)
    if require_dead and not check.dead:
        return FailoverPlan(old, None, refused=check.reason)
    considered: list[Candidate] = []
    errant = errant_transactions(snap)  # a replica with GTIDs the primary never had is never promoted silently
    for s in direct_replicas(snap, old):
        rep = s.replication
        assert rep is not None
        received = _count(rep.received_gtid or s.gtid_applied, s.flavor)
        applied = _count(s.gtid_applied, s.flavor)
        why = ""
        if s.endpoint in exclude or s.report_endpoint in exclude:
            why = "excluded"
        elif s.blackhole:
            why = "BLACKHOLE relay: holds no rows"
        elif not s.has_binlog:
            why = "no binlog: replicas could not follow it"
        elif s.endpoint in errant:  # checked before SQL errors: errant GTIDs are what stop strict-mode replicas
            why = (f"errant transactions {', '.join(errant[s.endpoint])}: "
                   "run `iotgw topology errant check` and `errant fix` first")
        elif rep.last_sql_errno:
            why = f"SQL thread error {rep.last_sql_errno}: cannot apply its relay log"
        considered.append(Candidate(s, received, applied, why))
    eligible = [c for c in considered if not c.refused]
    # Most received, then most applied, then the lowest server id (a stable, predictable tie-break).
    eligible.sort(key=lambda c: (-c.received, -c.applied, c.server.server_id))
    notes: list[str] = []
    if not eligible:
        return FailoverPlan(old, None, considered=tuple(considered), refused="no eligible replica to promote")
    chosen = eligible[0]
    if candidate is not None:
        asked = next((c for c in considered if candidate in (c.server.endpoint, c.server.report_endpoint)), None)
        if asked is None:
            return FailoverPlan(old, None, considered=tuple(considered),
                                refused=f"{candidate} is not a reachable direct replica of {old.endpoint}")
        if asked.refused:
            return FailoverPlan(old, None, considered=tuple(considered),
                                refused=f"{candidate} cannot be promoted: {asked.refused}")
        if asked.received < chosen.received:
            msg = (f"{candidate} received {asked.received} trx, {chosen.server.endpoint} received "
                   f"{chosen.received}: promoting it loses transactions")
            if not force:
                return FailoverPlan(old, None, considered=tuple(considered), refused=msg + " (use --force)")
            notes.append(msg)
        chosen = asked
    repoint = tuple(s for s in direct_replicas(snap, old) if s is not chosen.server)
    return FailoverPlan(old, chosen.server, repoint, tuple(considered), top_epoch + 1, "", tuple(notes))


def diverged(server_binlog_pos: str, primary_binlog_state: str) -> list[str]:
    """GTIDs at the end of a server's binlog that the primary never had (MariaDB; empty: it may rejoin).

    `primary_binlog_state` is the primary's `@@gtid_binlog_state` (the last sequence of every server id in
    every domain). A GTID `d-s-n` is on the primary if it holds some `d-s-m` with m >= n: with
    `gtid_strict_mode` a server's sequence numbers grow within a domain, and the primary applied that
    server's transactions in order. Comparing sequence numbers alone would be wrong: after a failover the
    new primary's `0-2-100` looks like the old primary's lost `0-1-100`.
    """
    have = MariaBinlogState.parse(primary_binlog_state)
    return [str(g) for g in MariaPos.parse(server_binlog_pos).gtids if not have.holds(g)]


def returning_primaries(snap: Snapshot) -> list[ServerState]:
    """Old primaries that are back: reachable, replicating from nobody, named by their own (older) epoch.

    A freshly cloned server holds the epoch of the primary it was cloned from, not its own, so it is never
    mistaken for an old primary while it is being built.
    """
    decision = analysis.writer_primary(snap)
    if decision.primary is None:
        return []
    out = []
    for s in snap.reachable:
        if s is decision.primary or s.is_replica or s.epoch is None:
            continue
        if s.epoch.server_id == s.server_id and s.epoch.epoch < decision.epoch:
            out.append(s)
    return out
