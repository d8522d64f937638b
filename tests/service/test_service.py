"""The running service: /metrics and /healthz, clean shutdown on SIGTERM, the demo's integrity report."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from gateway.sandbox.launch import http_json, wait_for
from tests.ingest.helpers import simulate_through, start_gateway, wait_stored

pytestmark = pytest.mark.servers


def http_port(gw) -> int:
    match = wait_for(lambda: re.search(r"/healthz on 127\.0\.0\.1:(\d+)", gw.log_tail(50)), 30, "the http port")
    return int(match.group(1))


def test_metrics_health_and_clean_sigterm(sandbox, tmp_path):
    gw = start_gateway(sandbox, tmp_path)
    port = http_port(gw)
    report = simulate_through(gw, sandbox, deadline_s=60, devices=3, count=100, rate=0, malformed=5)
    wait_stored(sandbox, gw, report.sent)
    health = http_json(f"http://127.0.0.1:{port}/healthz")
    assert health["status"] == "ok" and health["mqtt_connected"] and health["database_available"]
    assert health["spool_depth"] == 0
    groups = http_json(f"http://127.0.0.1:{port}/groups")  # HA group lookups are served by the gateway too
    assert isinstance(groups, dict)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(iotgw_\w+(?:\{[^}]*\})?) (\S+)$", text, re.M)}
    assert values['iotgw_received_total{source="mqtt"}'] == 305
    assert values["iotgw_spooled_total"] == 300 and values["iotgw_written_total"] == 300
    assert sum(v for k, v in values.items() if k.startswith("iotgw_quarantined_total")) == 5
    gw.signal(signal.SIGTERM)
    gw.wait_exit(30)
    assert "gateway stopped; 0 readings stay in the spool" in gw.log_tail(10)
    assert "Traceback" not in gw.log_tail(200)


def test_demo_reports_nothing_lost(tmp_path):
    """The README's main job, short: a primary crash (outage, failover, rejoin), a collector-pair takeover,
    then the integrity report."""
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--duration", "10", "--rate", "100",
                          "--dir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["lost"] == 0 and report["duplicated"] == 0
    assert report["sent"] == report["acknowledged"] == report["stored_on_primary"] == 1000
    assert sorted(report["stored_on_replicas"].values()) == [1000, 1000]  # the two servers that are not primary
    assert any("FAULT: primary db1 killed" in e for e in report["events"])
    assert any("failover:" in e for e in report["events"])  # the gateway's monitor promoted a replica
    assert any("db1 rejoined" in e or "db1 had diverged" in e for e in report["events"])
    pair = report["pair"]  # the MicroPython port's redundant pair: node a powered off, b takes over, a returns
    assert any("FAULT: collector pair-1 node a lost power" in e for e in report["events"])
    assert pair["nodes_reporting"] == 2 and pair["caches_empty"] and pair["duplicated"] == 0
    assert pair["max_gap_s"] <= pair["gap_bound_s"]
