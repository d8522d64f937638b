"""Device accounts on a real Mosquitto with the password and ACL files `iotgw devices` writes: a device speaks
only for itself, the gateway's account works, a wrong password is reported clearly."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from gateway import protocol
from gateway.cli import main
from gateway.devices import DeviceFiles, check_password, hash_password
from gateway.mqttconn import BrokerSettings, MqttConnectError, connect_blocking, make_client
from gateway.sandbox.launch import GatewayProcess, wait_for
from gateway.sandbox.mosquitto import start_standalone, stock_config
from gateway.sandbox.ports import free_port

pytestmark = pytest.mark.servers
PREFIX = "sec"


def devices_cli(tmp: Path, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, ["devices", *args, "--passwd-file", str(tmp / "passwd"),
                                       "--acl-file", str(tmp / "acl"), "--prefix", PREFIX], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def broker(tmp_path):
    devices_cli(tmp_path, "init", "--save-password", str(tmp_path / "gw.pw"))
    for name in ("dev-a", "dev-b", "dev-c"):
        devices_cli(tmp_path, "add", name, "--site", "s1", "--save-password", str(tmp_path / f"{name}.pw"))
    devices_cli(tmp_path, "remove", "dev-c")
    port = free_port()
    b = start_standalone(tmp_path / "broker", stock_config(tmp_path / "broker", port, password_file=tmp_path / "passwd",
                                                           acl_file=tmp_path / "acl"), port)
    yield b
    b.stop()


def client(broker, tmp_path: Path, user: str, password: str | None = None) -> tuple[mqtt.Client, queue.Queue]:
    pw = password if password is not None else (tmp_path / f"{user if user != 'iotgw' else 'gw'}.pw").read_text().strip()
    settings = BrokerSettings("127.0.0.1", broker.port, user, pw)
    c = make_client(settings, f"{user}-{time.monotonic_ns()}")
    got: queue.Queue = queue.Queue()
    c.on_message = lambda _c, _u, m: got.put((m.topic, bytes(m.payload)))
    connect_blocking(c, settings)
    c.loop_start()
    return c, got


def drain(q: queue.Queue, wait: float = 1.0) -> list:
    time.sleep(wait)
    out = []
    while not q.empty():
        out.append(q.get())
    return out


def test_password_hash_is_mosquittos_pbkdf2_format(tmp_path):
    hashed = hash_password("s3cret", salt=b"0123456789ab")
    assert hashed.startswith("$7$101$") and check_password("s3cret", hashed) and not check_password("x", hashed)
    # The same format as Debian's mosquitto_passwd writes (its line verifies with our check; Mosquitto itself
    # accepting ours is shown by the broker tests below).
    import shutil
    import subprocess

    tool = shutil.which("mosquitto_passwd")
    if tool:
        subprocess.run([tool, "-c", "-b", str(tmp_path / "pw"), "u", "s3cret"], check=True, capture_output=True,
                       timeout=30)
        theirs = (tmp_path / "pw").read_text().strip().split(":", 1)[1]
        assert theirs.startswith("$7$101$") and check_password("s3cret", theirs)


def test_a_device_speaks_only_for_itself(broker, tmp_path):
    gw, gw_got = client(broker, tmp_path, "iotgw")
    a, a_got = client(broker, tmp_path, "dev-a")
    b, b_got = client(broker, tmp_path, "dev-b")
    try:
        gw.subscribe([(f"{PREFIX}/+/+/reading", 1), (f"{PREFIX}/+/+/status", 1)])
        a.subscribe(f"{PREFIX}/s1/dev-b/ack", 1)  # reading B's acks: refused
        b.subscribe(f"{PREFIX}/s1/dev-b/ack", 1)
        a.subscribe(f"{PREFIX}/s1/dev-a/ack", 1)
        time.sleep(0.5)
        reading = protocol.encode_reading("dev-a", "a", 1, 0, 1700000000000, "rtc", 1.0, "C")
        a.publish(f"{PREFIX}/s1/dev-a/reading", reading, qos=1).wait_for_publish(5)  # its own: allowed
        a.publish(f"{PREFIX}/s1/dev-b/reading", reading.replace("dev-a", "dev-b"), qos=1).wait_for_publish(5)
        a.publish(f"{PREFIX}/s1/dev-b/status", b'{"v":1,"dev":"dev-b","node":"a","state":"offline"}',
                  qos=1).wait_for_publish(5)
        a.publish(f"{PREFIX}/s2/dev-a/reading", reading, qos=1).wait_for_publish(5)  # another site: refused
        ack = protocol.Ack("dev-b", "a", 1, 99).payload()
        a.publish(f"{PREFIX}/s1/dev-b/ack", ack, qos=1).wait_for_publish(5)  # a forged ack: refused
        a.publish(f"{PREFIX}/s1/dev-a/ack", ack, qos=1).wait_for_publish(5)  # not even to itself
        gw.publish(f"{PREFIX}/s1/dev-b/ack", ack, qos=1).wait_for_publish(5)  # the gateway's ack: delivered
        assert drain(gw_got) == [(f"{PREFIX}/s1/dev-a/reading", reading.encode())]
        assert drain(b_got, 0.2) == [(f"{PREFIX}/s1/dev-b/ack", ack.encode())]  # only the gateway's
        assert drain(a_got, 0.2) == []
        # A removed device cannot connect at all.
        with pytest.raises(MqttConnectError, match="refused"):
            client(broker, tmp_path, "dev-c", password=(tmp_path / "dev-c.pw").read_text().strip())
    finally:
        for c in (gw, a, b):
            c.loop_stop()
            c.disconnect()


def test_wrong_password_is_clear_in_simulator_and_gateway(broker, tmp_path):
    env = {**os.environ, "WRONG_PW": "not-the-password"}
    result = CliRunner().invoke(main, ["simulate", "--broker", f"127.0.0.1:{broker.port}", "--username", "dev-a",
                                       "--password-env", "WRONG_PW", "--count", "1", "--devices", "1"], env=env)
    assert result.exit_code != 0
    assert "broker refused the connection" in result.output and "password" in result.output, result.output
    assert "not-the-password" not in result.output
    cfg = {"mqtt": {"host": "127.0.0.1", "port": broker.port, "username": "iotgw", "password_env": "WRONG_PW",
                    "topic_prefix": PREFIX},
           "spool": {"path": str(tmp_path / "gw" / "spool.db")}, "http": {"listen": "127.0.0.1:0"},
           "database": {"kind": "sqlite", "sqlite_path": str(tmp_path / "gw" / "readings.db")}}
    gw = GatewayProcess(tmp_path / "gw", cfg, env={"WRONG_PW": "not-the-password"}).start()
    try:
        wait_for(lambda: "broker refused the connection" in gw.log_tail(), 30, f"the refusal (log:\n{gw.log_tail()})")
        assert "check mqtt.username and the password" in gw.log_tail()
        assert "not-the-password" not in gw.log_tail(200)
    finally:
        gw.terminate()


def test_registry_survives_a_reload_of_the_files(tmp_path):
    devices_cli(tmp_path, "init", "--password-stdin", stdin="gw-password\n")
    devices_cli(tmp_path, "add", "x-1", "--site", "north", "--password-stdin", stdin="x-password\n")
    files = DeviceFiles(tmp_path / "passwd", tmp_path / "acl", PREFIX)
    assert files.gateway_user == "iotgw" and set(files.devices) == {"x-1"} and files.devices["x-1"].site == "north"
    assert check_password("x-password", files.hashes["x-1"]) and check_password("gw-password", files.hashes["iotgw"])
    assert oct((tmp_path / "passwd").stat().st_mode & 0o777) == "0o640"
    out = CliRunner().invoke(main, ["devices", "add", "x-1", "--site", "north", "--passwd-file", str(tmp_path / "passwd"),
                                    "--acl-file", str(tmp_path / "acl")])
    assert out.exit_code != 0 and "exists already" in out.output
    assert "x-1" in devices_cli(tmp_path, "list")
