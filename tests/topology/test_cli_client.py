"""`iotgw topology show`, `iotgw query`, `gateway.client.connect` on the shared sandbox."""

from __future__ import annotations

import json

import pymysql
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.client import Client, connect
from tests.helpers import WRITER

pytestmark = pytest.mark.servers


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result


def test_topology_show_json_and_table(sandbox):
    result = run("topology", "show", "--sandbox", str(sandbox.directory), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    roles = {s["endpoint"]: s["role"] for s in report["servers"]}
    assert roles == {sandbox.endpoint("db1"): "primary", sandbox.endpoint("db2"): "replica", sandbox.endpoint("db3"): "replica"}
    assert report["primary"] == sandbox.endpoint("db1") and report["adopt"]  # a fresh sandbox has no epoch yet
    assert all(s["healthy"] for s in report["servers"])
    table = run("topology", "show", "--sandbox", str(sandbox.directory))
    assert table.exit_code == 0, table.output
    assert "db1 (127.0.0.1" in table.output and table.output.count("IO Yes") == 2


def test_show_with_servers_and_env_credentials(sandbox, monkeypatch):
    monkeypatch.setenv("IOTGW_DB_USER", "iotgw")
    monkeypatch.setenv("IOTGW_DB_PASSWORD", "iotgw")
    result = run("topology", "show", "--servers", f"{sandbox.endpoint('db3')}", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["primary"] == sandbox.endpoint("db1")
    assert run("topology", "show").exit_code != 0  # no way to find servers: a usage error


def test_query_modes_go_to_the_right_servers(sandbox):
    primary_id = sandbox.node("db1").server_id
    rw = run("query", "--sandbox", str(sandbox.directory), "--mode", "rw", "--json", "SELECT @@read_only")
    assert rw.exit_code == 0, rw.output
    out = json.loads(rw.output)
    assert out["server"]["server_id"] == primary_id and out["rows"] == [[0]]
    ro = json.loads(run("query", "--sandbox", str(sandbox.directory), "--json", "SELECT @@read_only").output)
    assert ro["server"]["server_id"] != primary_id and ro["rows"] == [[1]]


def test_connect_api_rotates_and_writes_to_the_primary(sandbox):
    servers = [sandbox.endpoint("db2")]
    with connect("rw", servers=servers, user="iotgw", password="iotgw") as conn, conn.cursor() as cur:
        cur.execute("SELECT @@server_id, @@read_only")
        assert cur.fetchone() == (sandbox.node("db1").server_id, 0)
    seen = []
    for _ in range(4):
        with connect("ro", servers=servers, user="iotgw", password="iotgw") as conn, conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            seen.append(cur.fetchone()[0])
    s2, s3 = sandbox.node("db2").server_id, sandbox.node("db3").server_id
    assert seen in ([s2, s3, s2, s3], [s3, s2, s3, s2])  # one process-wide rotation across calls


def test_connect_retries_after_a_cached_replica_died(make_sandbox):
    sb = make_sandbox(replicas=2, broker=False)
    client = Client([sb.endpoint("db1")], WRITER, refresh_s=60, attempts=3)
    client.source.snapshot()  # cached: still lists db2 as healthy after it dies
    sb.kill("db2")
    with client.connect("ro") as conn, conn.cursor() as cur:  # db2 refused -> re-probe -> db3
        cur.execute("SELECT @@server_id")
        assert cur.fetchone()[0] == sb.node("db3").server_id
    assert any(e == sb.endpoint("db2") for e, _ in client.selector.last_skipped)
    sb.kill("db3")
    with pytest.raises(pymysql.err.OperationalError, match="no ro server after 3 attempts"):
        client.connect("ro")
    client.close()


def test_config_file_drives_query_and_connect(sandbox, tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[database]
kind = "mysql"
servers = ["{sandbox.endpoint('db3')}"]
user = "iotgw"
password_env = "IOTGW_TEST_DB_PASSWORD"
database = "iot"
read_strategy = "least_lag"
read_max_lag_trx = 100
""")
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE iot")
    env = {"IOTGW_TEST_DB_PASSWORD": "iotgw"}
    result = CliRunner(env=env).invoke(main, ["query", "--config", str(cfg), "--mode", "rw", "--json",
                                              "SELECT DATABASE(), @@server_id"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == [["iot", sandbox.node("db1").server_id]]
    import os

    os.environ["IOTGW_TEST_DB_PASSWORD"] = "iotgw"
    try:
        with connect("ro", config=str(cfg)) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@read_only")
            assert cur.fetchone() == (1,)
    finally:
        del os.environ["IOTGW_TEST_DB_PASSWORD"]
