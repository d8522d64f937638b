"""Live discovery on the shared sandbox: roles from any seed, an intermediate replica, health fields."""

from __future__ import annotations

import pytest

from gateway.topology import analysis
from gateway.topology.discovery import discover
from gateway.topology.snapshots import load_snapshot
from tests.helpers import WRITER, wait_until

pytestmark = pytest.mark.servers


def _repoint(sb, name, source):
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE")
        cur.execute(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USE_GTID=slave_pos",
            (sb.node(source).port,),
        )
        cur.execute("START SLAVE")


def _listed_replicas(sb, name):
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE HOSTS")
        return {int(r[2]) for r in cur.fetchall()}


def test_roles_from_every_seed_with_an_intermediate_replica(sandbox):
    sb = sandbox
    _repoint(sb, "db3", "db2")  # by hand: db3 now replicates from db2, which becomes an intermediate
    try:
        wait_until(lambda: sb.node("db3").port in _listed_replicas(sb, "db2"), 20, "db2 to list db3")
        expected = {sb.endpoint("db1"): "primary", sb.endpoint("db2"): "intermediate", sb.endpoint("db3"): "replica"}
        for seed in ("db1", "db2", "db3"):
            snap = discover([sb.endpoint(seed)], WRITER)
            assert analysis.roles(snap) == expected, f"seed {seed}"
            (root,) = analysis.tree(snap)
            assert root.server.endpoint == sb.endpoint("db1")
            assert [c.server.endpoint for c in root.children] == [sb.endpoint("db2")]
            assert [g.server.endpoint for g in root.children[0].children] == [sb.endpoint("db3")]
        leaf = snap.get(sb.endpoint("db3"))
        assert leaf.replication.running and leaf.replication.source_server_id == sb.node("db2").server_id
        assert leaf.has_binlog and leaf.read_only and not leaf.blackhole
        health = {h.server.endpoint: h for h in analysis.replica_health(snap, snap.get(sb.endpoint("db1")))}
        assert health[sb.endpoint("db3")].healthy and health[sb.endpoint("db3")].depth == 2
        # The stored form re-parses to the same servers (what the snapshot tests rely on).
        assert load_snapshot(snap.to_json()).servers == snap.servers
    finally:
        _repoint(sb, "db3", "db1")
        # Leave the shared sandbox as found: db2 stops listing db3 once its dump thread notices.
        wait_until(lambda: sb.node("db3").port not in _listed_replicas(sb, "db2"), 30, "db2 to drop db3")


def test_unreachable_seed_and_replica_error_are_reported(sandbox):
    sb = sandbox
    snap = discover(["127.0.0.1:1", sb.endpoint("db2")], WRITER)  # a dead seed next to a live one
    dead = snap.get("127.0.0.1:1")
    assert dead is not None and not dead.reachable and dead.error
    assert analysis.writer_primary(snap).primary.endpoint == sb.endpoint("db1")
    with sb.connect("db2") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE IO_THREAD")
    try:
        snap = discover([sb.endpoint("db1")], WRITER)
        health = {h.server.endpoint: h for h in analysis.replica_health(snap, snap.get(sb.endpoint("db1")))}
        assert not health[sb.endpoint("db2")].healthy and "IO thread No" in health[sb.endpoint("db2")].reasons[0]
        assert health[sb.endpoint("db3")].healthy
    finally:
        with sb.connect("db2") as conn, conn.cursor() as cur:
            cur.execute("START SLAVE IO_THREAD")
