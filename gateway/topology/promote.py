"""A person's manual promotion (`iotgw topology promote X`), in the one safe order (each step needs the previous):

fence any other writable primary → let the candidate apply its relay log → stop and reset its replication →
publish the new primary (a higher epoch row, on the candidate) → `read_only=OFF` → repoint the other replicas.

The failover and switchover commands (gateway.ops) choose the candidate and add the checks of their own;
this module is the part they share: what "promote this server" means.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pymysql

from gateway.topology import analysis
from gateway.topology.conn import Credentials, dialect_of, open_connection, set_read_only
from gateway.topology.dialect import dialect_for
from gateway.topology.discovery import discover
from gateway.topology.epoch import write_epoch
from gateway.topology.model import ServerState, Snapshot, endpoint, split_endpoint
from gateway.topology.operation import OpError, Steps


class PromotionError(OpError):
    """The promotion was refused or failed; the message says which step and why."""


@dataclass
class PromotionResult:
    new_primary: str
    epoch: int
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _wait_relay_applied(cur: pymysql.cursors.Cursor, ep: str, timeout: float) -> None:
    """Stop fetching, then wait until everything fetched is applied (never lose the relay log)."""
    d = dialect_of(cur)
    cur.execute(d.stop_io_thread_sql)
    cur.execute(d.replica_status_sql)
    cols = [c[0] for c in cur.description]
    row = dict(zip(cols, cur.fetchone() or (), strict=False))
    received = str(row.get("Gtid_IO_Pos") or row.get("Retrieved_Gtid_Set") or "").replace("\n", "")
    if not received:
        return
    cur.execute(*d.wait_for_gtid_sql(received, timeout))
    if str(cur.fetchone()[0]) not in ("0",):
        raise PromotionError(f"{ep} did not apply its relay log ({received}) within {timeout:g} s")


def check_candidate(snap: Snapshot, target: ServerState) -> None:
    """Refuse a candidate that cannot be a primary or is behind another replica (whose data would be lost)."""
    if not target.reachable:
        raise PromotionError(f"{target.endpoint} is not reachable: {target.error}")
    if not target.has_binlog:
        raise PromotionError(f"{target.endpoint} has no binlog: replicas could not follow it")
    if target.blackhole:
        raise PromotionError(f"{target.endpoint} is a BLACKHOLE relay: it holds no rows and is never promoted")
    d = dialect_for(target.flavor)
    mine = d.parse_position(target.replication.received_gtid if target.replication else target.gtid_binlog)
    mine_applied = d.parse_position(target.gtid_applied or target.gtid_binlog)
    for other in snap.reachable:
        if other is target or other.replication is None or other.blackhole:
            continue
        theirs = d.parse_position(other.replication.received_gtid or other.gtid_applied)
        if not (mine.contains(theirs) or mine_applied.contains(theirs)):
            raise PromotionError(f"{other.endpoint} has received {theirs}, more than {target.endpoint} "
                                 f"({mine}): promote the most advanced replica")


def promote(seeds: list[str], target: str, admin: Credentials, *, repoint: bool = True, apply_timeout: float = 30.0,
            by: str = "iotgw topology promote", check: bool = True,
            progress: Callable[[str], None] | None = None) -> PromotionResult:
    """Make `target` the primary: fence, drain, publish epoch, open, repoint. Returns the steps taken."""
    started = time.monotonic()
    target = endpoint(*split_endpoint(target))
    snap = discover([*seeds, target], admin)
    cand = snap.get(target)
    if cand is None:
        raise PromotionError(f"{target} not found")
    if check:
        check_candidate(snap, cand)
    result = PromotionResult(new_primary=cand.endpoint, epoch=0)

    step = Steps(progress, result.steps)

    d = dialect_for(cand.flavor)
    for other in snap.reachable:
        if other is not cand and other.writable and not other.is_replica:
            with open_connection(other.endpoint, admin) as conn, conn.cursor() as cur:
                set_read_only(cur, True, d)
            step(f"fenced {other.endpoint} (read_only=ON)")
    with open_connection(cand.endpoint, admin, io_timeout=apply_timeout + 10) as conn, conn.cursor() as cur:
        if cand.is_replica:
            _wait_relay_applied(cur, cand.endpoint, apply_timeout)
            cur.execute(d.stop_replica_sql)
            cur.execute(d.reset_replica_all_sql)
            step(f"{cand.endpoint}: relay log applied, replication stopped and reset")
        epoch = 1 + max((s.epoch.epoch for s in snap.reachable if s.epoch), default=0)
        host, port = split_endpoint(cand.report_endpoint or cand.endpoint)
        cur.execute("SET SESSION sql_log_bin=1")  # the row must replicate: it is how everyone learns
        write_epoch(cur, epoch, cand.server_id, host, port, by)
        result.epoch = epoch
        step(f"{cand.endpoint}: published epoch {epoch} naming server {cand.server_id}")
        set_read_only(cur, False, d)
        step(f"{cand.endpoint}: read_only=OFF (the new primary)")
    if repoint:
        host, port = split_endpoint(cand.report_endpoint or cand.endpoint)

        def move(other: ServerState) -> str:
            try:
                with open_connection(other.endpoint, admin, io_timeout=apply_timeout + 10) as conn, conn.cursor() as cur:
                    _wait_relay_applied(cur, other.endpoint, apply_timeout)
                    cur.execute(d.stop_replica_sql)
                    cur.execute(*d.repoint_sql(host, port))
                    cur.execute(d.start_replica_sql)
                return f"{other.endpoint}: now replicates from {cand.endpoint}"
            except (pymysql.MySQLError, OSError, PromotionError) as exc:
                return f"{other.endpoint}: NOT repointed: {exc}"

        # Below an intermediate a replica keeps its place; direct replicas of the old primary move.
        movers = [o for o in snap.reachable if o is not cand and o.replication is not None
                  and (src := analysis.parent(snap, o)) is not cand and not (src is not None and src.is_replica)]
        # In parallel: stopping an IO thread that is waiting to reconnect to a dead primary takes about a second.
        with ThreadPoolExecutor(max_workers=max(1, len(movers))) as pool:
            for message in pool.map(move, movers):
                step(message)
    result.seconds = time.monotonic() - started
    return result
