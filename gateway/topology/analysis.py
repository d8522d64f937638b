"""Decisions from a topology snapshot: pure functions, no servers, so stored snapshots can test them.

The writer asks `writer_primary` (the epoch rule), reads ask `replica_health`, `topology show` asks `roles`
and `tree`. Nothing here connects to anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gateway.topology.dialect import dialect_for
from gateway.topology.model import ServerState, Snapshot, endpoint


def parent(snap: Snapshot, s: ServerState) -> ServerState | None:
    """The server `s` replicates from, if it is in the snapshot.

    The source's server id (known once the IO thread has connected) is the sure link; before that, the
    configured host:port is matched against each server's probe and reported addresses.
    """
    rep = s.replication
    if rep is None:
        return None
    if rep.source_server_id:
        found = snap.by_server_id(rep.source_server_id)
        if found is not None:
            return found
    return snap.get(rep.source)


def children(snap: Snapshot, s: ServerState) -> list[ServerState]:
    """Servers of the snapshot that replicate from `s`, by server id."""
    out = [c for c in snap.servers if c.reachable and c is not s and parent(snap, c) is s]
    return sorted(out, key=lambda c: c.server_id)


def chain_to(snap: Snapshot, s: ServerState, ancestor: ServerState) -> list[ServerState] | None:
    """The servers from `s` up to `ancestor` (both included) along replication links, or None."""
    path = [s]
    cur = s
    while cur is not ancestor:
        cur = parent(snap, cur)  # type: ignore[assignment]
        if cur is None or cur in path:  # no source, or a replication ring
            return None
        path.append(cur)
    return path


@dataclass(frozen=True)
class PrimaryDecision:
    """Which server the writer may write to, and why (or why none)."""

    primary: ServerState | None
    epoch: int  # the highest epoch among reachable servers (0: none has one)
    adopt: bool  # no server has an epoch: the writer writes epoch 1 on `primary` before using it
    reason: str
    refused: tuple[tuple[str, str], ...] = ()  # (endpoint, why) for writable servers that were not accepted


def writer_primary(snap: Snapshot) -> PrimaryDecision:
    """The epoch rule: accept the writable, non-replicating server named by the highest epoch.

    A restarted old primary holds an older epoch and is refused whatever its `read_only` says. A topology
    without any epoch row is adopted only when exactly one server is writable and replicates from nobody.
    """
    reachable = snap.reachable
    writable_roots = [s for s in reachable if s.writable and not s.is_replica]
    with_epoch = [s for s in reachable if s.epoch is not None]
    if not with_epoch:
        if len(writable_roots) == 1:
            return PrimaryDecision(writable_roots[0], 0, True, "no epoch yet: adopting the only writable primary")
        if not writable_roots:
            return PrimaryDecision(None, 0, False, "no reachable server is writable and free of replication")
        names = ", ".join(s.endpoint for s in writable_roots)
        return PrimaryDecision(None, 0, False, f"several writable primaries and no epoch to choose ({names})",
                               tuple((s.endpoint, "ambiguous without an epoch") for s in writable_roots))
    top = max(s.epoch.epoch for s in with_epoch)  # type: ignore[union-attr]
    named = {(s.epoch.server_id, s.epoch.port) for s in with_epoch if s.epoch.epoch == top}  # type: ignore[union-attr]
    if len(named) > 1:
        return PrimaryDecision(None, top, False, f"epoch {top} names different servers {sorted(named)}: refusing")
    (named_id, named_port), = named
    chosen = next((s for s in reachable if s.server_id == named_id and _has_port(s, named_port)), None)
    refused = tuple((s.endpoint, _refusal(s, top, named_id)) for s in writable_roots if s is not chosen)
    if chosen is None:
        return PrimaryDecision(None, top, False, f"epoch {top} names server {named_id} (port {named_port}), "
                               "which is not reachable", refused)
    if chosen.epoch is None or chosen.epoch.epoch != top:
        return PrimaryDecision(None, top, False, f"{chosen.endpoint} is named by epoch {top} but does not hold it",
                               refused)
    if chosen.is_replica:
        return PrimaryDecision(None, top, False, f"{chosen.endpoint} (epoch {top}) still replicates", refused)
    if chosen.read_only:
        return PrimaryDecision(None, top, False, f"{chosen.endpoint} (epoch {top}) is read-only: promotion not "
                               "finished", refused)
    return PrimaryDecision(chosen, top, False, f"{chosen.endpoint} holds epoch {top} and is writable", refused)


def _has_port(s: ServerState, port: int) -> bool:
    return not port or any(ep.endswith(f":{port}") for ep in (s.endpoint, s.report_endpoint) if ep)


def _refusal(s: ServerState, top: int, named_id: int) -> str:
    held = s.epoch.epoch if s.epoch else 0
    if held < top:
        return f"holds epoch {held}, older than {top} (an old primary: never written)"
    return f"epoch {top} names server {named_id}, not {s.server_id}"


@dataclass(frozen=True)
class ReplicaHealth:
    """How usable one replica is right now."""

    server: ServerState
    healthy: bool
    reasons: tuple[str, ...] = ()
    lag_s: int | None = None
    lag_trx: int | None = None
    depth: int = 0  # 1: replicates from the primary, 2: through one intermediate, …


def lag_trx(replica: ServerState, primary: ServerState) -> int | None:
    """Transactions the primary's binlog has that the replica has not applied (None if not comparable)."""
    if replica.flavor != primary.flavor:
        return None
    d = dialect_for(replica.flavor)
    return d.parse_position(replica.gtid_applied).distance_to(d.parse_position(primary.gtid_binlog))


