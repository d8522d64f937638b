"""deploy/mosquitto.conf works as shipped: only its paths and ports are moved into a temporary folder (and the
broker runs as root here); the gateway's account on the loopback listener, a device over TLS on the other."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway import protocol
from gateway.cli import main
from gateway.mqttconn import BrokerSettings, MqttConnectError, connect_blocking, make_client
from gateway.sandbox.launch import GatewayProcess, wait_for
from gateway.sandbox.mosquitto import start_standalone
from gateway.sandbox.ports import free_port
from tests.helpers import sqlite_readings

pytestmark = pytest.mark.servers
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto.conf"


def shipped_config(tmp: Path, gw_port: int, dev_port: int) -> str:
    text = SHIPPED.read_text()
    moved = (text.replace("/etc/mosquitto/", f"{tmp}/etc/").replace("/var/lib/mosquitto/", f"{tmp}/data/")
             .replace("listener 1883 127.0.0.1", f"listener {gw_port} 127.0.0.1")
             .replace("listener 8883\n", f"listener {dev_port} 127.0.0.1\n")
             .replace("log_dest syslog", f"log_dest file {tmp}/mosquitto.log"))
    assert moved.count(str(tmp)) >= 7 and f"listener {dev_port}" in moved  # every path and port was found
    return "user root\n" + moved


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, ["devices", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_shipped_config_gateway_on_loopback_device_over_tls(tmp_path):
    etc = tmp_path / "etc"
    (tmp_path / "data").mkdir()
    files = ["--passwd-file", str(etc / "iotgw.passwd"), "--acl-file", str(etc / "iotgw.acl"), "--prefix", "iot"]
    cli("certs", "--dir", str(etc / "certs"))
    cli("init", *files, "--save-password", str(tmp_path / "gw.pw"))
    cli("add", "probe-1", "--site", "field", *files, "--save-password", str(tmp_path / "dev.pw"))
    gw_port, dev_port = free_port(), free_port()
    broker = start_standalone(tmp_path, shipped_config(tmp_path, gw_port, dev_port), gw_port)
    cfg = {"mqtt": {"host": "127.0.0.1", "port": gw_port, "username": "iotgw", "password_file": str(tmp_path / "gw.pw"),
                    "client_id": "iotgw-shipped"},
           "spool": {"path": str(tmp_path / "gw" / "spool.db")}, "http": {"listen": "127.0.0.1:0"},
           "database": {"kind": "sqlite", "sqlite_path": str(tmp_path / "gw" / "readings.db")}}
    gw = GatewayProcess(tmp_path / "gw", cfg).start()
    try:
        wait_for(lambda: "subscribed to" in gw.log_tail(), 30, f"the gateway to subscribe (log:\n{gw.log_tail()})")
        pw = (tmp_path / "dev.pw").read_text().strip()
        tls = BrokerSettings("127.0.0.1", dev_port, "probe-1", pw, tls_ca=str(etc / "certs" / "ca.crt"))
        with pytest.raises(MqttConnectError):  # plaintext on the devices' listener: no
            connect_blocking(make_client(BrokerSettings("127.0.0.1", dev_port, "probe-1", pw), "p"),
                             BrokerSettings("127.0.0.1", dev_port, "probe-1", pw), timeout=3)
        with pytest.raises(MqttConnectError, match="refused"):  # anonymous: no
            connect_blocking(make_client(BrokerSettings("127.0.0.1", gw_port), "anon"), BrokerSettings("127.0.0.1", gw_port))
        device = make_client(tls, "probe-1")
        connect_blocking(device, tls)
        device.loop_start()
        for seq in range(10):
            payload = protocol.encode_reading("probe-1", "a", 1, seq, 1700000000000 + seq, "rtc", 1.5, "C")
            device.publish("iot/field/probe-1/reading", payload, qos=1).wait_for_publish(5)
        wait_for(lambda: sqlite_readings(tmp_path / "gw" / "readings.db") == 10, 30, f"10 stored (log:\n{gw.log_tail()})")
        device.loop_stop()
        device.disconnect()
    finally:
        gw.terminate()
        broker.stop()
