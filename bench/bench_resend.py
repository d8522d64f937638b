"""Resend amplification: a storm of collectors replaying at full speed while the database is down.

20 simulated collectors (gateway.simulator, the resend rules of shared/protocol.md) publish 200,000 readings
as fast as they can while the gateway's database is unreachable, so everything lands in the spool and the
acks come from the spool commits alone. Measured: publishes per reading (1.0 = no resend) and the time until
every reading is acknowledged, against a single pass at the gateway's ingest rate measured in the same run
(the same collectors with resends switched off). The ingest rate is measured by a pass before and a pass after
the storm (a quarter of its readings each), so a change of load on a shared machine during the run weighs on
the budget as on the storm. The simulator publishes through one MQTT connection and waits
while 1,000 of its publishes await the broker's PUBACK (gateway.simulator), so every reading leaves once;
`refused` counts publishes the MQTT client would not queue (must stay 0).

With --freeze-share F the gateway is frozen (SIGSTOP) for F of every 0.2 s through all three runs: a gateway
with that much less CPU than its collectors, where the broker builds a backlog in front of it and the acks must
still reach the collectors as the readings are stored (the longest ack silence shows whether they do).

Run: .venv/bin/python bench/bench_resend.py [--quick] [--readings N] [--freeze-share F] [--out STEM]
     → bench/results/<STEM>.json and <STEM>.md (default stem: resend)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import load_average, proc_sample  # noqa: E402

from gateway.mqttconn import BrokerSettings  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402
from gateway.sandbox.launch import GatewayProcess, sandbox_config, wait_for  # noqa: E402
from gateway.sandbox.ports import free_port  # noqa: E402
from gateway.simulator import SimOptions, Simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def storm(settings: BrokerSettings, site: str, devices: int, per_device: int, ack_timeout: float, boot: int) -> dict:
    # Each run its own boot: streams are (device, node, boot), so a run never meets another's readings as duplicates.
    sim = Simulator(settings, SimOptions(devices=devices, count=per_device, rate=0, site=site, prefix="storm",
                                         ack_timeout=ack_timeout, boot=boot))
    sim.connect()
    load = load_average()
    started = time.monotonic()
    # The longest time the collectors saw no ack progress (sampled every 0.1-0.2 s): their resend timers expire
    # after 2.5-5 s of it (shared/protocol.md section 10).
    silence = {"since": started, "acked": 0, "longest": 0.0}

    def watch(r) -> None:
        now = time.monotonic()
        if r.acked != silence["acked"]:
            silence["longest"] = max(silence["longest"], now - silence["since"])
            silence["since"], silence["acked"] = now, r.acked

    report = sim.run(deadline_s=900, progress=watch)
    elapsed = time.monotonic() - started
    sim.close()
    return {"readings": report.sent, "published": report.published, "resent": report.resent,
            "refused": report.refused, "acked": report.acked, "unacked": report.unacked, "seconds": round(elapsed, 2),
            "longest_ack_silence_s": round(silence["longest"], 2),
            "publishes_per_reading": round(report.published / max(1, report.sent), 3),
            "load": f"{load} → {load_average()}"}


class Freezer(threading.Thread):
    """Freezes the gateway for `share` of every 0.2 s until stopped (and leaves it running)."""

    def __init__(self, gw: GatewayProcess, share: float) -> None:
        super().__init__(name="freezer", daemon=True)
        self.gw, self.share, self.halt = gw, share, threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.gw.signal(signal.SIGSTOP)
            time.sleep(0.2 * self.share)
            self.gw.signal(signal.SIGCONT)
            self.halt.wait(0.2 * (1 - self.share))

    def stop(self) -> None:
        self.halt.set()
        self.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the readings (a smoke test)")
    parser.add_argument("--readings", type=int, default=200_000, help="readings in the storm (default 200,000)")
    parser.add_argument("--freeze-share", type=float, default=0.0,
                        help="freeze the gateway for this share of every 0.2 s (0 to 0.9; default 0: never)")
    parser.add_argument("--out", default="resend", help="result file stem in bench/results (default: resend)")
    args = parser.parse_args()
    if not 0 <= args.freeze_share <= 0.9:
        parser.error(f"--freeze-share must be between 0 and 0.9, got {args.freeze_share}")
    devices = 20
    per_device = args.readings // devices // (10 if args.quick else 1)
    with tempfile.TemporaryDirectory(prefix="iotgw-bench-") as tmp:
        work = Path(tmp)
        with Sandbox.up(work / "sb", replicas=0, broker=True, mariadb_servers=False) as sb:
            b = sb.endpoints()["broker"]
            settings = BrokerSettings(b["host"], b["port"])
            cfg = sandbox_config(sb, work / "gw", prefix="storm", client_id="storm-gw", database=False)
            # The database is down: a server address where nothing listens. Everything stays in the spool.
            cfg["database"] = {"kind": "mysql", "servers": [f"127.0.0.1:{free_port()}"], "user": "iotgw",
                               "password": "unused", "retry_max_s": 1.0}
            gw = GatewayProcess(work / "gw", cfg).start()
            freezer = Freezer(gw, args.freeze_share)
            try:
                wait_for(lambda: "subscribed to" in gw.log_tail(20), 30, "gateway subscribed")
                if args.freeze_share:
                    freezer.start()
                # Single passes: the same collectors with an ack timeout too long to ever resend.
                single = storm(settings, "pass", devices, per_device // 4, ack_timeout=10_000, boot=1)
                before = proc_sample(gw.pid)
                result = storm(settings, "storm", devices, per_device, ack_timeout=5.0, boot=2)
                after = proc_sample(gw.pid)
                single_after = storm(settings, "pass", devices, per_device // 4, ack_timeout=10_000, boot=3)
            finally:
                if freezer.is_alive():
                    freezer.stop()
                gw.terminate()
    ingest_rate = (single["readings"] + single_after["readings"]) / (single["seconds"] + single_after["seconds"])
    budget = per_device * devices / ingest_rate * 1.2
    result["gateway_cpu_s"] = round(after.cpu_s - before.cpu_s, 1)
    result["peak_rss_mb"] = round(after.hwm_mb, 1)
    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "freeze_share": args.freeze_share,
           "single_pass": single,
           "single_pass_after": single_after,
           "ingest_rate": round(ingest_rate), "time_budget_s": round(budget, 1), "storm": result}
    ok_amp = result["publishes_per_reading"] <= 1.2
    ok_time = result["seconds"] <= budget and result["unacked"] == 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=1) + "\n")
    md = [
        "# Resend storm", "",
        f"Run {out['date']}{' (quick)' if args.quick else ''}: {devices} simulated collectors (one MQTT "
        f"connection), {result['readings']} readings at full speed, database unreachable (the spool takes "
        "everything), ack timeout 5 s."
        + (f" The gateway frozen for {args.freeze_share:.0%} of every 0.2 s throughout." if args.freeze_share else ""),
        "",
        "| run | readings | publishes | publishes per reading | refused by the client | seconds "
        "| longest ack silence (s) | unacked at end | load (1/5/15) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| single pass (no resends) | {single['readings']} | {single['published']} | "
        f"{single['publishes_per_reading']} | {single['refused']} | {single['seconds']} | "
        f"{single['longest_ack_silence_s']} | {single['unacked']} | "
        f"{single['load']} |",
        f"| storm | {result['readings']} | {result['published']} | {result['publishes_per_reading']} | "
        f"{result['refused']} | {result['seconds']} | {result['longest_ack_silence_s']} | {result['unacked']} | "
        f"{result['load']} |",
        f"| single pass after the storm | {single_after['readings']} | {single_after['published']} | "
        f"{single_after['publishes_per_reading']} | {single_after['refused']} | {single_after['seconds']} | "
        f"{single_after['longest_ack_silence_s']} | {single_after['unacked']} | {single_after['load']} |",
        "",
        "| target | measured | |", "|---|---|---|",
        f"| ≤ 1.2 publishes per reading | {result['publishes_per_reading']} | {'met' if ok_amp else '**not met**'} |",
        f"| done within a single pass at the ingest rate (both passes: {round(ingest_rate)} readings/s) + 20 % = "
        f"{budget:.1f} s | {result['seconds']} s | {'met' if ok_time else '**not met**'} |",
        f"| gateway RSS ≤ 80 MB | peak {result['peak_rss_mb']} MB | {'met' if result['peak_rss_mb'] <= 80 else '**not met**'} |",
    ]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
