"""`iotgw sandbox` through the installed console script, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.sandbox import process

pytestmark = pytest.mark.servers

IOTGW = Path(sys.executable).parent / "iotgw"


def iotgw(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("IOTGW_SANDBOX", None)
    if env_dir is not None:
        env["IOTGW_SANDBOX"] = str(env_dir)
    return subprocess.run([str(IOTGW), "sandbox", *args], capture_output=True, text=True, timeout=180, env=env)


def test_up_status_fault_down(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli")
    up = iotgw("up", "--replicas", "1", "--json", env_dir=directory)  # the folder from $IOTGW_SANDBOX
    assert up.returncode == 0, up.stderr
    endpoints = json.loads(up.stdout)  # --json prints JSON only, no progress lines
    try:
        assert set(endpoints["nodes"]) == {"db1", "db2", "broker"}
        assert endpoints["broker"]["url"] == f"mqtt://127.0.0.1:{endpoints['nodes']['broker']['port']}"
        pids = {name: node["pid"] for name, node in endpoints["nodes"].items()}

        again = iotgw("up", "--dir", str(directory))
        assert again.returncode != 0 and "already running" in again.stderr

        status = iotgw("status", "--json", "--dir", str(directory))
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert {n: r["role"] for n, r in rows.items()} == {"db1": "primary", "db2": "replica", "broker": "broker"}
        assert {n: r["pid"] for n, r in rows.items()} == pids

        unknown = iotgw("kill", "db9", "--dir", str(directory))
        assert unknown.returncode != 0 and "node db9 unknown: db1, db2, broker" in unknown.stderr
        killed = iotgw("kill", "db2", "--dir", str(directory))
        assert killed.returncode == 0 and "down" in killed.stdout
        assert not process.is_ours(pids["db2"], str(directory / "db2" / "my.cnf"))
        restarted = iotgw("restart", "db2", "--dir", str(directory))
        assert restarted.returncode == 0 and "replica" in restarted.stdout, restarted.stderr
        pids["db2"] = json.loads(iotgw("status", "--json", "--dir", str(directory)).stdout)[1]["pid"]
    finally:
        down = iotgw("down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    markers = {"db1": "db1/my.cnf", "db2": "db2/my.cnf", "broker": "broker/mosquitto.conf"}
    for name, pid in pids.items():
        assert not process.is_ours(pid, str(directory / markers[name])), f"{name} still running"
    rows = json.loads(iotgw("status", "--json", "--dir", str(directory)).stdout)
    assert [row["role"] for row in rows] == ["down", "down", "down"]


def test_missing_sandbox_is_explained(tmp_path):
    result = iotgw("status", "--dir", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "no sandbox in" in result.stderr and "run `iotgw sandbox up`" in result.stderr
