"""The broker's queue limit on a stock Mosquitto (no max_queued_messages line: 1000 per client): a burst drains
into the gateway's large receive window instead of overflowing; drops while the gateway is away are seen in
the metric, the log and /healthz; with the shipped setting (max_queued_messages 0) nothing is lost."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway import protocol
from gateway.config import parse
from gateway.mqttconn import BrokerSettings, connect_blocking, make_client
from gateway.sandbox.launch import GatewayProcess, http_json, wait_for
from gateway.sandbox.mosquitto import start_standalone, stock_config
from gateway.sandbox.ports import free_port
from gateway.service import Gateway
from tests.helpers import sqlite_readings

pytestmark = pytest.mark.servers
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto.conf"
DEVICES = 20


class Publishers:
    """DEVICES connections that publish QoS 1 readings once each (no end-to-end resend)."""

    def __init__(self, port: int) -> None:
        settings = BrokerSettings("127.0.0.1", port)
        self.clients: list[mqtt.Client] = []
        for i in range(DEVICES):
            c = make_client(settings, f"pub-{i}")
            c.max_inflight_messages_set(1000)
            connect_blocking(c, settings)
            c.loop_start()
            self.clients.append(c)
        self.sent = 0
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, n: int) -> None:
        for _ in range(n):
            dev, seq = self.sent % DEVICES, self.sent // DEVICES
            payload = protocol.encode_reading(f"d{dev}", "a", 1, seq, 1700000000000 + seq, "rtc", seq / 8, "C")
            self.infos.append(self.clients[dev].publish(f"iot/s1/d{dev}/reading", payload, qos=1))
            self.sent += 1

    def wait_published(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert all(i.is_published() for i in self.infos), "the broker did not take every reading"

    def close(self) -> None:
        for c in self.clients:
            c.loop_stop()
            c.disconnect()


def gateway_on(port: int, workdir: Path) -> GatewayProcess:
    cfg = {"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "gw-drops"},
           "spool": {"path": str(workdir / "spool.db")}, "http": {"listen": "127.0.0.1:0"},
           "database": {"kind": "sqlite", "sqlite_path": str(workdir / "readings.db")}}
    gw = GatewayProcess(workdir, cfg).start()
    wait_for(lambda: "subscribed to" in gw.log_tail(), 30, f"the gateway to subscribe (log:\n{gw.log_tail()})")
    return gw


def http_port(gw: GatewayProcess, starts: int = 1) -> int:
    """The HTTP port of the gateway's `starts`-th start (its log is appended to across restarts)."""
    def ports():
        found = re.findall(r"/healthz on 127\.0\.0\.1:(\d+)", gw.log_tail(100_000))
        return found if len(found) >= starts else None

    return int(wait_for(ports, 30, "the http port")[starts - 1])


