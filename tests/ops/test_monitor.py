"""The failover monitor on real sandboxes: kill -9 rounds under load, a hung primary, anti-flap, two monitors."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.ops.monitor import Monitor, MonitorConfig
from gateway.ops.sandbox_rebuild import rebuild_node
from tests.ops.helpers import Load, consistency, ep, read_only, rows_or_zero, wait_until
from tests.topology.helpers import ADMIN

pytestmark = [pytest.mark.servers, pytest.mark.slow]


class Running:
    """A monitor checking in a background thread; stopped by `close`."""

    def __init__(self, sb, **settings):
        cfg = MonitorConfig(**{"interval": 0.5, "failcount": 2, "block_s": 2.0, "repl": ("repl", "repl"),
                               **settings})
        self.monitor = Monitor([ep(sb, n) for n in sb.db_names()], ADMIN, cfg)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.monitor.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def kinds(self, kind):
        return [e for e in self.monitor.events if e.kind == kind]

    def close(self):
        self.stop.set()
        self.thread.join(30)


def name_of(sb, endpoint):
    return next(n for n in sb.db_names() if ep(sb, n) == endpoint)


def replicates_from(sb, name, source):
    try:
        with sb.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            cols = [c[0] for c in cur.description]
            row = dict(zip(cols, cur.fetchone() or (), strict=False))
    except Exception:  # noqa: BLE001 - down or starting
        return False
    return row.get("Master_Port") == sb.node(source).port and row.get("Slave_SQL_Running") == "Yes"


def bring_back(sb, mon, old, new):
    """Restart the killed node: the monitor rejoins it, or reports it diverged and we rebuild it."""
    sb.restart(old)
    outcome = wait_until(
        lambda: ("rejoined" if replicates_from(sb, old, new) else None)
        or ("diverged" if any(ep(sb, old) in k for k in mon.monitor.diverged) else None),
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
            result = mon.monitor.failovers[-1]
            new = name_of(sb, result.new_primary)
            eligible = [c for c in result.plan.considered if not c.refused]
            assert max(c.received for c in eligible) == next(
                c.received for c in eligible if c.server.endpoint == result.new_primary)
            before = rows_or_zero(sb, new)
            wait_until(lambda n=new, b=before: rows_or_zero(sb, n) > b, 30, f"round {round_no}: writes on {new}")
            times.append(time.monotonic() - t0)
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
