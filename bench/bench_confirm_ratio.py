"""Ingest with replica confirmation on vs off : does the zero-loss step cost throughput?

A 1 primary + 2 replica sandbox; the spool is prefilled with N readings, then the real drain worker empties it
through `ReplicatedSink` with confirmation on (a batch leaves the spool only when a replica has applied it)
and off (it leaves when the primary committed it). Runs alternate off/on to share the machine's noise; the
figure is the ratio of the median rates. Target: at least 0.9.

Run: .venv/bin/python bench/bench_confirm_ratio.py [--readings 50000] [--runs 3]
     → bench/results/confirm_ratio.json and confirm_ratio.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replication_common import WRITER, prefill, wait_for, write_results  # noqa: E402

from gateway.drain import DrainWorker  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402
from gateway.sinks.replicated import ReplicatedSink  # noqa: E402
from gateway.spool import Spool  # noqa: E402


def drain_rate(sb: Sandbox, work: Path, tag: str, n: int, confirm: bool, batch: int) -> float:
    spool = Spool(work / f"spool-{tag}.db")
    prefill(spool, n, device=tag)
    sink = ReplicatedSink([f"127.0.0.1:{sb.node('db1').port}"], WRITER, confirm=confirm)
    drain = DrainWorker(spool, sink, batch_size=batch, retry_max_s=1.0)
    start = time.monotonic()
    drain.start()
    try:
        wait_for(lambda: spool.depth == 0, 600, f"{tag}: the spool to empty", interval=0.005)
        elapsed = time.monotonic() - start
    finally:
        drain.stop()
        drain.join(30)
        spool.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000, help="drain batch size (the config default)")
    args = parser.parse_args()
    off, on = [], []
    with tempfile.TemporaryDirectory(prefix="iotgw-bench-cr-") as tmp:
        sb = Sandbox.up(Path(tmp) / "sb", replicas=2, broker=False)
        try:
            drain_rate(sb, Path(tmp), "warmup", 2000, True, args.batch)  # schema, epoch, caches
            for i in range(args.runs):
                off.append(drain_rate(sb, Path(tmp), f"off{i}", args.readings, False, args.batch))
                on.append(drain_rate(sb, Path(tmp), f"on{i}", args.readings, True, args.batch))
                print(f"  run {i}: off {off[-1]:,.0f}/s, on {on[-1]:,.0f}/s", flush=True)
        finally:
            sb.down()
    ratio = statistics.median(on) / statistics.median(off)
    data = {"readings_per_run": args.readings, "batch": args.batch, "rate_off": off, "rate_on": on,
            "median_off": statistics.median(off), "median_on": statistics.median(on), "ratio": ratio,
            "target": 0.9, "met": ratio >= 0.9}
    table = ["# Ingest with confirmation on vs off", "",
             f"Drain of a {args.readings:,}-reading spool backlog through ReplicatedSink, batch {args.batch}, "
             f"1 primary + 2 replicas, {args.runs} alternating runs each.", "",
             "| confirmation | median readings/s | runs |", "|---|---|---|",
             f"| off (baseline) | {data['median_off']:,.0f} | {', '.join(f'{r:,.0f}' for r in off)} |",
             f"| on (a replica applied the batch) | {data['median_on']:,.0f} | {', '.join(f'{r:,.0f}' for r in on)} |",
             "", f"Ratio on/off: **{ratio:.3f}** (target ≥ 0.9: {'met' if data['met'] else 'NOT met'})."]
    write_results("confirm_ratio", data, table)


if __name__ == "__main__":
    main()
