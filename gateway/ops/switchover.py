"""`iotgw topology switchover --new-primary X [--demote-old]`: a planned change of primary, in the safe order.

1. fence the old primary (`read_only=ON`: the writer gets 1290 and keeps spooling) and read its final position;
2. wait until the candidate has applied that position (`MASTER_GTID_WAIT`);
3. promote the candidate (the topology layer's `promote`: stop/reset replication, new epoch, `read_only=OFF`,
   repoint the other replicas);
4. with `demote_old`, make the old primary a replica of the new one with `MASTER_USE_GTID=current_pos`
   (its `gtid_slave_pos` is stale: it wrote those transactions itself).

Any error before the new epoch is written rolls back: the candidate replicates from the old primary again and
the old primary is reopened. After the epoch is written there is no going back (the writer already trusts the
new primary), so a later error is reported with what remains to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pymysql

from gateway.ops.plan import plan_failover
from gateway.topology import analysis
from gateway.topology.conn import Credentials, open_connection, set_read_only
from gateway.topology.dialect import dialect_for
from gateway.topology.discovery import discover, read_epoch
from gateway.topology.model import split_endpoint
from gateway.topology.operation import OpError, Steps
from gateway.topology.promote import PromotionError, promote


class SwitchoverError(OpError):
    """Refused or failed; says whether it was rolled back."""


@dataclass
class SwitchoverResult:
    old_primary: str
    new_primary: str
    epoch: int = 0
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0


def demote(ep: str, new_primary: str, admin: Credentials, repl: tuple[str, str]) -> None:
    """Make a former primary replicate from `new_primary` (current_pos: its own writes are in its binlog).

    `repl` is the replication account (user, password): a server that was never a replica has none configured.
    """
    host, port = split_endpoint(new_primary)
    with open_connection(ep, admin) as conn, conn.cursor() as cur:
        d = set_read_only(cur, True)
        cur.execute(d.stop_replica_sql)
        cur.execute(*d.change_source_sql(host, port, repl[0], repl[1], gtid_mode="current_pos"))
        cur.execute(d.start_replica_sql)


def switchover(seeds: list[str], new_primary: str, admin: Credentials, *, demote_old: bool = False,
               repl: tuple[str, str] = ("repl", ""),
               timeout: float = 30.0, progress: Callable[[str], None] | None = None) -> SwitchoverResult:
    """Move the primary role to `new_primary`; raises SwitchoverError (after rolling back when it can)."""
    started = time.monotonic()
    snap = discover(seeds, admin)
    decision = analysis.writer_primary(snap)
    old = decision.primary
    if old is None:
        raise SwitchoverError(f"no live primary ({decision.reason}): use failover")
    plan = plan_failover(snap, candidate=new_primary, require_dead=False, force=True)
    if not plan.ok or plan.candidate is None:
        raise SwitchoverError(f"cannot switch to {new_primary}: {plan.refused}")
    cand = plan.candidate
    result = SwitchoverResult(old_primary=old.endpoint, new_primary=cand.endpoint)

    step = Steps(progress, result.steps)

    od, cd = dialect_for(old.flavor), dialect_for(cand.flavor)
    with open_connection(old.endpoint, admin) as conn, conn.cursor() as cur:
        set_read_only(cur, True, od)
        cur.execute(od.binlog_position_sql)
        position = str(cur.fetchone()[0]).replace("\n", "")
    step(f"{old.endpoint}: read_only=ON (writes stop here); final position {position}")
    promoted_epoch = 0
    try:
        with open_connection(cand.endpoint, admin, io_timeout=timeout + 10) as conn, conn.cursor() as cur:
            if cand.replication is not None and not cand.replication.sql_running:
                cur.execute(cd.start_sql_thread_sql)
            cur.execute(*cd.wait_for_gtid_sql(position, timeout))
            if str(cur.fetchone()[0]) != "0":
                raise SwitchoverError(f"{cand.endpoint} did not apply {position} within {timeout:g} s")
        step(f"{cand.endpoint}: caught up with {position}")
        live = [s.endpoint for s in snap.reachable]
        promoted = promote(live, cand.endpoint, admin, apply_timeout=timeout, by="iotgw topology switchover",
                           check=False, progress=step)
        promoted_epoch = promoted.epoch
    except (SwitchoverError, PromotionError, pymysql.MySQLError, OSError) as exc:
        if _epoch_on(cand.endpoint, admin) > decision.epoch:
            raise SwitchoverError(f"failed after {cand.endpoint} was published as primary: {exc}; "
                                  f"finish with `iotgw topology promote {cand.endpoint}`") from exc
        _rollback(old.endpoint, cand.endpoint, admin, repl, step)
        raise SwitchoverError(f"switchover to {cand.endpoint} failed and was rolled back: {exc}") from exc
    result.epoch = promoted_epoch
    if demote_old:
        try:
            demote(old.endpoint, cand.endpoint, admin, repl)
            step(f"{old.endpoint}: now replicates from {cand.endpoint} (MASTER_USE_GTID=current_pos)")
        except (pymysql.MySQLError, OSError) as exc:
            step(f"{old.endpoint}: NOT demoted ({exc}); it stays fenced (read_only=ON)")
    result.seconds = time.monotonic() - started
    return result


def _epoch_on(ep: str, admin: Credentials) -> int:
    try:
        with open_connection(ep, admin) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            row = read_epoch(cur)
            return int(row["epoch"]) if row else 0
    except (pymysql.MySQLError, OSError):
        return 0


def _rollback(old: str, cand: str, admin: Credentials, repl: tuple[str, str], step: Callable[[str], None]) -> None:
    """Before the new epoch exists: the candidate follows the old primary again, which reopens for writes."""
    host, port = split_endpoint(old)
    try:
        with open_connection(cand, admin) as conn, conn.cursor() as cur:
            d = set_read_only(cur, True)
            cur.execute(d.replica_status_sql)
            if cur.fetchone() is None:  # promotion had reset it (account too): point it back in full
                cur.execute(*d.change_source_sql(host, port, repl[0], repl[1]))
            cur.execute(d.start_replica_sql)
        step(f"rollback: {cand} replicates from {old} again")
    except (pymysql.MySQLError, OSError) as exc:
        step(f"rollback: could not restore {cand}: {exc}")
    with open_connection(old, admin) as conn, conn.cursor() as cur:
        set_read_only(cur, False)
    step(f"rollback: {old} reopened (read_only=OFF)")
