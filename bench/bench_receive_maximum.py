"""The gateway's MQTT 5 Receive Maximum on a stock Mosquitto (no max_queued_messages line: 1000 per client).

20 publisher connections send 20,000 QoS 1 readings as fast as the broker takes them and never resend (a device
relying on QoS 1 alone). Per receive maximum: readings stored by the gateway (SQLite sink), the broker's own
dropped-messages count, the time until the last one was stored, and the gateway's peak RSS.
Target: 100 % stored with the default (mqtt.receive_maximum), peak RSS within 80 MB.

Run: .venv/bin/python bench/bench_receive_maximum.py → bench/results/receive_maximum.json and .md
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replication_common import write_results  # noqa: E402

from gateway import protocol  # noqa: E402
from gateway.config import MqttConfig  # noqa: E402
from gateway.mqttconn import BrokerSettings, connect_blocking, make_client  # noqa: E402
from gateway.sandbox.launch import GatewayProcess, wait_for  # noqa: E402
from gateway.sandbox.mosquitto import start_standalone, stock_config  # noqa: E402
from gateway.sandbox.ports import free_port  # noqa: E402

READINGS, PUBLISHERS = 20_000, 20


def stored(path: Path) -> int:
    try:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run(receive_maximum: int, tmp: Path) -> dict:
    port = free_port()
    broker = start_standalone(tmp / "broker", stock_config(tmp / "broker", port, sys_interval=1), port)
    cfg = {"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "gw-bench", "receive_maximum": receive_maximum},
           "spool": {"path": str(tmp / "gw" / "spool.db")}, "http": {"listen": "127.0.0.1:0"},
           "database": {"kind": "sqlite", "sqlite_path": str(tmp / "gw" / "readings.db")}}
    gw = GatewayProcess(tmp / "gw", cfg).start()
    settings = BrokerSettings("127.0.0.1", port)
    clients = []
    try:
        wait_for(lambda: "subscribed to" in gw.log_tail(), 30, "the gateway to subscribe")
        for i in range(PUBLISHERS):
            c = make_client(settings, f"pub-{i}")
            c.max_inflight_messages_set(1000)
            connect_blocking(c, settings)
            c.loop_start()
            clients.append(c)
        started = time.monotonic()
        infos = []
        for n in range(READINGS):
            dev, seq = n % PUBLISHERS, n // PUBLISHERS
            payload = protocol.encode_reading(f"d{dev}", "a", 1, seq, 1700000000000 + seq, "rtc", 1.0, "C")
            infos.append(clients[dev].publish(f"iot/s1/d{dev}/reading", payload, qos=1))
        for info in infos:
            info.wait_for_publish(60)
        last, last_change = -1, time.monotonic()
        while time.monotonic() - last_change < 4 and time.monotonic() - started < 120:
            now = stored(tmp / "gw" / "readings.db")
            if now != last:
                last, last_change = now, time.monotonic()
            time.sleep(0.2)
        elapsed = last_change - started
        dropped = (tmp / "broker" / "mosquitto.log").read_text(errors="replace").count(
            "Outgoing messages are being dropped")
        return {"receive_maximum": receive_maximum, "stored": last, "stored_pct": round(100 * last / READINGS, 1),
                "seconds_to_last_stored": round(elapsed, 1), "lost_at_broker": READINGS - last, "broker_drop_warnings": dropped,
                "gateway_peak_rss_mb": round(peak_rss_kb(gw.pid) / 1024, 1)}
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        gw.terminate()
        broker.stop()


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    default = MqttConfig().receive_maximum
    results = []
    for rm in (400, 4000, default):
        with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
            results.append(run(rm, Path(tmp)))
            print(results[-1])
    best = next(r for r in results if r["receive_maximum"] == default)
    met = best["stored"] == READINGS and best["gateway_peak_rss_mb"] <= 80
    table = [f"# Receive maximum on stock Mosquitto ({READINGS} QoS 1 readings, {PUBLISHERS} publishers, no resend)", "",
             "Shared 2-core machine, loopback, SQLite sink, Mosquitto 2.0.11 with its default max_queued_messages (1000).",
             "", "| receive maximum | stored | % | lost at the broker | s to last stored | broker log warnings | gateway peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['receive_maximum']}{' (default)' if r['receive_maximum'] == default else ''} | {r['stored']} | "
              f"{r['stored_pct']} | {r['lost_at_broker']} | {r['seconds_to_last_stored']} | {r['broker_drop_warnings']} | "
              f"{r['gateway_peak_rss_mb']} |" for r in results]
    table += ["", f"Target: 100 % stored with the default, peak RSS ≤ 80 MB: **{'met' if met else 'not met'}**."]
    write_results("receive_maximum", {"readings": READINGS, "publishers": PUBLISHERS, "runs": results,
                                      "target_met": met}, table)


if __name__ == "__main__":
    main()
