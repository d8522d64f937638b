"""Pieces shared by the replication benchmarks: readings, a producer thread, result files."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from gateway.protocol import Reading
from gateway.sandbox.process import wait_until
from gateway.spool import Entry, Spool
from gateway.topology.conn import Credentials

RESULTS = Path(__file__).resolve().parent / "results"
WRITER = Credentials("iotgw", "iotgw", connect_timeout=2, io_timeout=10)
ADMIN = Credentials("root", "", connect_timeout=2, io_timeout=30)


def reading(seq: int, device: str) -> Reading:
    return Reading(device=device, node="n1", boot=1, seq=seq, site="bench", ts=1_700_000_000_000 + seq,
                   src="rtc", value=seq * 0.5, unit="C", cached=False, clock="ok", received_ms=1_700_000_000_000)


def prefill(spool: Spool, n: int, device: str, group: int = 500) -> None:
    """Commit `n` readings to the spool in groups, as ingest would."""
    for start in range(0, n, group):
        spool.commit_group([Entry(reading(i, device)) for i in range(start, min(n, start + group))])


class Producer(threading.Thread):
    """Commits `group` readings every `period` seconds until stopped; `acked` counts them."""

    def __init__(self, spool: Spool, device: str, group: int = 20, period: float = 0.005) -> None:
        super().__init__(name="producer", daemon=True)
        self.spool, self.device, self.group, self.period = spool, device, group, period
        self.acked = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.spool.commit_group([Entry(reading(self.acked + i, self.device)) for i in range(self.group)])
            self.acked += self.group
            time.sleep(self.period)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def wait_for(pred, timeout: float, what: str, interval: float = 0.01) -> None:  # noqa: ANN001
    """Fixed fine-grained polling: the benchmarks time what they wait for."""
    wait_until(pred, timeout, interval, what, max_interval=interval)


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values)}


def write_results(name: str, data: dict[str, Any], table: list[str]) -> None:
    """bench/results/<name>.json and <name>.md (a short markdown table), and echo the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
