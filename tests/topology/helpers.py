"""Shared pieces of the live topology tests: endpoints, a reading producer, promotion, the consistency check."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gateway.protocol import Reading
from gateway.sandbox import Sandbox, process
from gateway.spool import Entry, Spool
from gateway.topology import analysis
from gateway.topology.conn import Credentials
from gateway.topology.discovery import discover
from gateway.topology.promote import promote

WRITER = Credentials("iotgw", "iotgw", connect_timeout=2, io_timeout=5)
ADMIN = Credentials("root", "", connect_timeout=2, io_timeout=20)


def ep(sb: Sandbox, name: str) -> str:
    return f"127.0.0.1:{sb.node(name).port}"


def name_of(sb: Sandbox, endpoint: str) -> str:
    port = int(endpoint.rsplit(":", 1)[1])
    return next(n for n in sb.db_names() if sb.node(n).port == port)


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll `pred` every `interval` s until it returns something true (the sandbox's one wait loop)."""
    return process.wait_until(pred, timeout, interval, what, max_interval=interval)


def reading(seq: int, device: str = "dev1") -> Reading:
    return Reading(
        device=device,
        node="n1",
        boot=1,
        seq=seq,
        site="lab",
        ts=1_700_000_000_000 + seq * 1000,
        src="rtc",
        value=seq * 0.5,
        unit="C",
        cached=False,
        clock="ok",
        received_ms=1_700_000_000_000,
    )


class Producer(threading.Thread):
    """Commits readings to the spool in small groups, as ingest does; `acked` counts what was committed."""

    def __init__(self, spool: Spool, group: int = 20, period: float = 0.005, device: str = "dev1") -> None:
        super().__init__(name="producer", daemon=True)
        self.spool, self.group, self.period, self.device = spool, group, period, device
        self.acked = 0
        self.running = threading.Event()
        self.running.set()
        self.stopped = threading.Event()
        self.idle = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            if not self.running.is_set():
                self.idle.set()
                self.running.wait(0.05)
                continue
            self.idle.clear()
            entries = [Entry(reading(self.acked + i, self.device)) for i in range(self.group)]
            self.spool.commit_group(entries)
            self.acked += self.group  # committed: this is what the gateway would acknowledge
            time.sleep(self.period)
        self.idle.set()

    def pause(self) -> None:
        self.running.clear()
        wait_until(self.idle.is_set, 10, "producer to pause")

    def resume(self) -> None:
        self.running.set()

    def stop(self) -> None:
        self.stopped.set()
        self.running.set()
        self.join(10)


def count_rows(sb: Sandbox, name: str, table: str = "iot.readings") -> int:
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        return int(cur.fetchone()[0])


def rows_or_zero(sb: Sandbox, name: str) -> int:
    try:
        return count_rows(sb, name)
    except Exception:  # table not created yet, or the server is down
        return 0


def promote_best(sb: Sandbox, alive: list[str]) -> str:
    """Promote the most advanced live replica by hand (the failover command does this in operations I)."""
    snap = discover([ep(sb, n) for n in alive], ADMIN)
    best = analysis.rank_candidates(snap)[0]
    promote([ep(sb, n) for n in alive], best.endpoint, ADMIN)
    return name_of(sb, best.endpoint)


def consistency(sb: Sandbox, names: list[str], primary: str, table: str = "iot.readings") -> tuple[int, str]:
    """Every server in `names` has applied the primary's position and holds the same rows (count, checksum)."""
    with sb.connect(primary) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        pos = cur.fetchone()[0]
    seen = {}
    for name in names:
        with sb.connect(name, read_timeout=40) as conn, conn.cursor() as cur:
            if name != primary:
                cur.execute("SELECT MASTER_GTID_WAIT(%s, 30)", (pos,))
                assert cur.fetchone()[0] == 0, f"{name} did not apply {primary}'s position {pos}"
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            count = int(cur.fetchone()[0])
            cur.execute(f"CHECKSUM TABLE {table}")
            seen[name] = (count, str(cur.fetchone()[1]))
    assert len(set(seen.values())) == 1, f"servers differ: {seen}"
    return seen[primary]
