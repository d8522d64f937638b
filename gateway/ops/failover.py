"""`iotgw topology failover`: the primary is dead; promote the best replica and repoint the others.

The decision is `gateway.ops.plan.plan_failover` (pure, on a snapshot); the promotion itself is the topology
layer's `promote` (drain the relay log, stop and reset replication, write the new epoch, `read_only=OFF`,
repoint the others with `MASTER_USE_GTID=slave_pos`). This module adds what a failover needs around it:
discovery with short timeouts (a dead or frozen primary must not stall us), starting a stopped SQL thread so a
lagging replica can apply its relay log before it is repointed, and fencing the old primary if it answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pymysql

from gateway.ops.plan import FailoverPlan, plan_failover
from gateway.topology.conn import Credentials, open_connection, set_read_only
from gateway.topology.dialect import dialect_for
from gateway.topology.discovery import discover
from gateway.topology.model import Snapshot
from gateway.topology.operation import OpError, Steps
from gateway.topology.promote import PromotionError, promote


class FailoverError(OpError):
    """The failover was refused or failed; `plan` says what was decided."""

    def __init__(self, message: str, plan: FailoverPlan | None = None) -> None:
        super().__init__(message)
        self.plan = plan


@dataclass
class FailoverResult:
    """What happened: the plan, the steps taken, the new primary and epoch, how long it took."""

    plan: FailoverPlan
    new_primary: str = ""
    epoch: int = 0
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (seconds since the start, step)


def probe_credentials(admin: Credentials) -> Credentials:
    """Short timeouts for looking at a topology whose primary may be dead or frozen."""
    return admin.with_timeouts(connect=1.0, io=2.0)


def fence(ep: str, admin: Credentials) -> str:
    """`read_only=ON` on `ep` if it answers within a second or two; returns what happened, in words."""
    try:
        with open_connection(ep, probe_credentials(admin)) as conn, conn.cursor() as cur:
            set_read_only(cur, True)
        return f"{ep}: fenced (read_only=ON)"
    except (pymysql.MySQLError, OSError) as exc:
        return f"{ep}: not reachable, not fenced ({type(exc).__name__}); fence it when it returns"


def _stop_io_threads(plan: FailoverPlan, admin: Credentials, say: Callable[[str], None]) -> None:
    """Stop every replica's IO thread at once, in parallel, before the promotion.

    The primary is confirmed dead, so they receive nothing more; but stopping an IO thread that is waiting to
    reconnect takes up to MASTER_CONNECT_RETRY (about a second), and paying that once in parallel instead of
    once for the candidate and again for the others halves the failover. The IO threads are not started
    again before each replica has applied its relay log (the promotion's repoint step waits for that).
    """
    servers = [s for s in (plan.candidate, *plan.repoint) if s is not None and s.replication is not None]

    def stop(ep: str, flavor: str) -> str:
        try:
            with open_connection(ep, admin) as conn, conn.cursor() as cur:
                cur.execute(dialect_for(flavor).stop_io_thread_sql)
            return ep
        except (pymysql.MySQLError, OSError) as exc:
            return f"{ep} ({exc})"

    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        done = list(pool.map(lambda s: stop(s.endpoint, s.flavor), servers))
    say(f"IO threads stopped: {', '.join(done)}")


def _start_stopped_sql_threads(plan: FailoverPlan, admin: Credentials, say: Callable[[str], None]) -> None:
    """A replica whose SQL thread was stopped (without an error) could never apply its relay log: start it."""
    for s in (plan.candidate, *plan.repoint):
        if s is None or s.replication is None or s.replication.sql_running or s.replication.last_sql_errno:
            continue
        with open_connection(s.endpoint, admin) as conn, conn.cursor() as cur:
            cur.execute(dialect_for(s.flavor).start_sql_thread_sql)
        say(f"{s.endpoint}: SQL thread was stopped: started it so it applies its relay log")


def failover(seeds: list[str], admin: Credentials, *, exclude: tuple[str, ...] = (), candidate: str | None = None,
             force: bool = False, dry_run: bool = False, apply_timeout: float = 30.0, snapshot: Snapshot | None = None,
             by: str = "iotgw topology failover", progress: Callable[[str], None] | None = None) -> FailoverResult:
    """Fail over from a dead primary. Raises FailoverError (with the plan) when refused or when a step fails."""
    started = time.monotonic()
    snap = snapshot or discover(seeds, probe_credentials(admin))
    plan = plan_failover(snap, exclude=exclude, candidate=candidate, force=force)
    result = FailoverResult(plan=plan, dry_run=dry_run)
    if not plan.ok:
        raise FailoverError(plan.refused, plan)
    if dry_run:
        result.steps = plan.lines()
        result.seconds = time.monotonic() - started
        return result
    assert plan.candidate is not None

    step = Steps(progress, result.steps, timeline=result.timeline, started=started)

    step(f"candidate {plan.candidate.endpoint} (server {plan.candidate.server_id}); old primary "
         f"{plan.old.endpoint if plan.old else '?'} confirmed dead")
    # Fence the old primary in parallel with the promotion: a partitioned (not dead) primary must stop taking
    # writes as soon as possible, and a dead one costs a refused connection we need not wait for.
    fencing = ThreadPoolExecutor(max_workers=1)
    fenced = fencing.submit(fence, plan.old.endpoint, admin) if plan.old is not None else None
    try:
        _stop_io_threads(plan, admin, step)
        _start_stopped_sql_threads(plan, admin, step)
        live = [s.endpoint for s in snap.reachable]
        promoted = promote(live, plan.candidate.endpoint, admin, apply_timeout=apply_timeout, by=by,
                           check=not force, progress=step)
    except (PromotionError, pymysql.MySQLError, OSError) as exc:
        raise FailoverError(f"failover to {plan.candidate.endpoint} failed: {exc}", plan) from exc
    finally:
        fencing.shutdown(wait=False)
    result.new_primary, result.epoch = promoted.new_primary, promoted.epoch
    if fenced is not None:
        step(fenced.result())  # bounded: fence() uses 1-2 s timeouts
    result.seconds = time.monotonic() - started
    return result
