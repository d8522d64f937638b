"""The failover monitor on real sandboxes: kill -9 rounds under load, a hung primary, anti-flap, two monitors."""

from __future__ import annotations

import time

import pytest

from gateway.ops.monitor import MonitorConfig, start_in_background
from gateway.sandbox.rebuild import rebuild_node
from gateway.topology.epoch import write_epoch
from tests.helpers import ADMIN, Load, consistency, name_of, read_only, replica_status, rows_or_zero, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]


class Running:
    """A monitor checking in a background thread; stopped by `close`."""

    def __init__(self, sb, **settings):
        cfg = MonitorConfig(**{"interval": 0.5, "failcount": 2, "block_s": 2.0, "repl": ("repl", "repl"),
                               **settings})
        self.monitor, self.thread = start_in_background([sb.endpoint(n) for n in sb.db_names()], ADMIN, cfg)

    def kinds(self, kind):
        return [e for e in self.monitor.events if e.kind == kind]

    def wait_for(self, kind, timeout, what):
        """Wait for an event of `kind`; on timeout the failure lists every event the monitor had, to tell why."""
        try:
            return wait_until(lambda: self.kinds(kind), timeout, what)
        except TimeoutError as exc:
            seen = "; ".join(f"{e.kind}: {e.message}" for e in self.monitor.events[-20:]) or "none"
            raise TimeoutError(f"{exc} (after {self.monitor.checks} checks; last events: {seen})") from None

    def close(self):
        self.monitor.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def epoch_names(sb, node, *then):
    """Write epoch 1 naming `node` as the primary (as setup does), then run the `then` statements there."""
    with sb.connect(node) as conn, conn.cursor() as cur:
        write_epoch(cur, 1, sb.node(node).server_id, "127.0.0.1", sb.node(node).port, "test")
        for statement in then:
            cur.execute(statement)


def replicates_from(sb, name, source):
    try:
        row = replica_status(sb, name)
    except Exception:  # noqa: BLE001 - down or starting
        return False
    return row.get("Master_Port") == sb.node(source).port and row.get("Slave_SQL_Running") == "Yes"


def bring_back(sb, mon, old, new):
    """Restart the killed node: the monitor rejoins it, or reports it diverged and we rebuild it."""
    sb.restart(old)
    outcome = wait_until(
        lambda: ("rejoined" if replicates_from(sb, old, new) else None)
        or ("diverged" if sb.endpoint(old) in mon.monitor.diverged else None),
        30, f"{old} to be rejoined or reported diverged")
    if outcome == "diverged":
        assert read_only(sb, old)  # fenced meanwhile
        rebuild_node(sb, old)
    wait_until(lambda: replicates_from(sb, old, new), 30, f"{old} to replicate from {new}")
    return outcome


def test_ten_kill9_rounds_under_load_with_the_monitor(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=3, broker=False)
    load = Load.start(sb, tmp_path, sb.db_names())
    mon = Running(sb)
    primary = "db1"
    outcomes, times = [], []
    try:
        for round_no in range(10):
            base = rows_or_zero(sb, primary)
            wait_until(lambda p=primary, b=base: rows_or_zero(sb, p) >= b + 200, 60, f"round {round_no}: flow")
            done = len(mon.monitor.failovers)
            t0 = time.monotonic()
            sb.kill(primary)
            wait_until(lambda d=done: len(mon.monitor.failovers) > d, 30, f"round {round_no}: a failover")
            t_done = time.monotonic() - t0
            result = mon.monitor.failovers[-1]
            new = name_of(sb, result.new_primary)
            eligible = [c for c in result.plan.considered if not c.refused]
            assert max(c.received for c in eligible) == next(
                c.received for c in eligible if c.server.endpoint == result.new_primary)
            before = rows_or_zero(sb, new)
            wait_until(lambda n=new, b=before: rows_or_zero(sb, n) > b, 30, f"round {round_no}: writes on {new}")
            times.append(time.monotonic() - t0)
            print(f"round {round_no}: failover done {t_done:.2f} s after the kill, first write {times[-1]:.2f} s; "
                  f"failover timeline {result.timeline}")
            outcomes.append(bring_back(sb, mon, primary, new))
            primary = new
            load.settle()
            count, _ = consistency(sb, sb.db_names(), primary)
            assert count == load.producer.acked, f"round {round_no}: {load.producer.acked} acked, {count} stored"
            load.producer.resume()
        assert len(mon.monitor.failovers) == 10
        assert load.drain.error is None
        print(f"kill to first write on the new primary: {sorted(round(t, 2) for t in times)}; back: {outcomes}")
    finally:
        mon.close()
        load.stop()


def own_seq(sb, name):
    """The highest sequence number this server wrote itself (its own server id in @@gtid_binlog_state)."""
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@server_id, @@gtid_binlog_state")
        server_id, state = cur.fetchone()
    return max((int(g.split("-")[2]) for g in state.split(",") if g and int(g.split("-")[1]) == server_id),
               default=0)


