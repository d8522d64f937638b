"""Ingest benchmarks (issue 2): end-to-end rate vs the raw paho QoS 1 rate, drain rate of a 100k backlog vs
raw multi-row inserts, and the gateway's peak RSS at 5,000 readings/s. Baselines are measured in the same run.

Run: .venv/bin/python bench/bench_ingest.py [--quick]   → bench/results/ingest.json and ingest.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from gateway.mqttconn import BrokerSettings, connect_blocking, make_client
from gateway.protocol import Reading
from gateway.sandbox import Sandbox
from gateway.sandbox.launch import GatewayProcess, sandbox_config, spool_depth, wait_for
from gateway.simulator import SimOptions, Simulator
from gateway.sinks.mysql import ServerAddress, connect, init_schema, insert_rows
from gateway.sinks.replicated import ReplicatedSink
from gateway.spool import Entry, Spool
from gateway.topology.conn import Credentials

RESULTS = Path(__file__).resolve().parent / "results"


def raw_paho_rate(settings: BrokerSettings, n: int) -> float:
    """One paho publisher to one paho subscriber, QoS 1, 100-byte messages: messages/s."""
    got = threading.Event()
    count = [0]
    sub = make_client(settings, "bench-sub")

    def on_message(_c, _u, _m) -> None:
        count[0] += 1
        if count[0] == n:
            got.set()

    sub.on_message = on_message
    connect_blocking(sub, settings)
    sub.subscribe("bench/raw", qos=1)
    sub.loop_start()
    pub = make_client(settings, "bench-pub")
    connect_blocking(pub, settings)
    pub.loop_start()
    time.sleep(0.5)
    payload = b"x" * 100
    start = time.monotonic()
    for _ in range(n):
        pub.publish("bench/raw", payload, qos=1)
    got.wait(120)
    elapsed = time.monotonic() - start
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return count[0] / elapsed


def end_to_end_rate(sb: Sandbox, work: Path, n_per_device: int, devices: int = 20) -> dict:
    """Simulated collectors → broker → gateway (spool commit, then ack) → primary: acknowledged readings/s."""
    cfg = sandbox_config(sb, work, prefix="bench", client_id="bench-gw")
    gw = GatewayProcess(work, cfg).start()
    try:
        wait_for(lambda: "subscribed to" in gw.log_tail(20), 30, "gateway subscribed")
        b = sb.endpoints()["broker"]
        sim = Simulator(BrokerSettings(b["host"], b["port"]), SimOptions(devices=devices, count=n_per_device, rate=0,
                                                                        prefix="bench", ack_timeout=30))
        sim.connect()
        start = time.monotonic()
        report = sim.run(deadline_s=300)
        elapsed = time.monotonic() - start
        sim.close()
        wait_for(lambda: spool_depth(work / "spool.db") == 0, 300, "spool drained")
        return {"readings": report.sent, "acked": report.acked, "seconds": round(elapsed, 2),
                "rate": report.acked / elapsed}
    finally:
        gw.terminate()


def raw_insert_rate(addr: ServerAddress, rows: list[tuple]) -> float:
    conn = connect(addr, database="")
    init_schema(conn, "rawbench")
    start = time.monotonic()
    for i in range(0, len(rows), 1000):
        insert_rows(conn, rows[i:i + 1000])
    elapsed = time.monotonic() - start
    conn.close()
    return len(rows) / elapsed


def drain_rate(sb: Sandbox, work: Path, n: int) -> dict:
    """A backlog of n readings in the spool, drained by the gateway's drain worker into the primary."""
    from gateway.drain import DrainWorker

    spool = Spool(work / "drain-spool.db", max_readings=n + 1)
    now = int(time.time() * 1000)
    for start in range(0, n, 5000):
        spool.commit_group([Entry(Reading(f"dev-{i % 50}", "a", 1, i, "bench", now + i, "rtc", 1.5, "C", False, "ok",
                                          now)) for i in range(start, min(n, start + 5000))])
    node = sb.nodes[sb.primary_name()]
    rows = [(f"raw-{i % 50}", "a", 1, i, "bench", now + i, "rtc", "ok", 1.5, "C", 0, now) for i in range(n)]
    raw = raw_insert_rate(ServerAddress(node.host, node.port, "root", "", "rawbench"), rows)
    # The gateway's own writer: primary verified by epoch, batches confirmed on a replica.
    sink = ReplicatedSink([f"{node.host}:{node.port}"], Credentials("iotgw", "iotgw"))
    sink.write(rows[:1])  # schema and connection ready before timing
    worker = DrainWorker(spool, sink, batch_size=1000)
    start = time.monotonic()
    worker.start()
    wait_for(lambda: spool.depth == 0, 600, "backlog drained and confirmed on a replica")
    elapsed = time.monotonic() - start
    worker.stop()
    worker.join(10)
    return {"readings": n, "seconds": round(elapsed, 2), "rate": n / elapsed, "raw_insert_rate": raw}


