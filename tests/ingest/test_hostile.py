"""Hostile input on a real broker: a poison message never stops ingest (nor a restart), an identity counts only on
its own device's topic, and collector statuses reach the database (MQTT and serial)."""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from gateway import protocol
from gateway.mqttconn import connect_blocking, make_client
from gateway.sandbox.launch import GatewayProcess, sandbox_config, wait_for
from tests.ingest.helpers import SerialLine, broker_of, start_gateway, unique
from tests.service.test_service import http_port

pytestmark = pytest.mark.servers


def publisher(sb) -> mqtt.Client:
    client = make_client(broker_of(sb), unique("pub-"))
    connect_blocking(client, broker_of(sb))
    client.loop_start()
    return client


def sqlite_rows(path, sql: str) -> list[tuple]:
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        conn.close()


def good(device: str, seq: int, node: str = "a") -> str:
    return protocol.encode_reading(device, node, 1, seq, 1700000000000 + seq, "rtc", seq / 4, "C")


def test_deep_nesting_poison_is_quarantined_and_a_restart_is_not_stuck_on_it(sandbox, tmp_path):
    gw = start_gateway(sandbox, tmp_path, database=False)
    prefix = gw.config["mqtt"]["topic_prefix"]
    poison = b"[" * 100_000
    client = publisher(sandbox)
    readings_db, spool = tmp_path / "readings.db", tmp_path / "spool.db"
    try:
        client.publish(f"{prefix}/s1/d1/reading", poison, qos=1).wait_for_publish(10)
        client.publish(f"{prefix}/s1/d1/status", poison, qos=1).wait_for_publish(10)
        for seq in range(20):
            client.publish(f"{prefix}/s1/d1/reading", good("d1", seq), qos=1).wait_for_publish(10)
        wait_for(lambda: len(sqlite_rows(readings_db, "SELECT seq FROM readings")) == 20, 30,
                 f"20 readings stored (log:\n{gw.log_tail()})")
        # While the gateway is away the broker queues the poison for its persistent session, ahead of good ones.
        gw.terminate()
        client.publish(f"{prefix}/s1/d1/reading", poison, qos=1).wait_for_publish(10)
        for seq in range(20, 40):
            client.publish(f"{prefix}/s1/d1/reading", good("d1", seq), qos=1).wait_for_publish(10)
        gw.start()
        wait_for(lambda: len(sqlite_rows(readings_db, "SELECT seq FROM readings")) == 40, 30,
                 f"40 readings stored after the restart (log:\n{gw.log_tail()})")
        rows = sqlite_rows(spool, "SELECT reason, length(raw), raw_len FROM quarantine ORDER BY id")
        assert rows == [("too_large", 1024, 100_000)] * 3  # cut to 1 KiB, the original length kept
        assert gw.alive() and "Traceback" not in gw.log_tail(400)
    finally:
        client.loop_stop()
        gw.terminate()