def replica_health(snap: Snapshot, primary: ServerState | None, max_lag_s: float | None = None,
                   max_lag_trx: int | None = None) -> list[ReplicaHealth]:
    """Every replica of the snapshot, healthy or not with reasons, ordered by server id.

    Healthy means: reachable, both threads running, under the lag limits (seconds and GTID distance), holding
    data (not a BLACKHOLE relay), and replicating (directly or through intermediates) from `primary`.
    """
    out = []
    for s in sorted(snap.servers, key=lambda s: (s.server_id, s.endpoint)):
        if primary is not None and s is primary:
            continue
        if not s.reachable:
            out.append(ReplicaHealth(s, False, (f"unreachable: {s.error}",)))
            continue
        rep = s.replication
        if rep is None:
            continue
        reasons: list[str] = []
        if rep.io_running != "Yes":
            reasons.append(f"IO thread {rep.io_running}" + (f": {rep.last_io_error}" if rep.last_io_error else ""))
        if not rep.sql_running:
            reasons.append("SQL thread stopped" + (f": {rep.last_sql_error}" if rep.last_sql_error else ""))
        if s.blackhole:
            reasons.append("BLACKHOLE relay: holds no rows")
        depth = 0
        distance = None
        if primary is not None:
            chain = chain_to(snap, s, primary)
            if chain is None:
                reasons.append(f"does not replicate from the primary {primary.endpoint}")
            else:
                depth = len(chain) - 1
                for link in chain[1:-1]:
                    if link.replication is None or not link.replication.running:
                        reasons.append(f"its source {link.endpoint} is not replicating")
            distance = lag_trx(s, primary)
        seconds = rep.seconds_behind if rep.running else None
        if max_lag_s is not None and rep.running:
            if seconds is None:
                reasons.append("lag unknown")
            elif seconds > max_lag_s:
                reasons.append(f"lag {seconds} s > {max_lag_s:g} s")
        if max_lag_trx is not None and distance is not None and distance > max_lag_trx:
            reasons.append(f"lag {distance} transactions > {max_lag_trx}")
        out.append(ReplicaHealth(s, not reasons, tuple(reasons), seconds, distance, depth))
    return out