def peak_rss_at(sb: Sandbox, work: Path, rate: float, seconds: float) -> dict:
    cfg = sandbox_config(sb, work, prefix="rss", client_id="rss-gw")
    gw = GatewayProcess(work, cfg).start()
    try:
        wait_for(lambda: "subscribed to" in gw.log_tail(20), 30, "gateway subscribed")
        b = sb.endpoints()["broker"]
        devices = 20
        sim = Simulator(BrokerSettings(b["host"], b["port"]),
                        SimOptions(devices=devices, count=int(rate * seconds / devices), rate=rate, prefix="rss",
                                   ack_timeout=30))
        sim.connect()
        start = time.monotonic()
        report = sim.run(deadline_s=seconds * 4 + 60)
        achieved = report.sent / (time.monotonic() - start)
        sim.close()
        wait_for(lambda: spool_depth(work / "spool.db") == 0, 300, "spool drained")
        status = Path(f"/proc/{gw.pid}/status").read_text()
        hwm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
        return {"target_rate": rate, "achieved_rate": round(achieved), "peak_rss_mb": round(hwm_kb / 1024, 1)}
    finally:
        gw.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmark)")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    with tempfile.TemporaryDirectory(prefix="iotgw-bench-") as tmp:
        tmpdir = Path(tmp)
        with Sandbox.up(tmpdir / "sb", replicas=2, broker=True) as sb:
            b = sb.endpoints()["broker"]
            settings = BrokerSettings(b["host"], b["port"])
            raw = raw_paho_rate(settings, int(20000 * scale))
            e2e = end_to_end_rate(sb, tmpdir / "e2e", int(1000 * scale))
            drain = drain_rate(sb, tmpdir, int(100_000 * scale))
            rss = peak_rss_at(sb, tmpdir / "rss", 5000, 20 * scale)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "raw_paho_qos1_rate": round(raw),
        "end_to_end": {**e2e, "rate": round(e2e["rate"])},
        "end_to_end_ratio": round(e2e["rate"] / raw, 3),
        "drain": {**drain, "rate": round(drain["rate"]), "raw_insert_rate": round(drain["raw_insert_rate"])},
        "rss_at_5000_per_s": rss,
        "targets": {"end_to_end_ratio": ">= 0.6", "drain_rate": ">= 50000 rows/s", "peak_rss_mb": "<= 80"},
        "quick": args.quick,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [
        "# Ingest benchmarks", "", f"Run {result['date']} on this machine (2 cores, shared); baselines in the same run.", "",
        "| measure | value | baseline | ratio | target |", "|---|---|---|---|---|",
        f"| end-to-end ingest (QoS 1, ack after spool commit, primary + 2 replicas) | {result['end_to_end']['rate']} msg/s "
        f"| raw paho QoS 1 {result['raw_paho_qos1_rate']} msg/s | {result['end_to_end_ratio']} | ≥ 0.6 |",
        f"| drain of a {drain['readings']}-reading backlog | {result['drain']['rate']} rows/s "
        f"| raw multi-row INSERT {result['drain']['raw_insert_rate']} rows/s "
        f"| {round(drain['rate'] / drain['raw_insert_rate'], 3)} | ≥ 50,000 rows/s |",
        f"| gateway peak RSS at {rss['achieved_rate']} readings/s (target rate 5,000) | {rss['peak_rss_mb']} MB | | | ≤ 80 MB |",
    ]
    md += ["", "The drain target (50,000 rows/s) is an absolute figure from the field notes, where raw multi-row "
           f"inserts reached about 80,000 rows/s; in this run they reached {result['drain']['raw_insert_rate']}, "
           "so the ratio is the figure the gateway controls. The drain adds per batch: a verify query on the "
           "write connection, the GTID read, two SQLite commits (mark written, then delete when a replica "
           "confirms). The end-to-end path adds JSON validation, the spool group commit and two syscalls per "
           "PUBACK in paho (profiled with py-spy)."]
    (RESULTS / "ingest.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
