"""Ingest benchmarks: the gateway against the real ceiling, its CPU, memory and disk writes per reading.

Baseline (same run, before and after the gateway's burst): a raw-socket counting subscriber in its own process
(counts QoS 1 messages, one PUBACK write per read), fed by 20 raw-socket publisher connections driven from one
select() loop (pre-encoded QoS 1 PUBLISH packets, ~110-byte protocol-v1 readings, a 20,000-reading burst): the
broker's own ceiling on this machine. The gateway (primary + 2 replicas, durable settings) is then fed by the
same publishers; its rate is readings acknowledged end to end (spool commit, then ack) per second.
For every phase the gateway's CPU seconds (utime + stime from /proc/<pid>/stat, idle time included), RSS and
disk bytes written (/proc/<pid>/io write_bytes) are measured: 20 readings/s (with the end-to-end ack latency
p99), the burst, 1,000 readings/s, a steady 300 readings/s, and a minute idle. `--profile DIR` adds every
thread's CPU time and py-spy's stacks per phase (see results/ingest_profile.md).
Resend storms and the drain have their own benchmarks (bench_resend.py, bench_drain.py).

Run: .venv/bin/python bench/bench_ingest.py [--quick]   → bench/results/ingest.json and ingest.md
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import (  # noqa: E402
    CLK_TCK,
    Publishers,
    RawCountingSubscriber,
    RawPublishers,
    load_average,
    median,
    percentile,
    proc_sample,
)

from gateway.config import MqttConfig  # noqa: E402
from gateway.mqttconn import BrokerSettings  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402
from gateway.sandbox.launch import GatewayProcess, sandbox_config, spool_depth, wait_for  # noqa: E402
from gateway.sinks.mysql import connect  # noqa: E402
from gateway.topology.conn import Credentials  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BURST_ROUNDS = 5
PREFIX = "bench"
CEILING_PREFIX = "ceil"


def ceiling(settings: BrokerSettings, total: int, connections: int = 20) -> dict:
    """The raw-socket counting subscriber fed by `connections` raw-socket publishers from one select() loop:
    messages/s from the first publish to the last message counted."""
    # The same receive maximum as the gateway's default (`mqtt.receive_maximum`), so both get the same window
    # (a smaller window throttles the subscriber: then the "ceiling" is not one).
    # A topic prefix the gateway does not subscribe to: the broker delivers the ceiling's messages to the counting
    # subscriber alone (the gateway would otherwise take a copy of each and slow the baseline down).
    window = MqttConfig().receive_maximum
    sub = RawCountingSubscriber(settings, f"{CEILING_PREFIX}/ceiling/+/reading", total, window)
    pubs = RawPublishers(settings, connections=connections, prefix=CEILING_PREFIX, site="ceiling",
                         boot=int(time.time()) % 10**6, follow_acks=False, name="ceil")
    started = time.time()
    pubs.burst(total)
    last, got = sub.result()
    pubs.close()
    return {"messages": got, "pubacks": pubs.pubacks, "seconds": round(last - started, 3),
            "rate": round(got / (last - started))}


def stored_rows(sb: Sandbox, site: str) -> int:
    node = sb.nodes[sb.primary_name()]
    conn = connect(f"{node.host}:{node.port}", Credentials("root", ""), database="iot")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM readings WHERE site = %s", (site,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (utime + stime) of every thread of `pid`, by native thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class Profiler:
    """py-spy sampling the gateway over one phase (`--profile DIR`): where its CPU time goes, as collapsed stacks
    (one line a stack with its sample count; idle threads are not sampled, so the counts are CPU time)."""

    def __init__(self, pid: int, out: Path | None, name: str) -> None:
        self.proc = None
        self.pid, self.out, self.name = pid, out, name
        if out is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out.mkdir(parents=True, exist_ok=True)
        # Thread names by native id (py-spy dump), so each thread's exact CPU time from /proc can be named.
        dump = subprocess.run([spy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True,
                              timeout=30).stdout
        self.names = {int(m[1]): m[2] for m in re.finditer(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.M)}
        self.threads_before = thread_cpu(pid)
        self.proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
                                      "--threads", "--nonblocking", "--output", str(out / f"{name}.txt")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches before the load starts

    def stop(self) -> None:
        if self.proc is None:
            return
        after = thread_cpu(self.pid)
        self.proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
        self.proc.wait(30)
        used = sorted(((cpu - self.threads_before.get(tid, 0.0), tid) for tid, cpu in after.items()), reverse=True)
        total = sum(u for u, _ in used) or 1.0
        lines = [f"{u:8.2f} s {u / total * 100:5.1f} %  {self.names.get(tid, f'thread {tid} (started in the phase)')}"
                 for u, tid in used if u > 0]
        assert self.out is not None
        (self.out / f"{self.name}.threads.txt").write_text("\n".join(lines) + "\n")


class Phase:
    """Gateway accounting over one phase: CPU, RSS, disk writes, between two /proc samples."""

    def __init__(self, pid: int, profile: Path | None = None, name: str = "") -> None:
        self.pid = pid
        self.profiler = Profiler(pid, profile, name)
        self.before = proc_sample(pid)
        self.load_before = load_average()

    def end(self, readings: int) -> dict:
        after = proc_sample(self.pid)
        self.profiler.stop()
        cpu = after.cpu_s - self.before.cpu_s
        written = after.write_bytes - self.before.write_bytes
        return {"readings": readings, "wall_s": round(after.at - self.before.at, 2), "cpu_s": round(cpu, 2),
                "cpu_s_per_10k": round(cpu / readings * 10_000, 3), "rss_mb": round(after.rss_mb, 1),
                "peak_rss_mb": round(after.hwm_mb, 1), "write_bytes": written,
                "write_bytes_per_reading": round(written / readings), "load": f"{self.load_before} → {load_average()}"}


def run_phase(gw: GatewayProcess, settings: BrokerSettings, site: str, connections: int, *, rate: float = 0,
              total: int = 0, seconds: float = 0, profile: Path | None = None) -> dict:
    """One load phase against the running gateway: a burst from the raw-socket publishers (the same ones that
    feed the ceiling) when rate is 0, else paho publishers on a schedule."""
    boot = int(time.time()) % 10**6
    pubs: Publishers | RawPublishers
    if rate:
        pubs = Publishers(settings, connections=connections, prefix=PREFIX, site=site, boot=boot, follow_acks=True,
                          name=site)
    else:
        pubs = RawPublishers(settings, connections=connections, prefix=PREFIX, site=site, boot=boot,
                             follow_acks=True, name=site)
    time.sleep(1.0)  # the gateway settles after the subscriptions
    phase = Phase(gw.pid, profile, site)
    if isinstance(pubs, Publishers):
        total = int(rate * seconds)
        elapsed = pubs.steady(rate, seconds)
    else:
        elapsed = pubs.burst(total)
    out = phase.end(total)
    out.update(cpu_at_start=phase.before.cpu_s, acked=pubs.acked, seconds=round(elapsed, 3), rate=round(pubs.acked / elapsed),
               ack_p50_s=round(percentile(pubs.latencies, 50), 4), ack_p99_s=round(percentile(pubs.latencies, 99), 4))
    pubs.close()
    return out


def idle_phase(gw: GatewayProcess, seconds: float, profile: Path | None) -> dict:
    """The gateway with nothing to do (connected, the database up): its CPU is pure wake-up overhead."""
    time.sleep(2.0)  # the last acks and drain rounds of the previous phase
    phase = Phase(gw.pid, profile, "idle")
    time.sleep(seconds)
    after = proc_sample(gw.pid)
    phase.profiler.stop()
    cpu = after.cpu_s - phase.before.cpu_s
    wall = after.at - phase.before.at
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 3), "cpu_percent": round(cpu / wall * 100, 2),
            "cpu_s_per_minute": round(cpu / wall * 60, 3), "load": f"{phase.load_before} → {load_average()}"}


def mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases (a smoke test of the benchmark)")
    parser.add_argument("--out", default="ingest", help="result file stem in bench/results (default: ingest)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="sample the gateway with py-spy during every phase; collapsed stacks in DIR/<phase>.txt")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    burst_n = int(20_000 * scale)
    with tempfile.TemporaryDirectory(prefix="iotgw-bench-") as tmp:
        work = Path(tmp)
        with Sandbox.up(work / "sb", replicas=2, broker=True) as sb:
            b = sb.endpoints()["broker"]
            settings = BrokerSettings(b["host"], b["port"])
            cfg = sandbox_config(sb, work / "gw", prefix=PREFIX, client_id="bench-gw")
            gw = GatewayProcess(work / "gw", cfg).start()
            try:
                wait_for(lambda: "subscribed to" in gw.log_tail(20), 30, "gateway subscribed")
                # 20/s first: right after a burst, SQLite's deferred WAL checkpoint of the burst's pages lands in
                # whatever phase comes next, and at 20/s that alone nearly doubles the bytes per reading (measured
                # 4,475 B after the burst against 2,450 B on a fresh gateway): the phase would measure the burst.
                low = run_phase(gw, settings, "low", 20, rate=20, seconds=60 * scale, profile=args.profile)
                # Several bursts, each between two ceiling runs: single runs of either swing by a third on this
                # shared machine, so the median round's ratio is the figure (every round is listed).
                ceilings = [ceiling(settings, burst_n)]
                bursts = []
                for r in range(1 if args.quick else BURST_ROUNDS):
                    site = "burst" if r == 0 else f"burst{r}"
                    b = run_phase(gw, settings, site, 20, total=burst_n, profile=args.profile if r == 0 else None)
                    # The drain yields to a burst, so much of its work comes after the last ack: counted here
                    # too, and over before the next ceiling run (which would otherwise compete with it).
                    wait_for(lambda: spool_depth(work / "gw" / "spool.db") == 0, 300, "spool drained", interval=0.01)
                    b["cpu_s_per_10k_with_drain"] = round(
                        (proc_sample(gw.pid).cpu_s - b["cpu_at_start"]) / burst_n * 10_000, 3)
                    b["stored"] = stored_rows(sb, site)
                    ceilings.append(ceiling(settings, burst_n))
                    # The ceiling while the burst ran: the mean of the two ceiling runs around it. Single runs swing
                    # by a third on this shared machine, so a single round may beat it; the faster of the two would
                    # compare one burst with the luckier of two runs (a ceiling biased upward by about half the
                    # swing): reported beside it as the stricter figure.
                    b["ceiling_rate"] = round((ceilings[-2]["rate"] + ceilings[-1]["rate"]) / 2)
                    b["ratio"] = round(b["rate"] / b["ceiling_rate"], 3)
                    b["ceiling_fastest"] = max(ceilings[-2]["rate"], ceilings[-1]["rate"])
                    b["ratio_to_fastest"] = round(b["rate"] / b["ceiling_fastest"], 3)
                    bursts.append(b)
                mid = run_phase(gw, settings, "mid", 20, rate=1000, seconds=20 * scale, profile=args.profile)
                steady = run_phase(gw, settings, "steady", 50, rate=300, seconds=120 * scale, profile=args.profile)
                wait_for(lambda: spool_depth(work / "gw" / "spool.db") == 0, 300, "spool drained")
                idle = idle_phase(gw, 60 * scale, args.profile)
                peak = proc_sample(gw.pid).hwm_mb
            finally:
                gw.terminate()
    burst = sorted(bursts, key=lambda b: b["ratio"])[len(bursts) // 2]  # the median round
    ratio, base_rate = burst["ratio"], burst["ceiling_rate"]
    strict = median([b["ratio_to_fastest"] for b in bursts])
    targets = {
        # A gateway faster than the counting subscriber means the publishers limit both: then the baseline is
        # no ceiling and the ratio proves nothing, so the target is not met (not established) either way.
        "ingest ratio ≥ 0.8 × counting subscriber, 100 % stored": (
            0.8 <= ratio <= 1.0 and all(b["stored"] == burst_n for b in bursts),
            f"{ratio:.2f} ({burst['rate']} vs {base_rate:.0f} msg/s; median of {len(bursts)} rounds), stored "
            f"{min(b['stored'] for b in bursts)}/{burst_n} in every round; against the faster of the two ceiling runs "
            f"around each burst (stricter, not the target) {strict:.2f}"
            + ("; the gateway beat the baseline: the publishers limit both, so it is no ceiling (not established)"
               if ratio > 1.0 else "")),
        "burst CPU ≤ 0.8 s per 10,000 (with the drain that follows)": (
            burst["cpu_s_per_10k_with_drain"] <= 0.8,
            f"{burst['cpu_s_per_10k_with_drain']} s ({burst['cpu_s_per_10k']} s until the last ack)"),
        "steady 300/s CPU ≤ 1.5 s per 10,000": (steady["cpu_s_per_10k"] <= 1.5, f"{steady['cpu_s_per_10k']} s"),
        "disk ≤ 4 KB/reading at 20/s, ack p99 ≤ 0.5 s": (
            low["write_bytes_per_reading"] <= 4096 and low["ack_p99_s"] <= 0.5,
            f"{low['write_bytes_per_reading']} B, p99 {low['ack_p99_s']} s"),
        "disk ≤ 1 KB/reading at 1,000/s": (mid["write_bytes_per_reading"] <= 1024,
                                            f"{mid['write_bytes_per_reading']} B"),
        "RSS ≤ 80 MB throughout": (peak <= 80, f"peak {peak:.1f} MB"),
    }
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
        "ceilings": ceilings, "bursts": bursts, "burst": burst, "ratio": round(ratio, 3),
        "ratio_to_fastest_ceiling": strict,
        "rate_20": low, "rate_1000": mid, "steady_300": steady, "idle": idle, "peak_rss_mb": round(peak, 1),
        "targets": {k: {"met": ok, "value": v} for k, (ok, v) in targets.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = [("burst (20 connections, full speed)", burst), ("20 readings/s (20 collectors)", low),
            ("1,000 readings/s (20 collectors)", mid), ("steady 300 readings/s (50 collectors)", steady)]
    md = [
        "# Ingest benchmarks", "",
        f"Run {result['date']} on this machine (2 cores, shared with other work: load averages per phase)"
        f"{' — quick run' if args.quick else ''}. Gateway: `iotgw run`, MySQL sink to a primary with 2 "
        "replicas (sync_binlog=1, innodb_flush_log_at_trx_commit=1), spool `synchronous=FULL`.", "",
        f"Ceiling: raw-socket counting subscriber (own process, one PUBACK write per read) fed by 20 raw-socket "
        f"publisher connections from one select() loop (pre-encoded QoS 1 PUBLISH packets, ~110-byte protocol-v1 "
        f"payloads), {burst_n} messages, run before and after each of the gateway's bursts (from the same "
        f"publishers): {', '.join(str(c['rate']) for c in ceilings)} msg/s; each burst is measured against the mean "
        f"of the two ceiling runs around it (and, stricter, against the faster of them). Bursts: "
        + "; ".join(f"{b['rate']} readings/s against {b['ceiling_rate']} (ratio {b['ratio']:.2f}; "
                    f"{b['ratio_to_fastest']:.2f} against {b['ceiling_fastest']}; CPU "
                    f"{b['cpu_s_per_10k']} s per 10k until the last ack, {b['cpu_s_per_10k_with_drain']} s with the "
                    "drain)" for b in bursts)
        + "; the table shows the median round.", "",
        "| phase | readings | acked/s | ack p50 / p99 | CPU s per 10k | RSS MB | disk bytes per reading | load (1/5/15) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        md.append(f"| {name} | {r['readings']} | {r['rate']} | {r['ack_p50_s']} / {r['ack_p99_s']} s | "
                  f"{r['cpu_s_per_10k']} | {r['rss_mb']} | {r['write_bytes_per_reading']} | {r['load']} |")
    md += ["", f"Idle (connected, nothing to do, {idle['wall_s']} s): {idle['cpu_s']} CPU-s, {idle['cpu_percent']} % of a "
           f"core ({idle['cpu_s_per_minute']} s per minute); load {idle['load']}."]
    md += ["", "| target | measured | |", "|---|---|---|"]
    md += [f"| {k} | {v} | {mark(ok)} |" for k, (ok, v) in targets.items()]
    md += ["", "CPU per 10,000 readings is the gateway's whole CPU time over the phase divided by its readings, so "
           "idle wake-ups and the drain (writes to the primary, confirmation on a replica) are included; in the burst "
           "the drain yields to ingest, so the burst's target counts the CPU until the spool is empty. Disk bytes "
           "are what the gateway process wrote to the block layer (spool, its WAL, checkpoints, log)."]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
