"""Bad input is quarantined with its reason and never stops good input; serial on a pty; the embedded default;
a TLS broker with a password."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest

from gateway import protocol
from gateway.mqttconn import BrokerSettings, MqttConnectError, connect_blocking, make_client
from gateway.sandbox.launch import GatewayProcess, sandbox_config, spool_depth, wait_for
from gateway.simulator import SimOptions, simulate
from tests.ingest.helpers import (
    SerialLine,
    assert_exact,
    broker_of,
    simulate_through,
    start_gateway,
    unique,
    wait_stored,
)

pytestmark = pytest.mark.servers
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def quarantine_rows(spool: Path) -> list[tuple]:
    conn = sqlite3.connect(spool)
    try:
        return conn.execute("SELECT topic, reason, field, raw FROM quarantine ORDER BY id").fetchall()
    finally:
        conn.close()


def publisher(sb) -> mqtt.Client:
    client = make_client(broker_of(sb), unique("pub-"))
    connect_blocking(client, broker_of(sb))
    client.loop_start()
    return client


def test_every_invalid_vector_is_quarantined_with_its_reason(sandbox, tmp_path):
    gw = start_gateway(sandbox, tmp_path, database=False)
    prefix = gw.config["mqtt"]["topic_prefix"]
    # Topics of another shape (no site level) do not match the subscription: the broker never delivers them.
    vectors = [v for v in json.loads((VECTORS / "readings_invalid.json").read_text()) if v["topic"].count("/") == 3]
    client = publisher(sandbox)
    try:
        for vec in vectors:
            payload = bytes.fromhex(vec["payload_hex"]) if "payload_hex" in vec else vec["payload"].encode()
            topic = prefix + vec["topic"].removeprefix("iot")
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        spool = tmp_path / "spool.db"
        wait_for(
            lambda: len(quarantine_rows(spool)) == len(vectors),
            30,
            f"{len(vectors)} quarantined messages (gateway log:\n{gw.log_tail()})",
        )
        got = quarantine_rows(spool)
        for vec, (_topic, reason, field, raw) in zip(vectors, got, strict=True):
            assert (reason, field) == (vec["reason"], vec["field"]), vec["name"]
            expected_raw = bytes.fromhex(vec["payload_hex"]) if "payload_hex" in vec else vec["payload"].encode()
            assert raw == expected_raw, vec["name"]
        assert gw.alive()
    finally:
        client.loop_stop()
        gw.terminate()


def test_flood_of_bad_messages_loses_no_good_one(sandbox, tmp_path):
    gw = start_gateway(sandbox, tmp_path)
    try:
        report = simulate_through(gw, sandbox, deadline_s=180, devices=5, count=400, rate=0, malformed=3000, oversized=1000, duplicate_rate=0.2)
        assert report.unacked == 0 and report.malformed_sent == 4000
        wait_stored(sandbox, gw, report.sent)
        assert_exact(sandbox, report)
        reasons = {r[1] for r in quarantine_rows(tmp_path / "spool.db")}
        assert {"not_json", "too_large", "missing_field", "bad_version", "not_object", "not_utf8"} <= reasons
        assert gw.alive()
    finally:
        gw.terminate()


def test_rejected_reading_with_identity_is_acked_and_replayable(sandbox, tmp_path):
    """A bad reading must not stop its collector's acks; after a fix it can be replayed."""
    gw = start_gateway(sandbox, tmp_path, database=False)
    prefix = gw.config["mqtt"]["topic_prefix"]
    client = publisher(sandbox)
    acks: list[protocol.Ack] = []
    client.on_message = lambda _c, _u, m: acks.append(protocol.parse_ack(m.payload))
    client.subscribe(f"{prefix}/s1/dev1/ack", qos=1)
    try:
        good = [protocol.encode_reading("dev1", "a", 1, s, 1700000000000 + s, "rtc", 1.0, "C") for s in (0, 2)]
        bad = protocol.encode_reading("dev1", "a", 1, 1, 1700000000001, "rtc", 1.0, "C").replace(
            '"unit":"C"', '"unit":""'
        )
        for payload in (good[0], bad, good[1]):
            client.publish(f"{prefix}/s1/dev1/reading", payload, qos=1).wait_for_publish(10)
        wait_for(lambda: any(a.upto == 2 for a in acks), 30, f"an ack up to seq 2, got {acks}")
        gw.terminate()
        from click.testing import CliRunner

        from gateway.cli import main

        result = CliRunner().invoke(main, ["spool", "quarantine", "--config", str(gw.config_path)])
        assert "out_of_range: unit" in result.output
        conn = sqlite3.connect(tmp_path / "spool.db")  # "the fix": here, a corrected payload
        conn.execute('UPDATE quarantine SET raw = replace(raw, \'"unit":""\', \'"unit":"C"\')')
        conn.commit()
        conn.close()
        result = CliRunner().invoke(main, ["spool", "replay", "--config", str(gw.config_path)])
        assert "replayed 1 into the spool" in result.output, result.output
        gw.start()
        wait_for(lambda: spool_depth(tmp_path / "spool.db") == 0, 30, "the spool to drain")
        rows = sqlite3.connect(tmp_path / "readings.db").execute("SELECT seq FROM readings ORDER BY seq").fetchall()
        assert rows == [(0,), (1,), (2,)]
    finally:
        client.loop_stop()
        gw.terminate()


