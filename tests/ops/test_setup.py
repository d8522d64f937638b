"""`iotgw topology setup` from independent servers (`sandbox up --no-replication`)."""

from __future__ import annotations

import json

import pytest

from gateway.topology import analysis
from gateway.topology.discovery import discover
from tests.helpers import ADMIN, WRITER, cli, consistency

pytestmark = [pytest.mark.servers]


def test_setup_refuses_duplicate_server_id_then_builds_1p3r(make_sandbox):
    sb = make_sandbox(replicas=3, broker=False, replication=False)
    d = str(sb.directory)
    with sb.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL server_id=%s", (sb.node("db2").server_id,))
    code, out = cli("topology", "setup", "--sandbox", d)
    assert code != 0
    assert f"duplicate server id {sb.node('db2').server_id}" in out and sb.endpoint("db3") in out
    with sb.connect("db2") as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        assert cur.fetchone() is None  # refused before changing anything
    with sb.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL server_id=%s", (sb.node("db3").server_id,))

    code, out = cli("topology", "setup", "--sandbox", d, "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["primary"] == sb.endpoint("db1") and len(result["replicas"]) == 3
    assert sum("verified" in s for s in result["steps"]) == 3
    snap = discover([sb.endpoint("db4")], ADMIN)  # any seed finds the whole topology
    decision = analysis.writer_primary(snap)
    assert decision.primary.endpoint == sb.endpoint("db1") and decision.epoch == 1
    assert [h.server.server_id for h in analysis.healthy_replicas(snap, decision.primary)] == [2, 3, 4]
    # The writer account writes on the primary and every replica follows.
    with sb.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS iot")
    with sb.connect("db1", user=WRITER.user, password=WRITER.password) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE iot.t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO iot.t VALUES (%s, %s)", [(i, f"v{i}") for i in range(500)])
    count, _ = consistency(sb, ["db1", "db2", "db3", "db4"], "db1", table="iot.t")
    assert count == 500
    # Replication accounts were made outside the binlog: no replica holds a GTID of its own.
    for name in ("db2", "db3", "db4"):
        with sb.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_state")
            assert all(g.split("-")[1] == "1" for g in cur.fetchone()[0].split(",")), name
    code, out = cli("topology", "setup", "--sandbox", d)
    assert code != 0 and "already replicates" in out