def test_hung_primary_is_failed_over_and_fenced_when_it_resumes(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=2, broker=False)
    load = Load.start(sb, tmp_path, sb.db_names())
    mon = Running(sb)
    try:
        wait_until(lambda: rows_or_zero(sb, "db1") >= 300, 60, "readings to flow")
        sb.freeze("db1")  # SIGSTOP: connections stay open, nothing answers
        wait_until(lambda: mon.monitor.failovers, 40, "a failover from the hung primary")
        new = name_of(sb, mon.monitor.failovers[-1].new_primary)
        wait_until(lambda: load.follows(sb, new), 30, "the writer to follow the new primary")
        before = rows_or_zero(sb, new)
        wait_until(lambda: rows_or_zero(sb, new) > before + 100, 30, "writes on the new primary")
        sb.thaw("db1")
        wait_until(lambda: read_only(sb, "db1"), 20, "the resumed old primary to be fenced")
        fenced_at = own_seq(sb, "db1")  # a write in flight at the freeze may have committed on thaw: no more
        outcome = wait_until(
            lambda: ("rejoined" if replicates_from(sb, "db1", new) else None)
            or ("diverged" if sb.endpoint("db1") in mon.monitor.diverged else None),
            30, "db1 to be rejoined or reported diverged")
        with sb.connect(new) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_state")
            new_state = cur.fetchone()[0]
        db1_id = sb.node("db1").server_id
        lost_on_new = [g for g in new_state.split(",") if g and int(g.split("-")[1]) == db1_id]
        has_all = any(int(g.split("-")[2]) >= fenced_at for g in lost_on_new) or fenced_at == 0
        # Diverged exactly when db1 committed something the new primary never received.
        assert (outcome == "diverged") == (not has_all), (outcome, fenced_at, new_state)
        load.settle()
        assert own_seq(sb, "db1") == fenced_at  # the gateway wrote nothing to it after it resumed
        survivors = [n for n in sb.db_names() if n != "db1"]
        count, _ = consistency(sb, survivors, new)
        assert count == load.producer.acked  # the in-flight reading is on the new primary anyway
        if outcome == "diverged":
            rebuild_node(sb, "db1")
        consistency(sb, sb.db_names(), new)
    finally:
        mon.close()
        load.stop()


def test_anti_flap_blocks_a_second_automatic_failover(make_sandbox):
    sb = make_sandbox(replicas=4, broker=False)  # two dead of five still leaves a majority for the lock
    mon = Running(sb, block_s=6.0)
    try:
        wait_until(lambda: mon.monitor.checks >= 2, 20, "the monitor to start")
        sb.kill("db1")
        wait_until(lambda: mon.monitor.failovers, 30, "the first failover")
        first_at = next(e.at for e in mon.monitor.events if e.kind == "failover")
        second = name_of(sb, mon.monitor.failovers[0].new_primary)
        sb.kill(second)  # at once: a flapping topology
        mon.wait_for("blocked", 20, "the monitor to refuse (blocked)")
        wait_until(lambda: len(mon.monitor.failovers) == 2, 30, "the second failover after the block")
        second_at = [e.at for e in mon.monitor.events if e.kind == "failover"][1]
        assert second_at - first_at >= 6.0
        assert mon.monitor.failovers[1].epoch == mon.monitor.failovers[0].epoch + 1
    finally:
        mon.close()


def test_two_monitors_exactly_one_failover(make_sandbox):
    sb = make_sandbox(replicas=3, broker=False)
    epoch_names(sb, "db1")
    sb.wait_caught_up()
    a, b = Running(sb, interval=0.3), Running(sb, interval=0.3)
    try:
        wait_until(lambda: a.monitor.checks >= 2 and b.monitor.checks >= 2, 20, "both monitors to start")
        sb.kill("db1")
        wait_until(lambda: a.monitor.failovers or b.monitor.failovers, 30, "a failover")
        winner = a if a.monitor.failovers else b
        loser = b if winner is a else a
        new = name_of(sb, winner.monitor.failovers[0].new_primary)
        checks = loser.monitor.checks
        wait_until(lambda: loser.monitor.checks >= checks + 10, 30, "the other monitor to keep checking")
        assert len(a.monitor.failovers) + len(b.monitor.failovers) == 1
        with sb.connect(new) as conn, conn.cursor() as cur:
            cur.execute("SELECT epoch, server_id FROM iotgw_meta.epoch ORDER BY epoch")
            rows = cur.fetchall()
        assert rows == ((1, sb.node("db1").server_id), (2, sb.node(new).server_id)), rows
        others = [n for n in sb.db_names() if n not in ("db1", new)]
        assert all(replicates_from(sb, n, new) for n in others)
    finally:
        a.close()
        b.close()


def test_primary_restarted_read_only_before_the_failcount_is_reopened(make_sandbox):
    """A power blip: the primary restarts read-only (as every config says) before the monitor declares it
    dead; nobody took over and the epoch still names it, so the monitor re-opens its writes."""
    sb = make_sandbox(replicas=2, broker=False)
    epoch_names(sb, "db1")
    sb.wait_caught_up()
    mon = Running(sb, failcount=20)  # 10 s: the restart comes back long before a failover
    try:
        wait_until(lambda: mon.monitor.checks >= 2, 30, "the monitor to start checking")
        sb.kill("db1")
        sb.restart("db1")
        with sb.connect("db1") as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only=ON")  # the sandbox re-opens it itself; a real config would not
        mon.wait_for("reopened", 60, "the monitor to re-open db1")
        assert not read_only(sb, "db1") and not mon.kinds("failover")
        assert sb.primary_name() == "db1"
    finally:
        mon.close()


def test_a_fenced_primary_that_did_not_restart_is_not_reopened(make_sandbox):
    """A primary fenced by a person or mid-switchover (long uptime) is left alone."""
    sb = make_sandbox(replicas=2, broker=False)
    epoch_names(sb, "db1", "SET GLOBAL read_only=ON")
    # No uptime counts as "just restarted": the server's Uptime is whole seconds from 0, and a limit of 0.0 let a
    # sandbox checked within its first second pass as a fresh restart (the monitor re-opened it).
    mon = Running(sb, failcount=2, reopen_uptime_s=-1.0)
    try:
        mon.wait_for("unconfirmed", 30, "the monitor to decline re-opening")
        assert read_only(sb, "db1") and not mon.kinds("reopened")
    finally:
        mon.close()