def test_a_client_naming_another_device_moves_nothing_for_it(sandbox, tmp_path):
    """Bad readings sent on the attacker's own topic that name the victim: no ack, no watermark for the victim,
    so the victim's real readings with those sequence numbers are all stored."""
    gw = start_gateway(sandbox, tmp_path, database=False)
    prefix = gw.config["mqtt"]["topic_prefix"]
    client = publisher(sandbox)
    acks: list[protocol.Ack] = []
    client.on_message = lambda _c, _u, m: acks.append(protocol.parse_ack(m.payload))
    client.subscribe(f"{prefix}/s1/victim/ack", qos=1)
    readings_db, spool = tmp_path / "readings.db", tmp_path / "spool.db"
    try:
        for seq in range(5):
            forged = good("victim", seq).replace('"val":', '"val":"x","v2":')  # bad value: quarantined
            client.publish(f"{prefix}/s1/evil/reading", forged, qos=1).wait_for_publish(10)
        client.publish(f"{prefix}/s1/evil/reading", good("victim", 5), qos=1).wait_for_publish(10)
        wait_for(lambda: len(sqlite_rows(spool, "SELECT id FROM quarantine")) == 6, 30, "6 quarantined")
        reasons = sqlite_rows(spool, "SELECT reason FROM quarantine")
        assert reasons == [("topic_mismatch",)] * 6
        assert sqlite_rows(spool, "SELECT * FROM progress WHERE device = 'victim'") == []
        assert acks == []  # nothing acknowledged in the victim's name
        for seq in range(5):
            client.publish(f"{prefix}/s1/victim/reading", good("victim", seq), qos=1).wait_for_publish(10)
        wait_for(lambda: any(a.upto == 4 for a in acks), 30, f"the victim's ack up to 4, got {acks}")
        # The ack comes from the spool's commit (ack after = "spool"); the drain writes the sink just after it.
        wait_for(lambda: len(sqlite_rows(readings_db, "SELECT seq FROM readings WHERE device='victim'")) >= 5, 10,
                 "the victim's readings drained into the sink")
        assert sorted(sqlite_rows(readings_db, "SELECT seq FROM readings WHERE device='victim'")) == [
            (s,) for s in range(5)]
    finally:
        client.loop_stop()
        gw.terminate()


def test_a_bug_met_by_one_message_quarantines_it_and_ingest_goes_on(sandbox, tmp_path):
    """An exception inside message handling (injected at the 3rd message) never leaves the MQTT callback."""
    gw = start_gateway(sandbox, tmp_path, database=False, env={"IOTGW_FAULT_AT": "mqtt.message:3"})
    prefix = gw.config["mqtt"]["topic_prefix"]
    client = publisher(sandbox)
    readings_db, spool = tmp_path / "readings.db", tmp_path / "spool.db"
    try:
        for seq in range(10):
            client.publish(f"{prefix}/s1/d1/reading", good("d1", seq), qos=1).wait_for_publish(10)
        wait_for(lambda: len(sqlite_rows(readings_db, "SELECT seq FROM readings")) == 9, 30,
                 f"9 stored (log:\n{gw.log_tail()})")
        assert sqlite_rows(spool, "SELECT reason, raw FROM quarantine") == [("internal_error", good("d1", 2).encode())]
        assert sqlite_rows(spool, "SELECT upto FROM progress") == [(1,)]  # no identity from an internal error
        client.publish(f"{prefix}/s1/d1/reading", good("d1", 2), qos=1).wait_for_publish(10)  # the collector resends
        wait_for(lambda: len(sqlite_rows(readings_db, "SELECT seq FROM readings")) == 10, 30, "10 stored")
        assert sqlite_rows(spool, "SELECT upto FROM progress") == [(9,)]
        assert gw.log_tail(400).count("internal error on a message") == 1 and gw.alive()
    finally:
        client.loop_stop()
        gw.terminate()


STATUS = {"v": 1, "dev": "pair-1", "node": "a", "boot": 3, "state": "online", "role": "active", "cached": 12,
          "cap": 500, "dropped": 7, "reset": "wdt", "store_err": 1, "clock": "rtc", "period": 5000, "extra": "ignored"}


