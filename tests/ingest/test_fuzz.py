"""Fuzz acceptance on real Mosquitto + the `iotgw` gateway process: thousands of generated hostile messages
interleaved with good readings. Ingest never stops, every good reading is stored exactly once, every hostile one
is quarantined or refused, memory stays bounded and /healthz is ok at the end. The same on serial over a pty."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from gateway import protocol
from gateway.mqttconn import BrokerSettings, connect_blocking, make_client
from gateway.sandbox.launch import GatewayProcess, http_json, wait_for
from gateway.sandbox.mosquitto import start_standalone, stock_config
from gateway.sandbox.ports import free_port
from tests.ingest.helpers import SerialLine
from tests.ingest.hostile import HostileGen
from tests.service.test_service import http_port

pytestmark = pytest.mark.servers
SIZE_LIMIT = 1 << 20  # the test broker's message_size_limit: deep nesting up to 1 MB reaches the gateway
RSS_BUDGET_KB = 80 * 1024
GOOD_DEVICES = [f"d{i}" for i in range(20)]


def query(path: Path, sql: str) -> list[tuple]:
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_mqtt_fuzz_5000_hostile_with_10000_good(tmp_path):
    port = free_port()
    broker = start_standalone(tmp_path / "broker", stock_config(
        tmp_path / "broker", port, extra=["max_queued_messages 0", f"message_size_limit {SIZE_LIMIT}"]), port)
    work = tmp_path / "gw"
    cfg = {"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "gw-fuzz", "topic_prefix": "fz"},
           "spool": {"path": str(work / "spool.db")}, "http": {"listen": "127.0.0.1:0"},
           "database": {"kind": "sqlite", "sqlite_path": str(work / "readings.db")}}
    gw = GatewayProcess(work, cfg).start()
    settings = BrokerSettings("127.0.0.1", port)
    clients = []
    try:
        wait_for(lambda: "subscribed to" in gw.log_tail(), 30, f"the gateway to subscribe (log:\n{gw.log_tail()})")
        for name in [*GOOD_DEVICES, "hostile"]:
            c = make_client(settings, f"fz-{name}")
            connect_blocking(c, settings)
            c.loop_start()
            clients.append(c)
        gen = HostileGen(seed=20261206, prefix="fz", size_limit=SIZE_LIMIT, good_devices=GOOD_DEVICES)
        plan = ["good"] * 10_000 + ["hostile"] * 5_000
        random.Random(1).shuffle(plan)
        good = iter([(d, seq) for seq in range(500) for d in range(20)])  # each device in sequence order
        sent_good = 0
        delivered, infos, kinds = 0, [], {}
        for what in plan:
            if what == "good":
                d, seq = next(good)
                sent_good += 1
                payload = protocol.encode_reading(GOOD_DEVICES[d], "a", 1, seq, 1700000000000 + seq, "rtc", seq / 8, "C")
                infos.append(clients[d].publish(f"fz/s1/{GOOD_DEVICES[d]}/reading", payload, qos=1))
            else:
                kind, topic, payload = gen.next()
                kinds[kind] = kinds.get(kind, 0) + 1
                parts = topic.split("/")
                delivered += len(parts) == 4 and parts[3] in ("reading", "status")  # what the subscription matches
                infos.append(clients[-1].publish(topic, payload, qos=1))
            if len(infos) >= 2000:  # bounded in flight in this test process
                for info in infos:
                    info.wait_for_publish(30)
                infos = []
        for info in infos:
            info.wait_for_publish(30)
        assert sent_good == 10_000 and sum(kinds.values()) == 5_000
        readings, spool = work / "readings.db", work / "spool.db"
        wait_for(lambda: query(readings, "SELECT count(*) FROM readings") == [(10_000,)], 120,
                 f"10,000 good readings stored (log:\n{gw.log_tail()})")
        wait_for(lambda: query(spool, "SELECT count(*) FROM quarantine") == [(delivered,)], 60,
                 f"{delivered} quarantined, have {query(spool, 'SELECT count(*) FROM quarantine')}")
        rows = query(readings, "SELECT device, seq FROM readings")
        assert sorted(rows) == sorted((d, s) for d in GOOD_DEVICES for s in range(500))  # each exactly once
        assert gw.alive()
        print(f"gateway peak RSS {peak_rss_kb(gw.pid)} kB, {delivered} hostile delivered, cases {kinds}")
        assert peak_rss_kb(gw.pid) <= RSS_BUDGET_KB, f"peak RSS {peak_rss_kb(gw.pid)} kB"
        health = http_json(f"http://127.0.0.1:{http_port(gw)}/healthz")
        assert health["status"] == "ok", health
        assert query(spool, "SELECT max(length(raw)) FROM quarantine")[0][0] <= 1024
        assert query(spool, "SELECT count(*) FROM quarantine WHERE reason = 'internal_error'") == [(0,)]
        assert "Traceback" not in gw.log_tail(100_000)
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        gw.terminate()
        broker.stop()


def test_serial_fuzz_garbage_long_lines_and_noise(tmp_path):
    line = SerialLine()
    work = tmp_path / "gw"
    cfg = {"mqtt": {"enabled": False}, "serial": {"port": [{"port": line.port, "site": "bench"}]},
           "spool": {"path": str(work / "spool.db")}, "http": {"listen": "127.0.0.1:0"},
           "database": {"kind": "sqlite", "sqlite_path": str(work / "readings.db")}}
    gw = GatewayProcess(work, cfg).start()
    try:
        wait_for(lambda: "open at" in gw.log_tail(50), 30, "the serial port to open")
        gen = HostileGen(seed=7, prefix="x", size_limit=4096, good_devices=["unused"])
        rng = random.Random(3)
        hostile = 0
        for seq in range(500):
            for dev in ("s0", "s1", "s2", "s3"):
                line.write((protocol.frame("R", protocol.encode_reading(
                    dev, "a", 2, seq, 1700000000000 + seq, "rtc", seq / 2, "V")) + "\n").encode())
            for _ in range(rng.choice((0, 1, 2, 3))):
                line.write(gen.serial_line())
                hostile += 1
            if seq % 50 == 0:
                line.write(b"console text: not a frame\n")
        spool, readings = work / "spool.db", work / "readings.db"
        wait_for(lambda: query(readings, "SELECT count(*) FROM readings") == [(2000,)], 60,
                 f"2,000 stored (log:\n{gw.log_tail()})")
        wait_for(lambda: query(spool, "SELECT count(*) FROM quarantine") == [(hostile,)], 30,
                 f"{hostile} quarantined, have {query(spool, 'SELECT count(*) FROM quarantine')}")
        assert sorted(query(readings, "SELECT device, seq FROM readings")) == sorted(
            (d, s) for d in ("s0", "s1", "s2", "s3") for s in range(500))
        print(f"gateway peak RSS {peak_rss_kb(gw.pid)} kB, {hostile} hostile lines")
        assert hostile > 500 and gw.alive() and peak_rss_kb(gw.pid) <= RSS_BUDGET_KB
        assert http_json(f"http://127.0.0.1:{http_port(gw)}/healthz")["status"] == "ok"
        assert query(spool, "SELECT count(*) FROM quarantine WHERE reason = 'internal_error'") == [(0,)]
    finally:
        gw.terminate()
        line.close()
