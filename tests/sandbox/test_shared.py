"""Behaviour of a normal sandbox (shared one, reset before each test): roles, replication, accounts."""

from __future__ import annotations

import pymysql
import pytest

from gateway.sandbox import SandboxError

pytestmark = pytest.mark.servers


def test_roles_and_status(sandbox):
    rows = {row["name"]: row for row in sandbox.status()}
    assert sandbox.db_names() == ["db1", "db2", "db3"]
    assert sandbox.primary_name() == "db1"
    assert rows["db1"]["role"] == "primary" and rows["db1"]["read_only"] is False
    for name in ("db2", "db3"):
        assert rows[name]["role"] == "replica" and rows[name]["read_only"] is True
        assert rows[name]["source"] == "db1" and rows[name]["io_running"] == "Yes"
    assert rows["broker"]["role"] == "broker"
    assert len({row["server_id"] for row in rows.values() if row["kind"] == "mariadb"}) == 3
    assert all(row["alive"] and row["pid"] for row in rows.values())
    assert sandbox.problems() == []


def test_write_on_primary_is_seen_on_replicas(sandbox):
    with sandbox.connect("db1", user="iotgw") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE iot")
        cur.execute("CREATE TABLE iot.t (id INT PRIMARY KEY, v VARCHAR(10))")
        cur.executemany("INSERT INTO iot.t VALUES (%s, %s)", [(i, f"v{i}") for i in range(50)])
    sandbox.wait_caught_up()
    for name in ("db2", "db3"):
        with sandbox.connect(name, database="iot") as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*), SUM(id) FROM t")
            assert cur.fetchone() == (50, sum(range(50)))


def test_writer_refused_by_read_only_but_root_is_not(sandbox):
    with sandbox.connect("db1", user="iotgw") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE iot")
        cur.execute("CREATE TABLE iot.t (id INT PRIMARY KEY)")
    sandbox.wait_caught_up()
    with sandbox.connect("db2", user="iotgw") as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as refused:
            cur.execute("INSERT INTO iot.t VALUES (1)")
        assert refused.value.args[0] == 1290  # --read-only
    with sandbox.connect("db2") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin=0")  # keep the replica's binlog clean (no errant GTID)
        cur.execute("INSERT INTO iot.t VALUES (1)")  # root has READ_ONLY ADMIN: writes through read_only
        cur.execute("DELETE FROM iot.t")


def test_writer_is_least_privilege_but_can_monitor(sandbox):
    with sandbox.connect("db1", user="iotgw") as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        assert cur.fetchone()[0]
        cur.execute("SHOW SLAVE HOSTS")
        assert sorted(row[2] for row in cur.fetchall()) == sorted(sandbox.nodes[n].port for n in ("db2", "db3"))
        with pytest.raises(pymysql.err.OperationalError) as denied:
            cur.execute("CREATE DATABASE other")
        assert denied.value.args[0] == 1044  # access denied outside iot / iotgw_meta
    with sandbox.connect("db2", user="iotgw") as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        assert cur.fetchone() is not None


def test_reset_drops_databases_everywhere(sandbox):
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE iot")
        cur.execute("CREATE DATABASE scratch")
        cur.execute("CREATE TABLE scratch.t (id INT PRIMARY KEY)")
    sandbox.reset()
    for name in sandbox.db_names():
        with sandbox.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES")
            assert {row[0] for row in cur.fetchall()} <= {"mysql", "information_schema", "performance_schema", "sys"}
    # A database on a replica alone (outside replication) cannot be reset from the primary: reported.
    with sandbox.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin=0")
        cur.execute("CREATE DATABASE stray")
    with pytest.raises(SandboxError, match="stray"):
        sandbox.reset()
    with sandbox.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin=0")
        cur.execute("DROP DATABASE stray")


def test_endpoints_describe_every_node(sandbox):
    endpoints = sandbox.endpoints()
    assert set(endpoints["nodes"]) == {"db1", "db2", "db3", "broker"}
    assert endpoints["nodes"]["db1"]["port"] == sandbox.nodes["db1"].port
    assert endpoints["mariadb"]["users"]["iotgw"] == "iotgw"
    assert endpoints["broker"]["url"] == f"mqtt://127.0.0.1:{sandbox.nodes['broker'].port}"
    assert endpoints["broker"]["tls"] is False


def test_unknown_node_is_named_with_the_known_ones(sandbox):
    with pytest.raises(SandboxError, match="node db9 unknown: db1, db2, db3, broker"):
        sandbox.kill("db9")