def rank_candidates(snap: Snapshot, exclude: tuple[str, ...] = ()) -> list[ServerState]:
    """Replicas that could be promoted, best first: most received GTID position, then most applied.

    Never a BLACKHOLE relay, an unreachable server or one without binlog (replicas could not follow it).
    """
    out = []
    for s in snap.reachable:
        if s.replication is None or s.blackhole or not s.has_binlog or s.endpoint in exclude:
            continue
        d = dialect_for(s.flavor)
        received = d.parse_position(s.replication.received_gtid or s.gtid_applied)
        applied = d.parse_position(s.gtid_applied)
        empty = d.parse_position("")
        out.append((empty.distance_to(received), empty.distance_to(applied), -s.server_id, s))
    out.sort(key=lambda t: t[:3], reverse=True)
    return [t[3] for t in out]


def healthy_replicas(snap: Snapshot, primary: ServerState | None, max_lag_s: float | None = None,
                     max_lag_trx: int | None = None) -> list[ReplicaHealth]:
    """Only the healthy ones, by server id (the classic selector's rotation order)."""
    return [h for h in replica_health(snap, primary, max_lag_s, max_lag_trx) if h.healthy]


def roles(snap: Snapshot, decision: PrimaryDecision | None = None) -> dict[str, str]:
    """A role per endpoint: primary, replica, intermediate, relay, refused-primary, detached, unreachable."""
    decision = decision or writer_primary(snap)
    out: dict[str, str] = {}
    for s in snap.servers:
        if not s.reachable:
            out[s.endpoint] = "unreachable"
        elif decision.primary is s:
            out[s.endpoint] = "primary"
        elif s.is_replica:
            kids = children(snap, s)
            if s.blackhole:
                out[s.endpoint] = "relay"
            else:
                out[s.endpoint] = "intermediate" if kids else "replica"
        elif s.writable:
            out[s.endpoint] = "refused-primary"
        else:
            out[s.endpoint] = "detached"
    return out


@dataclass
class TreeNode:
    """One server in the replication tree and the servers that replicate from it."""

    server: ServerState
    children: list[TreeNode] = field(default_factory=list)


def tree(snap: Snapshot) -> list[TreeNode]:
    """Replication trees: roots are servers replicating from nobody in the snapshot (the primary first)."""
    decision = writer_primary(snap)

    def build(s: ServerState, seen: set[int]) -> TreeNode:
        seen.add(id(s))
        return TreeNode(s, [build(c, seen) for c in children(snap, s) if id(c) not in seen])

    def orphan(s: ServerState) -> bool:  # replicates from nobody, or from a server that is down
        src = parent(snap, s)
        return src is None or not src.reachable

    roots = [s for s in snap.servers if s.reachable and orphan(s)]
    roots.sort(key=lambda s: (s is not decision.primary, s.server_id))
    seen: set[int] = set()
    return [build(r, seen) for r in roots]


@dataclass(frozen=True)
class OldPrimary:
    """Who the primary was, as far as the snapshot can tell."""

    endpoint: str  # '' when nothing in the snapshot names a primary
    server_id: int
    state: ServerState | None  # the snapshot's entry for it, if it was probed (reachable or not)
    how: str  # "epoch" or "replicas' source"

    @property
    def reachable(self) -> bool:
        return self.state is not None and self.state.reachable


def old_primary(snap: Snapshot) -> OldPrimary | None:
    """The primary the topology had: named by the highest epoch, else the source most replicas name."""
    with_epoch = [s for s in snap.reachable if s.epoch is not None]
    if with_epoch:
        top = max(with_epoch, key=lambda s: s.epoch.epoch).epoch  # type: ignore[union-attr]
        ep = endpoint(top.host, top.port)
        state = snap.by_server_id(top.server_id) or snap.get(ep)
        return OldPrimary(ep, top.server_id, state, "epoch")
    sources = Counter(s.replication.source for s in snap.reachable if s.replication is not None)
    if not sources:
        return None
    ep, _ = sources.most_common(1)[0]
    state = snap.get(ep)
    # A dead source's id is still known to its replicas (Master_Server_Id, once they had connected).
    ids = Counter(s.replication.source_server_id for s in snap.reachable
                  if s.replication is not None and s.replication.source == ep and s.replication.source_server_id)
    server_id = state.server_id if state is not None and state.reachable else (ids.most_common(1)[0][0] if ids else 0)
    return OldPrimary(ep, server_id, state, "replicas' source")
