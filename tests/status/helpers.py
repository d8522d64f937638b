"""Helpers for the status tests: a gateway on a sandbox with its own failover monitor, collectors, a browser."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.sandbox import Sandbox
from gateway.sandbox.launch import GatewayProcess, sandbox_config, wait_for
from gateway.sandbox.ports import free_port
from tests.ingest.helpers import unique


def start_gateway_with_monitor(sb: Sandbox, workdir: Path) -> tuple[GatewayProcess, str]:
    """`iotgw run` on the sandbox with `[failover] auto = true`; returns it and its HTTP base URL."""
    servers = [f"{sb.nodes[n].host}:{sb.nodes[n].port}" for n in sb.db_names()]
    port = free_port()
    cfg = sandbox_config(sb, workdir, prefix=unique("t"), client_id=unique("gw-"),
                         database={"servers": servers, "admin_user": "root"},
                         failover={"auto": True, "interval": 0.5, "failcount": 2, "block_s": 30,
                                   "repl_password": sb.endpoints()["mariadb"]["users"]["repl"]},
                         http={"listen": f"127.0.0.1:{port}"})
    gw = GatewayProcess(workdir, cfg).start()
    wait_for(lambda: "subscribed to" in gw.log_tail(80), 60, f"the gateway to subscribe (log:\n{gw.log_tail()})")
    return gw, f"http://127.0.0.1:{port}"


def api_status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/status", timeout=5) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def endpoint_of(sb: Sandbox, name: str) -> str:
    node = sb.nodes[name]
    return f"{node.host}:{node.port}"


class Collectors:
    """An MQTT client that publishes retained statuses (with a last will) and single messages for tests."""

    def __init__(self, sb: Sandbox, prefix: str, site: str = "sim") -> None:
        b = sb.endpoints()["broker"]
        self.prefix, self.site = prefix, site
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("status-test-"))
        self.client.connect(b["host"], b["port"])
        self.client.loop_start()

    def status(self, device: str, node: str = "a", **fields: Any) -> None:
        doc = {"v": 1, "dev": device, "node": node, "state": "online", "role": "single", "boot": 1, "cached": 0,
               "dropped": 0, **fields}
        self.client.publish(f"{self.prefix}/{self.site}/{device}/status", json.dumps(doc), qos=1,
                            retain=True).wait_for_publish(5)

    def raw(self, device: str, payload: bytes) -> None:
        self.client.publish(f"{self.prefix}/{self.site}/{device}/reading", payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def chromium(workdir: Path):
    """Headless Debian Chromium through its chromedriver (selenium); nothing is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "Debian's chromium and chromium-driver are needed (scripts/bootstrap.sh)"
    opts = Options()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1500", f"--user-data-dir={workdir / 'chromium-profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)
