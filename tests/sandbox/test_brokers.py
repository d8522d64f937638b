"""Several independent Mosquitto brokers in one sandbox (`--brokers N`), faults on one of them, and N gateways
launched on them (gateway.sandbox.launch.launch_gateways)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gateway.mqttconn import BrokerSettings
from gateway.sandbox import Sandbox, SandboxError
from gateway.sandbox.launch import launch_gateways, wait_for
from gateway.sandbox.process import is_ours, wait_until
from gateway.simulator import SimOptions, simulate

from .test_broker import Probe
from .test_cli import iotgw

pytestmark = pytest.mark.servers


def round_trip(port: int, topic: str) -> bool:
    """Publish one QoS 1 message to ourselves through the broker on ``port``."""
    probe = Probe()
    try:
        if not probe.attempt(port):
            return False
        probe.client.subscribe(topic, qos=1)
        assert probe.subscribed.wait(10)
        probe.client.publish(topic, b"ping", qos=1).wait_for_publish(10)
        return probe.got_message.wait(10) and probe.messages == [b"ping"]
    finally:
        probe.close()


def test_two_brokers_are_independent_and_faults_name_one(make_sandbox):
    sb = make_sandbox(mariadb_servers=False, brokers=2)
    assert sb.broker_names() == ["broker", "broker2"]
    ep = sb.endpoints()
    assert [b["name"] for b in ep["brokers"]] == ["broker", "broker2"]
    first, second = ep["brokers"]
    assert first["port"] != second["port"]
    # Single-broker callers keep working: "broker" is the first one.
    assert ep["broker"] == {k: v for k, v in first.items() if k != "name"}
    assert second["url"] == f"mqtt://127.0.0.1:{second['port']}"
    assert round_trip(first["port"], "t/one") and round_trip(second["port"], "t/two")

    # Each has its own persistence: a session queued on broker2 survives broker2's restart, while broker
    # keeps serving throughout.
    subscriber = Probe(client_id="persistent-on-2", clean_session=False)
    assert subscriber.attempt(second["port"])
    subscriber.client.subscribe("t/queued", qos=1)
    assert subscriber.subscribed.wait(10)
    subscriber.close()
    publisher = Probe()
    assert publisher.attempt(second["port"])
    publisher.client.publish("t/queued", b"kept", qos=1).wait_for_publish(10)
    publisher.close()
    sb.stop("broker2")
    assert sb.role("broker2") == "down" and sb.role("broker") == "broker"
    assert round_trip(first["port"], "t/while-two-is-down")
    sb.restart("broker2")
    assert sb.role("broker2") == "broker"
    again = Probe(client_id="persistent-on-2", clean_session=False)
    try:
        assert again.attempt(second["port"])
        wait_until(lambda: again.messages, 20, what="the queued message on broker2")
        assert again.messages == [b"kept"]
    finally:
        again.close()

    sb.kill("broker")  # SIGKILL the first: the second is untouched
    assert sb.role("broker") == "down" and round_trip(second["port"], "t/after-kill")
    assert {row["name"]: row["role"] for row in sb.status()} == {"broker": "down", "broker2": "broker"}


def test_broker_count_is_checked(tmp_path):
    for bad in (0, 10):
        with pytest.raises(SandboxError, match="brokers must be between 1 and 9"):
            Sandbox.up(tmp_path / f"sb{bad}", mariadb_servers=False, brokers=bad)


def test_cli_up_brokers_kill_and_restart_one(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli-brokers")
    contradiction = iotgw("up", "--no-broker", "--brokers", "2", "--dir", str(directory))
    assert contradiction.returncode == 2 and "--brokers and --no-broker" in contradiction.stderr
    up = iotgw("up", "--replicas", "0", "--brokers", "2", "--json", "--dir", str(directory))
    assert up.returncode == 0, up.stderr
    try:
        endpoints = json.loads(up.stdout)
        assert set(endpoints["nodes"]) == {"db1", "broker", "broker2"}
        assert [b["name"] for b in endpoints["brokers"]] == ["broker", "broker2"]
        assert endpoints["broker"]["port"] == endpoints["nodes"]["broker"]["port"]
        pid2 = endpoints["nodes"]["broker2"]["pid"]

        killed = iotgw("kill", "broker2", "--dir", str(directory))
        assert killed.returncode == 0 and "broker2 is now down" in killed.stdout, killed.stderr
        assert not is_ours(pid2, str(directory / "broker2" / "mosquitto.conf"))
        rows = {row["name"]: row for row in json.loads(iotgw("status", "--json", "--dir", str(directory)).stdout)}
        assert (rows["broker"]["role"], rows["broker2"]["role"]) == ("broker", "down")
        table = iotgw("status", "--dir", str(directory)).stdout
        assert any(line.split()[:2] == ["broker2", "down"] for line in table.splitlines())

        restarted = iotgw("restart", "broker2", "--dir", str(directory))
        assert restarted.returncode == 0 and "broker2 is now broker" in restarted.stdout, restarted.stderr
        assert round_trip(Sandbox.load(directory).nodes["broker2"].port, "t/cli")
    finally:
        down = iotgw("down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr


def _devices_stored(folder) -> set[str]:
    with sqlite3.connect(folder / "readings.db") as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT device FROM readings")}


def test_launch_gateways_one_per_broker_each_with_its_own_spool(make_sandbox, tmp_path, monkeypatch):
    sb = make_sandbox(mariadb_servers=False, brokers=2)
    monkeypatch.chdir(tmp_path.parent)  # a relative folder works too (each gateway runs in its own folder)
    gateways = launch_gateways(sb, 2, tmp_path.name, database=False, client_id_prefix="gw")
    try:
        assert [gw.config["mqtt"]["client_id"] for gw in gateways] == ["gw-1", "gw-2"]
        assert [gw.config["mqtt"]["port"] for gw in gateways] == [sb.nodes["broker"].port, sb.nodes["broker2"].port]
        spools = [gw.config["spool"]["path"] for gw in gateways]
        assert spools == [str(tmp_path / "gw1" / "spool.db"), str(tmp_path / "gw2" / "spool.db")]
        for gw in gateways:
            wait_for(lambda gw=gw: "subscribed to" in gw.log_tail(50), 60, f"{gw.workdir.name} to subscribe")
        # Each broker saw its own gateway connect (Mosquitto's connection log names the client id).
        assert " as gw-1 " in sb.nodes["broker"].log.read_text()
        assert " as gw-2 " in sb.nodes["broker2"].log.read_text()

        # Readings sent to broker2 are acknowledged end to end, and only the gateway on broker2 has them.
        node = sb.nodes["broker2"]
        report = simulate(BrokerSettings(node.host, node.port),
                          SimOptions(devices=3, count=20, rate=0, device_prefix="on2"), deadline_s=60)
        assert (report.sent, report.acked, report.unacked) == (60, 60, 0)
        wait_for(lambda: _devices_stored(tmp_path / "gw2") == {"on2-001", "on2-002", "on2-003"}, 30,
                 "gw2 to store the readings")
        assert all(gw.alive() for gw in gateways)
        assert not (tmp_path / "gw1" / "readings.db").exists() or _devices_stored(tmp_path / "gw1") == set()
    finally:
        for gw in gateways:
            gw.terminate()


def test_launch_gateways_refuses_unknown_brokers(make_sandbox, tmp_path):
    sb = make_sandbox(mariadb_servers=False)
    with pytest.raises(ValueError, match=r"brokers \['broker7'\] not in the sandbox \(it has: broker\)"):
        launch_gateways(sb, 1, tmp_path, brokers=["broker7"], database=False)
    assert list(tmp_path.iterdir()) == []


def test_launch_gateways_database_keys_go_over_the_sandbox_primary(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=0)
    gateways = launch_gateways(sb, 2, tmp_path, database={"retry_max_s": 5.0}, ack={"after": "database"},
                               start=False)
    for gw in gateways:
        db = gw.config["database"]
        assert (db["kind"], db["retry_max_s"], db["servers"]) == ("mysql", 5.0, [sb.endpoint(sb.primary_name())])
        assert gw.config["ack"] == {"after": "database"}


def test_launch_gateways_write_to_the_sandbox_primary(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=1, brokers=2)
    gateways = launch_gateways(sb, 2, tmp_path)
    try:
        for gw in gateways:
            wait_for(lambda gw=gw: "subscribed to" in gw.log_tail(50), 60, f"{gw.workdir.name} to subscribe")
        for name in ("broker", "broker2"):
            node = sb.nodes[name]
            report = simulate(BrokerSettings(node.host, node.port),
                              SimOptions(devices=3, count=20, rate=0, device_prefix=name), deadline_s=90)
            assert (report.acked, report.unacked) == (60, 0), name
        primary = sb.primary_name()

        def stored() -> tuple[int, int]:
            with sb.connect(primary) as conn, conn.cursor() as cur:
                cur.execute("SELECT COUNT(*), COUNT(DISTINCT device, node, boot, seq) FROM iot.readings")
                return cur.fetchone()

        wait_for(lambda: stored() == (120, 120), 60, "both gateways' readings on the primary")
        sb.wait_caught_up()
        with sb.connect("db2") as conn, conn.cursor() as cur:
            cur.execute("SELECT device, COUNT(*) FROM iot.readings GROUP BY device ORDER BY device")
            assert cur.fetchall() == tuple((f"{b}-{i:03d}", 20) for b in ("broker", "broker2") for i in (1, 2, 3))
    finally:
        for gw in gateways:
            gw.terminate()


def test_two_tls_brokers_share_the_ca_and_the_account(make_sandbox):
    sb = make_sandbox(mariadb_servers=False, tls=True, brokers=2)
    infos = sb.endpoints()["brokers"]
    assert [b["url"] for b in infos] == [f"mqtts://127.0.0.1:{sb.nodes[n].port}" for n in ("broker", "broker2")]
    for info in infos:
        assert info["tls_port"] == info["port"] and info["ca"] == infos[0]["ca"]
        probe = Probe()
        probe.client.tls_set(ca_certs=info["ca"])
        probe.client.username_pw_set(info["username"], info["password"])
        try:
            assert probe.attempt(info["port"]), info["name"]
        finally:
            probe.close()