def test_status_with_dropped_over_mqtt_reaches_mysql_and_metrics(sandbox, tmp_path):
    gw = start_gateway(sandbox, tmp_path)
    prefix = gw.config["mqtt"]["topic_prefix"]
    client = publisher(sandbox)
    try:
        client.publish(f"{prefix}/s1/pair-1/status", json.dumps(STATUS), qos=1, retain=True).wait_for_publish(10)
        # Another device's status on pair-1's topic is refused: it would speak for pair-1.
        client.publish(f"{prefix}/s1/pair-1/status", json.dumps({**STATUS, "dev": "other", "dropped": 99}),
                       qos=1).wait_for_publish(10)

        def stored():
            return sandbox.rows("SELECT site, device, node, boot, state, role, cached, cap, dropped, reset_cause, "
                                "store_err, clock, period_ms FROM iot.device_status")

        wait_for(lambda: stored(), 30, f"a device_status row (log:\n{gw.log_tail()})")
        assert stored() == (("s1", "pair-1", "a", 3, "online", "active", 12, 500, 7, "wdt", 1, "rtc", 5000),)
        text = urllib.request.urlopen(f"http://127.0.0.1:{http_port(gw)}/metrics", timeout=5).read().decode()
        labels = '{device="pair-1",node="a",site="s1"}'
        for line in (f"iotgw_device_dropped{labels} 7.0", f"iotgw_device_cached{labels} 12.0",
                     f"iotgw_device_store_errors{labels} 1.0"):
            assert line in text, text
        wait_for(lambda: sqlite_rows(tmp_path / "spool.db", "SELECT reason FROM quarantine") == [("topic_mismatch",)],
                 30, "the forged status quarantined")
        # The last will: offline, fewer keys; the row follows.
        client.publish(f"{prefix}/s1/pair-1/status", '{"v":1,"dev":"pair-1","node":"a","state":"offline"}',
                       qos=1, retain=True).wait_for_publish(10)
        wait_for(lambda: stored() and stored()[0][4] == "offline", 30, "the offline status stored")
        client.publish(f"{prefix}/s1/pair-1/status", b"", qos=1, retain=True).wait_for_publish(10)  # clear retained
    finally:
        client.loop_stop()
        gw.terminate()


def test_status_with_dropped_over_serial_reaches_the_database(sandbox, tmp_path):
    line = SerialLine()
    cfg = sandbox_config(sandbox, tmp_path, prefix=unique("t"), client_id=unique("gw-"), database=False)
    cfg["mqtt"]["enabled"] = False
    cfg["serial"] = {"port": [{"port": line.port, "baud": 115200, "site": "bench"}]}
    gw = GatewayProcess(tmp_path, cfg).start()
    try:
        wait_for(lambda: "open at" in gw.log_tail(50), 30, "the serial port to open")
        status = json.dumps({**STATUS, "dev": "ser-1", "dropped": 42}, separators=(",", ":"))
        line.write((protocol.frame("S", status) + "\n").encode())
        wait_for(lambda: sqlite_rows(tmp_path / "readings.db", "SELECT device, dropped FROM device_status")
                 == [("ser-1", 42)], 30, f"the serial status stored (log:\n{gw.log_tail()})")
        assert sqlite_rows(tmp_path / "readings.db", "SELECT site FROM device_status") == [("bench",)]
    finally:
        gw.terminate()
        line.close()


def test_clearing_a_retained_status_is_not_quarantined(sandbox, tmp_path):
    """An empty retained payload on a status topic clears the broker's retained status: not an error."""
    gw = start_gateway(sandbox, tmp_path, database=False)
    prefix = gw.config["mqtt"]["topic_prefix"]
    client = publisher(sandbox)
    readings_db, spool = tmp_path / "readings.db", tmp_path / "spool.db"
    try:
        client.publish(f"{prefix}/s1/d7/status", b"", qos=1, retain=True).wait_for_publish(10)
        client.publish(f"{prefix}/s1/d7/status", b"{}", qos=1).wait_for_publish(10)  # a real error, for contrast
        client.publish(f"{prefix}/s1/d7/reading", good("d7", 0), qos=1).wait_for_publish(10)
        wait_for(lambda: len(sqlite_rows(readings_db, "SELECT seq FROM readings")) == 1, 30,
                 f"the reading stored (log:\n{gw.log_tail()})")
        wait_for(lambda: len(sqlite_rows(spool, "SELECT reason FROM quarantine")) >= 1, 10, "the bad status quarantined")
        assert [r for (r,) in sqlite_rows(spool, "SELECT topic FROM quarantine")] == [f"{prefix}/s1/d7/status"]
        assert len(sqlite_rows(spool, "SELECT id FROM quarantine")) == 1  # the empty one was not
    finally:
        client.loop_stop()
        gw.terminate()
