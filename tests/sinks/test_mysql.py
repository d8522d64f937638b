"""The MySQL/MariaDB write path on real servers: schema migrations, idempotent batches, the risky-grant warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.sandbox.launch import dump_toml
from gateway.sinks.replicated import ReplicatedSink
from gateway.spool import StoredReading
from gateway.topology.conn import Credentials, open_connection

pytestmark = pytest.mark.servers
SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "schema.sql"
@pytest.fixture
def writer():
    """Makes the gateway's sink (without replica confirmation) seeded with one sandbox node; closes them all."""
    made: list[ReplicatedSink] = []

    def make(sb, seed: str = "db1", user: str = "iotgw") -> ReplicatedSink:
        node = sb.nodes[seed]
        made.append(ReplicatedSink([f"{node.host}:{node.port}"],
                                   Credentials(user, "iotgw" if user == "iotgw" else ""), confirm=False))
        return made[-1]

    yield make
    for sink in made:
        sink.close()


ROW = StoredReading("d1", "a", 1, 0, "s", 1700000000123, "rtc", "ok", 21.5, "C", 0, 1700000000200)


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
    assert first.exit_code == 0 and "applied 3 migration(s)" in first.output, first.output
    again = CliRunner().invoke(main, ["db", "init", "--config", str(cfg)])
    assert "already up to date" in again.output
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE reference")
        cur.execute("USE reference")
        for stmt in SCHEMA.read_text().split(";"):
            body = "\n".join(ln for ln in stmt.splitlines() if not ln.strip().startswith("--")).strip()
            if body:
                cur.execute(body)
        for table in ("readings", "device_status", "iotgw_schema"):
            assert show_create(conn, "iot", table) == show_create(conn, "reference", table)


def test_batches_are_idempotent_and_keep_times(sandbox, writer):
    sink = writer(sandbox)
    sink.write([ROW, ROW._replace(seq=1)])
    sink.write([ROW])  # re-applied after a crash: harmless
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("SELECT seq, DATE_FORMAT(sampled_at, '%Y-%m-%d %H:%i:%s.%f'), "
                    "DATE_FORMAT(received_at, '%Y-%m-%d %H:%i:%s.%f'), clock FROM iot.readings ORDER BY seq")
        rows = cur.fetchall()
    assert [r[0] for r in rows] == [0, 1]
    assert rows[0][1:] == ("2023-11-14 22:13:20.123000", "2023-11-14 22:13:20.200000", "ok")


def test_seeded_with_a_replica_the_writer_still_writes_only_to_the_primary(sandbox, writer):
    sink = writer(sandbox, seed="db2")
    sink.write([ROW])
    assert sink.primary is not None and sink.primary.endpoint.endswith(f":{sandbox.nodes['db1'].port}")
    sandbox.wait_caught_up()
    for name in ("db1", "db2", "db3"):
        with sandbox.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM iot.readings")
            assert cur.fetchone()[0] == 1


def test_warns_when_the_account_can_write_through_read_only(sandbox, caplog, writer):
    with caplog.at_level(logging.WARNING):
        writer(sandbox, user="root").write([ROW])
    assert "can write through read_only" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        writer(sandbox).write([ROW])
    assert "can write through read_only" not in caplog.text


def test_migration_interrupted_after_its_ddl_completes_on_the_next_start(sandbox, writer):
    """A gateway killed between a migration's DDL and its version row must not be stuck on restart."""
    writer(sandbox).write([ROW])
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM iot.iotgw_schema WHERE version = 2")  # the DDL ran, its record did not
    writer(sandbox).write([ROW._replace(seq=9)])
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM iot.iotgw_schema ORDER BY version")
        assert [r[0] for r in cur.fetchall()] == [1, 2, 3]


def test_strings_are_escaped_in_the_multi_row_insert(sandbox, writer):
    """Validated input never holds quotes or backslashes in names, but the writer must be safe anyway."""
    nasty = "it's\\'; --"  # fits the unit column's VARCHAR(16)
    row = StoredReading("d'1", "a\\", 1, 0, "s\"x", None, "none", "none", -1.25e-7, nasty, 1, 1700000000200)
    writer(sandbox).write([row])
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("SELECT device, node, site, sampled_at, value, unit, cached FROM iot.readings")
        assert cur.fetchall() == (("d'1", "a\\", "s\"x", None, -1.25e-7, nasty, 1),)


def test_writer_over_tls_to_a_server_with_our_own_ca(make_sandbox):
    """`[database] tls_ca`: the writer (and its topology probes) connect with TLS and verify the server."""
    sb = make_sandbox(replicas=0, broker=False, tls=True)
    ca = sb.endpoints()["mariadb"]["tls_ca"]
    node = sb.nodes["db1"]
    sink = ReplicatedSink([f"{node.host}:{node.port}"], Credentials("iotgw", "iotgw", tls_ca=ca), confirm=False)
    try:
        sink.write([ROW])
        with sink._link.conn.cursor() as cur:  # the very connection the batch went through
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchone()[1], "the writer's connection is not encrypted"
    finally:
        sink.close()
    with sb.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM iot.readings")
        assert cur.fetchone()[0] == 1
    # Without a CA the connection is plaintext, as configured, even though this server offers TLS: no
    # unverifiable "preferred" TLS (which cost ~25 ms of CPU per connection for the system's CA bundle).
    plain = open_connection(f"{node.host}:{node.port}", Credentials("iotgw", "iotgw"))
    try:
        with plain.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchone()[1] == ""
    finally:
        plain.close()
    other = Credentials("iotgw", "iotgw", tls_ca=str(Path(__file__)))  # not a CA: the handshake must fail
    bad = ReplicatedSink([f"{node.host}:{node.port}"], other, confirm=False, resolve_wait_s=0.2)
    try:
        with pytest.raises(Exception, match="SSL|ssl|certificate|PEM|no primary"):
            bad.write([ROW])
    finally:
        bad.close()