def log_time(log: str, text: str, nth: int) -> float:
    """The time of the nth log line containing `text` (the text format starts with `YYYY-mm-dd HH:MM:SS,mmm`)."""
    import datetime

    lines = [ln for ln in log.splitlines() if text in ln]
    stamp = datetime.datetime.strptime(lines[nth - 1][:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_stock_broker_burst_of_20000_is_stored_whole(tmp_path):
    port = free_port()
    broker = start_standalone(tmp_path / "broker", stock_config(tmp_path / "broker", port), port)
    gw = gateway_on(port, tmp_path / "gw")
    pubs = Publishers(port)
    try:
        pubs.publish(20_000)
        pubs.wait_published()
        wait_for(lambda: sqlite_readings(tmp_path / "gw" / "readings.db") >= 20_000, 60,
                 f"20,000 stored, have {sqlite_readings(tmp_path / 'gw' / 'readings.db')} (log:\n{gw.log_tail()})")
        assert sqlite_readings(tmp_path / "gw" / "readings.db") == 20_000
        assert "dropped" not in broker.log.lower().replace("messages/dropped", "")
    finally:
        pubs.close()
        gw.terminate()
        broker.stop()


def kill_and_restart_at_500_per_s(tmp_path: Path, extra: list[str]) -> tuple[int, int, GatewayProcess, int, object]:
    """Publish at 500 readings/s for 8 s; kill -9 the gateway at 1 s and start it again 5 s later."""
    port = free_port()
    broker = start_standalone(tmp_path / "broker", stock_config(tmp_path / "broker", port, sys_interval=1,
                                                                extra=extra), port)
    gw = gateway_on(port, tmp_path / "gw")
    pubs = Publishers(port)
    started = time.monotonic()
    restarted_at = None
    killed = False
    for tick in range(80):  # 80 ticks of 0.1 s, 50 readings each
        pubs.publish(50)
        if tick == 10:
            gw.kill()
            killed = True
        if tick == 60 and killed:
            gw.start()
            restarted_at = time.monotonic()
        time.sleep(max(0.0, started + (tick + 1) * 0.1 - time.monotonic()))
    pubs.wait_published()
    pubs.close()
    assert restarted_at is not None
    return pubs.sent, port, gw, restarted_at, broker


def test_drops_while_the_gateway_is_away_are_seen_within_5_s(tmp_path):
    sent, _port, gw, restarted_at, broker = kill_and_restart_at_500_per_s(tmp_path, [])
    try:
        http = http_port(gw, starts=2)

        def seen():
            doc = http_json(f"http://127.0.0.1:{http}/healthz")
            return doc["status"] == "degraded" and metric(http, "iotgw_broker_dropped_seen_total") > 0 and doc

        doc = wait_for(seen, 10, f"drops in /healthz and /metrics (log:\n{gw.log_tail()})")
        # Metric, /healthz and the warning change together: the log's timestamps show when, from the reconnect.
        log = gw.log_tail(100_000)
        reconnected = log_time(log, "subscribed to", nth=2)
        warned = log_time(log, "broker dropped", nth=1)
        assert 0 <= warned - reconnected < 5, (reconnected, warned)
        assert "max_queued_messages" in " ".join(doc["degraded"])
        assert "max_queued_messages 0" in gw.log_tail(100) and "broker dropped" in gw.log_tail(100)
        wait_for(lambda: sqlite_readings(tmp_path / "gw" / "readings.db") >= sent - metric(http, "iotgw_broker_dropped_seen_total"),
                 30, "everything not dropped stored")
        lost = sent - sqlite_readings(tmp_path / "gw" / "readings.db")
        assert lost > 0 and metric(http, "iotgw_broker_dropped_seen_total") == lost
    finally:
        gw.terminate()
        broker.stop()


def test_with_the_shipped_queue_setting_the_same_kill_loses_nothing(tmp_path):
    setting = next(ln for ln in SHIPPED.read_text().splitlines() if ln.startswith("max_queued_messages"))
    assert setting == "max_queued_messages 0"
    sent, _port, gw, _at, broker = kill_and_restart_at_500_per_s(tmp_path, [setting])
    try:
        wait_for(lambda: sqlite_readings(tmp_path / "gw" / "readings.db") >= sent, 60,
                 f"{sent} stored (log:\n{gw.log_tail()})")
        assert sqlite_readings(tmp_path / "gw" / "readings.db") == sent == 4000
        http = http_port(gw, starts=2)
        assert http_json(f"http://127.0.0.1:{http}/healthz")["status"] == "ok"
    finally:
        gw.terminate()
        broker.stop()


def test_each_brokers_drops_are_counted_on_their_own(tmp_path):
    """With two brokers, each one's `$SYS` dropped count is followed separately and kept in the spool, so a
    restart sees only new drops; the first broker keeps the spool key a single-broker gateway used."""
    def gateway() -> Gateway:
        return Gateway(parse({"mqtt": {"brokers": ["127.0.0.1:1", "127.0.0.1:2"], "client_id": "drops"},
                              "spool": {"path": str(tmp_path / "spool.db")},
                              "database": {"kind": "sqlite", "sqlite_path": str(tmp_path / "readings.db")},
                              "http": {"listen": "127.0.0.1:0"}}))

    gw = gateway()
    first, second = gw.mqtt, gw.mqtt_more[0]
    first.on_broker_dropped(5)  # broker 1 had dropped 5 before we ever looked: counted once, as growth
    second.on_broker_dropped(40)
    second.on_broker_dropped(40)  # the same count again: nothing new
    first.on_broker_dropped(7)
    assert gw.health()["broker_dropped"] == 47
    assert gw.metrics.broker_dropped_seen._value.get() == 47  # 5 + 40 + 2
    assert any("dropped 47 messages" in p for p in gw.health()["degraded"])
    assert gw.spool.read_counter("broker_dropped_seen") == 7
    gw.spool.close()
    gw.http.server.server_close()

    again = gateway()  # a restart: the counts seen before are remembered per broker
    again.mqtt_more[0].on_broker_dropped(41)
    again.mqtt.on_broker_dropped(7)
    assert again.metrics.broker_dropped_seen._value.get() == 1
    again.spool.close()
    again.http.server.server_close()