def test_serial_collector_on_a_pty_delivers_and_gets_acks(sandbox, tmp_path):
    line = SerialLine()
    port_name = line.port
    cfg = sandbox_config(sandbox, tmp_path, prefix=unique("t"), client_id=unique("gw-"))
    cfg["mqtt"]["enabled"] = False
    cfg["serial"] = {"port": [{"port": port_name, "baud": 115200, "site": "bench"}]}
    gw = GatewayProcess(tmp_path, cfg).start()
    try:
        wait_for(lambda: "serial" in gw.log_tail(50) and "open" in gw.log_tail(50), 30, "the serial port to open")
        sent = {}
        line.write(b"boot 3: console text is not a frame\n")
        for seq in range(50):
            ts = 1700000000000 + seq * 1000
            payload = protocol.encode_reading("ft-1", "a", 3, seq, ts, "rtc", seq / 10, "V")
            sent[("ft-1", "a", 3, seq)] = (ts, seq / 10)
            line.write((protocol.frame("R", payload) + "\n").encode())
        line.write(b"!R {broken*0000\n")
        wait_for(
            lambda: any(
                protocol.parse_ack(protocol.parse_frame(ln)[1]).upto == 49
                for ln in list(line.lines) if ln.startswith("!A")
            ),
            30,
            f"an ack line up to seq 49 (got {list(line.lines)[-3:]})",
        )
        for ln in list(line.lines):
            assert protocol.parse_frame(ln)[0] == "A"  # every ack line is a valid frame with a good CRC
        wait_stored(sandbox, gw, 50)
        assert_exact(sandbox, SimpleNamespace(readings=sent))
        reasons = [r[1] for r in quarantine_rows(tmp_path / "spool.db")]
        assert reasons == ["bad_checksum"]  # the broken frame; console text is not quarantined
    finally:
        gw.terminate()
        line.close()


def test_embedded_default_stores_10k_readings_in_local_sqlite(sandbox, tmp_path):
    gw = start_gateway(sandbox, tmp_path, database=False)
    try:
        report = simulate_through(gw, sandbox, deadline_s=180, devices=20, count=500, rate=0)
        assert report.unacked == 0
        wait_for(lambda: spool_depth(tmp_path / "spool.db") == 0, 60, "the spool to drain")
        conn = sqlite3.connect(tmp_path / "readings.db")
        rows = conn.execute("SELECT device, node, boot, seq, sampled_at FROM readings").fetchall()
        assert len(rows) == 10_000 == len({r[:4] for r in rows})
        from gateway.sinks.base import ms_to_datetime

        for dev, node, boot, seq, sampled in rows:
            assert sampled == ms_to_datetime(report.readings[(dev, node, boot, seq)][0])
    finally:
        gw.terminate()


def test_tls_broker_with_password(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=0, broker=True, tls=True, mariadb_servers=False)
    b = sb.endpoints()["broker"]
    good = BrokerSettings(b["host"], b["tls_port"], b["username"], b["password"], b["ca"])
    prefix = unique("t")
    cfg = {
        "mqtt": {
            "host": b["host"],
            "port": b["tls_port"],
            "username": b["username"],
            "password": b["password"],
            "tls_ca": b["ca"],
            "client_id": unique("gw-"),
            "topic_prefix": prefix,
        },
        "spool": {"path": str(tmp_path / "spool.db")},
        "http": {"listen": "127.0.0.1:0"},
        "database": {"kind": "sqlite", "sqlite_path": str(tmp_path / "readings.db")},
    }
    gw = GatewayProcess(tmp_path, cfg).start()
    try:
        report = simulate(good, SimOptions(devices=2, count=50, rate=0, prefix=prefix), deadline_s=60)
        assert report.sent == 100 and report.unacked == 0
        with pytest.raises(MqttConnectError, match="Not authorized|Bad user name or password"):
            simulate(BrokerSettings(b["host"], b["tls_port"], b["username"], "wrong", b["ca"]), SimOptions(count=1))
        other_ca = tmp_path / "other-ca.pem"
        os.system(
            f"openssl req -x509 -newkey rsa:2048 -nodes -keyout {tmp_path}/k.pem -out {other_ca} "
            f"-days 1 -subj /CN=other >/dev/null 2>&1"
        )
        with pytest.raises(MqttConnectError, match="not trusted"):
            simulate(
                BrokerSettings(b["host"], b["tls_port"], b["username"], b["password"], str(other_ca)),
                SimOptions(count=1),
            )
    finally:
        gw.terminate()
    # the gateway names the cause too
    cfg["mqtt"]["password"] = "wrong"
    cfg["mqtt"]["client_id"] = unique("gw-")
    bad = GatewayProcess(tmp_path / "bad", cfg).start()
    try:
        wait_for(
            lambda: "Not authorized" in bad.log_tail(20) or "password" in bad.log_tail(20),
            30,
            "the gateway to log why the broker refused it",
        )
        assert "check mqtt.username" in bad.log_tail(20)
    finally:
        bad.terminate()


def test_odd_status_payloads_do_not_stop_ingest(sandbox, tmp_path):
    gw = start_gateway(sandbox, tmp_path, database=False)
    prefix = gw.config["mqtt"]["topic_prefix"]
    client = publisher(sandbox)
    try:
        for payload in (b"[1]", b"not json", b"\xff"):
            client.publish(f"{prefix}/s1/dev1/status", payload, qos=1).wait_for_publish(10)
        report = simulate_through(gw, sandbox, deadline_s=60, devices=1, count=20, rate=0)
        assert report.unacked == 0 and gw.alive()
    finally:
        client.loop_stop()
        gw.terminate()
