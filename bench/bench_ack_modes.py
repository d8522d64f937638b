"""End-to-end ack latency per ack point (`[ack] after`), and how fast a surviving gateway takes over.

1. Per mode (spool, database, replica): one gateway process on a sandbox (MariaDB primary + 1 replica,
   Mosquitto), 10 simulated collectors at 1,000 readings/s for 15 s. A separate MQTT client records when each
   ack arrives; a reading's ack latency is from its publication to the first ack whose `upto` covers it.
   Targets follow the default group commit (`spool.group_commit_ms`, 250 ms: the longest a reading waits for
   its commit): median ≤ 250 ms (spool), ≤ 500 ms (database), ≤ 750 ms (replica); p99 ≤ 1 s in every mode.
2. Two gateways in one shared subscription group (`database` mode), 500 readings/s; gateway 1 is killed
   (SIGKILL) at 8 s. Measured: from the kill to the first ack the survivor publishes, and to the moment every
   reading published before the kill is acknowledged (the collectors resend after their ack timeout, 2 s here).
   Target: everything acknowledged within ack timeout + 3 s of the kill.

Run: .venv/bin/python bench/bench_ack_modes.py → bench/results/ack_modes.json and .md
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replication_common import write_results  # noqa: E402

from gateway.mqttconn import BrokerSettings, connect_blocking, make_client  # noqa: E402
from gateway.protocol import parse_ack  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402
from gateway.sandbox.launch import launch_gateways, wait_for  # noqa: E402
from gateway.simulator import SimOptions, Simulator  # noqa: E402

RATE, SECONDS, DEVICES = 1000, 15, 10
TARGET_MEDIAN_MS = {"spool": 250, "database": 500, "replica": 750}
TARGET_P99_MS = 1000
ACK_TIMEOUT = 2.0


class AckRecorder:
    """Every ack on `<prefix>/+/+/ack` with its arrival time (wall clock ms, like the readings' `ts`)."""

    def __init__(self, settings: BrokerSettings, prefix: str) -> None:
        self.acks: dict[str, list[tuple[float, int]]] = {}
        self.lock = threading.Lock()
        self.client = make_client(settings, f"bench-acks-{time.time_ns()}")
        self.client.on_message = self._on_message
        connect_blocking(self.client, settings, clean_start=True)
        self.client.subscribe(f"{prefix}/+/+/ack", qos=1)
        self.client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        ack = parse_ack(msg.payload)
        with self.lock:
            self.acks.setdefault(ack.device, []).append((time.time() * 1000, ack.upto))

    def first_ack_ms(self, device: str, seq: int) -> float | None:
        """Arrival of the first ack covering `seq` (acks are cumulative: a running maximum of upto)."""
        best, highest = None, -1
        for at, upto in self.acks.get(device, []):
            highest = max(highest, upto)
            if highest >= seq:
                best = at
                break
        return best

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latencies(report, recorder: AckRecorder) -> list[float]:
    out = []
    for device in {d for d, _n, _b, _s in report.readings}:
        acks = recorder.acks.get(device, [])
        times, highs, highest = [], [], -1
        for at, upto in acks:
            highest = max(highest, upto)
            times.append(at)
            highs.append(highest)
        for (d, _n, _b, seq), (ts, _v) in report.readings.items():
            if d != device:
                continue
            i = bisect.bisect_left(highs, seq)
            if i < len(times):
                out.append(times[i] - ts)
    return out


def run_mode(sb: Sandbox, tmp: Path, mode: str) -> dict:
    prefix = f"b{mode}"
    (gw,) = launch_gateways(sb, 1, tmp / mode, client_id_prefix=f"bench-{mode}", mqtt={"topic_prefix": prefix},
                            ack={"after": mode})
    try:
        wait_for(lambda: "subscribed to" in gw.log_tail(50), 60, f"the gateway ({mode}) to subscribe")
        b = sb.endpoints()["broker"]
        settings = BrokerSettings(b["host"], b["port"])
        recorder = AckRecorder(settings, prefix)
        sim = Simulator(settings, SimOptions(prefix=prefix, devices=DEVICES, count=RATE * SECONDS // DEVICES,
                                             rate=RATE, ack_timeout=5.0))
        sim.connect()
        try:
            report = sim.run(deadline_s=120)
        finally:
            sim.close()
        time.sleep(0.5)
        recorder.close()
        lat = latencies(report, recorder)
        return {"mode": mode, "readings": report.sent, "acked": report.acked, "resent": report.resent,
                "median_ms": round(statistics.median(lat), 1), "p99_ms": round(percentile(lat, 0.99), 1),
                "max_ms": round(max(lat), 1), "sent_per_s": round(report.sent / max(report.seconds, 1e-9))}
    finally:
        gw.terminate()


def run_takeover(sb: Sandbox, tmp: Path) -> dict:
    prefix = "btakeover"
    gws = launch_gateways(sb, 2, tmp / "takeover", client_id_prefix="bench-take",
                          mqtt={"topic_prefix": prefix, "share_group": "bench"}, ack={"after": "database"})
    try:
        for gw in gws:
            wait_for(lambda gw=gw: "subscribed to" in gw.log_tail(50), 60, "the gateways to subscribe")
        b = sb.endpoints()["broker"]
        settings = BrokerSettings(b["host"], b["port"])
        recorder = AckRecorder(settings, prefix)
        sim = Simulator(settings, SimOptions(prefix=prefix, devices=DEVICES, count=500 * 20 // DEVICES, rate=500,
                                             ack_timeout=ACK_TIMEOUT))
        sim.connect()
        result: dict = {}
        thread = threading.Thread(target=lambda: result.setdefault("r", sim.run(deadline_s=120)), daemon=True)
        thread.start()
        time.sleep(8)
        killed_ms = time.time() * 1000
        gws[0].kill()
        before = {k for k, (ts, _v) in list(sim.report.readings.items()) if ts <= killed_ms}
        thread.join(150)
        sim.close()
        time.sleep(0.5)
        recorder.close()
        report = result["r"]
        after = sorted(at for acks in recorder.acks.values() for at, _u in acks if at > killed_ms)
        covered = [recorder.first_ack_ms(d, s) for d, _n, _b, s in before]
        return {"readings": report.sent, "unacked": report.unacked, "ack_timeout_s": ACK_TIMEOUT,
                "first_ack_after_kill_ms": round(after[0] - killed_ms, 1) if after else None,
                "all_before_kill_acked_after_ms": round(max(c for c in covered if c) - killed_ms, 1)
                if all(covered) else None}
    finally:
        for gw in gws:
            gw.terminate()


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp_name:
        tmp = Path(tmp_name)
        sb = Sandbox.up(tmp / "sb", replicas=1, broker=True)
        try:
            modes = []
            for mode in ("spool", "database", "replica"):
                modes.append(run_mode(sb, tmp, mode))
                print(modes[-1])
            takeover = run_takeover(sb, tmp)
            print(takeover)
        finally:
            sb.down()
    for m in modes:
        m["target_met"] = m["median_ms"] <= TARGET_MEDIAN_MS[m["mode"]] and m["p99_ms"] <= TARGET_P99_MS
    done = takeover["all_before_kill_acked_after_ms"]
    takeover["target_met"] = done is not None and done <= (ACK_TIMEOUT + 3) * 1000 and takeover["unacked"] == 0
    table = [f"# Ack latency per ack point ({DEVICES} collectors, {RATE} readings/s for {SECONDS} s)", "",
             "Shared 2-core machine (other jobs running), loopback, Mosquitto 2.0.11, MariaDB primary + 1 replica; "
             "one gateway process per mode with the default `spool.group_commit_ms` (250 ms); latency from a reading's "
             "publication to the first ack covering it.", "",
             "| `[ack] after` | readings | median ms | p99 ms | max ms | target (median, p99 ≤ 1000 ms) |",
             "|---|---|---|---|---|---|"]
    table += [f"| {m['mode']} | {m['readings']} | {m['median_ms']} | {m['p99_ms']} | {m['max_ms']} | "
              f"≤ {TARGET_MEDIAN_MS[m['mode']]} ms: **{'met' if m['target_met'] else 'not met'}** |" for m in modes]
    table += ["", "## A gateway dies: the survivor takes over", "",
              f"Two gateways in one shared subscription group, `database` mode, {DEVICES} collectors at 500 "
              f"readings/s, collector ack timeout {ACK_TIMEOUT} s; gateway 1 SIGKILLed at 8 s.", "",
              "| measured | ms |", "|---|---|",
              f"| kill → first ack published by the survivor | {takeover['first_ack_after_kill_ms']} |",
              f"| kill → every reading published before the kill acknowledged | "
              f"{takeover['all_before_kill_acked_after_ms']} |", "",
              f"Target: everything acknowledged within the ack timeout + 3 s ({(ACK_TIMEOUT + 3) * 1000:.0f} ms), "
              f"nothing left unacknowledged: **{'met' if takeover['target_met'] else 'not met'}**."]
    write_results("ack_modes", {"rate": RATE, "seconds": SECONDS, "devices": DEVICES, "modes": modes,
                                "takeover": takeover}, table)


if __name__ == "__main__":
    main()
