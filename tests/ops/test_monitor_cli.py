"""`iotgw topology monitor` as its own process: failover, post hook, retained MQTT message, metrics, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from gateway.sandbox.ports import free_port
from tests.helpers import read_only, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def test_monitor_process_fails_over_and_publishes(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=2, broker=True)
    broker = sb.endpoints()["broker"]
    hook_out = tmp_path / "hook.txt"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$IOTGW_OLD_PRIMARY $IOTGW_NEW_PRIMARY $IOTGW_EPOCH" > {hook_out}\n')
    hook.chmod(0o755)
    metrics = free_port(set())
    log = (tmp_path / "monitor.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "topology", "monitor", "--sandbox", str(sb.directory), "--interval",
         "0.5", "--failcount", "2", "--block", "30", "--post-hook", str(hook), "--mqtt",
         f"{broker['host']}:{broker['port']}", "--metrics-port", str(metrics)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def scrape():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2).read().decode()
            except OSError:
                return ""

        wait_until(lambda: "iotgw_server_healthy" in scrape(), 30, "the monitor's metrics")
        sb.kill("db1")
        wait_until(hook_out.exists, 30, "the post-failover hook")
        old, new, epoch = hook_out.read_text().split()
        assert old == sb.endpoint("db1") and new in (sb.endpoint("db2"), sb.endpoint("db3")) and epoch == "1"
        assert not read_only(sb, next(n for n in ("db2", "db3") if sb.endpoint(n) == new))
        retained = subprocess.run(["mosquitto_sub", "-h", broker["host"], "-p", str(broker["port"]), "-t",
                                   "iotgw/topology", "-C", "1", "-W", "10"], capture_output=True, text=True,
                                  timeout=20)
        message = json.loads(retained.stdout)
        assert message["event"] == "failover" and message["primary"] == new and message["epoch"] == 1
        assert "iotgw_failovers_total 1.0" in scrape()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
    assert proc.returncode == 0, (tmp_path / "monitor.log").read_text()[-2000:]
