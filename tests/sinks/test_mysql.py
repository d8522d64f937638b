"""The MySQL/MariaDB sink on a real server: schema migrations, idempotent batches, the risky-grant warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.launch import dump_toml
from gateway.sinks.base import SinkUnavailable
from gateway.sinks.mysql import MySQLSink, ServerAddress

pytestmark = pytest.mark.servers
SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "schema.sql"
ROW = ("d1", "a", 1, 0, "s", 1700000000123, "rtc", "ok", 21.5, "C", 0, 1700000000200)


def show_create(conn, db: str, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE `{db}`.`{table}`")
        return cur.fetchone()[1]


def test_db_init_creates_and_upgrades_the_schema_like_schema_sql(sandbox, tmp_path):
    node = sandbox.nodes["db1"]
    cfg = tmp_path / "c.toml"
    cfg.write_text(dump_toml({"database": {"kind": "mysql", "servers": [f"{node.host}:{node.port}"], "user": "iotgw",
                                           "password": "iotgw", "database": "iot"}}))
    first = CliRunner().invoke(main, ["db", "init", "--config", str(cfg)])
    assert first.exit_code == 0 and "applied 2 migration(s)" in first.output, first.output
    again = CliRunner().invoke(main, ["db", "init", "--config", str(cfg)])
    assert "already up to date" in again.output
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE reference")
        cur.execute("USE reference")
        for stmt in SCHEMA.read_text().split(";"):
            body = "\n".join(ln for ln in stmt.splitlines() if not ln.strip().startswith("--")).strip()
            if body:
                cur.execute(body)
        for table in ("readings", "iotgw_schema"):
            assert show_create(conn, "iot", table) == show_create(conn, "reference", table)


def test_batches_are_idempotent_and_keep_times(sandbox):
    node = sandbox.nodes["db1"]
    sink = MySQLSink(ServerAddress(node.host, node.port, "iotgw", "iotgw", "iot"))
    sink.write([ROW, ROW[:3] + (1,) + ROW[4:]])
    sink.write([ROW])  # re-applied after a crash: harmless
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("SELECT seq, DATE_FORMAT(sampled_at, '%Y-%m-%d %H:%i:%s.%f'), "
                    "DATE_FORMAT(received_at, '%Y-%m-%d %H:%i:%s.%f'), clock FROM iot.readings ORDER BY seq")
        rows = cur.fetchall()
    assert [r[0] for r in rows] == [0, 1]
    assert rows[0][1:] == ("2023-11-14 22:13:20.123000", "2023-11-14 22:13:20.200000", "ok")
    sink.close()


def test_read_only_server_is_unavailable_for_the_writer_account(sandbox):
    primary = sandbox.nodes["db1"]
    MySQLSink(ServerAddress(primary.host, primary.port, "iotgw", "iotgw", "iot")).write([ROW])
    sandbox.wait_caught_up()
    node = sandbox.nodes["db2"]  # a replica: read_only=ON
    sink = MySQLSink(ServerAddress(node.host, node.port, "iotgw", "iotgw", "iot"), auto_init=False)
    with pytest.raises(SinkUnavailable, match="1290"):
        sink.write([ROW[:3] + (5,) + ROW[4:]])


def test_warns_when_the_account_can_write_through_read_only(sandbox, caplog):
    node = sandbox.nodes["db1"]
    with caplog.at_level(logging.WARNING):
        MySQLSink(ServerAddress(node.host, node.port, "root", "", "iot")).write([ROW])
    assert "can write through read_only" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        MySQLSink(ServerAddress(node.host, node.port, "iotgw", "iotgw", "iot")).write([ROW])
    assert "can write through read_only" not in caplog.text


def test_migration_interrupted_after_its_ddl_completes_on_the_next_start(sandbox):
    """A gateway killed between a migration's DDL and its version row must not be stuck on restart."""
    node = sandbox.nodes["db1"]
    addr = ServerAddress(node.host, node.port, "iotgw", "iotgw", "iot")
    MySQLSink(addr).write([ROW])
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM iot.iotgw_schema WHERE version = 2")  # the DDL ran, its record did not
    MySQLSink(addr).write([ROW[:3] + (9,) + ROW[4:]])
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM iot.iotgw_schema ORDER BY version")
        assert [r[0] for r in cur.fetchall()] == [1, 2]
