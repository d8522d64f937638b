"""Topology decisions on stored snapshots (JSON), without servers.

`mariadb_*.json` were recorded from a live sandbox with `Snapshot.to_json()`; `mysql_*.json` hold MySQL 8
output (SHOW REPLICA STATUS / SHOW REPLICAS column names) and go through the MySQL dialect's parsing.
"""

import copy
import json
from pathlib import Path

import pytest

from gateway.topology import analysis
from gateway.topology.snapshots import load_snapshot

HERE = Path(__file__).parent / "snapshots"


def load(name):
    return load_snapshot(HERE / name)


def raw(name):
    return json.loads((HERE / name).read_text())


def by_id(snap, server_id):
    return next(s for s in snap.servers if s.server_id == server_id)


def test_healthy_topology_roles_and_primary():
    snap = load("mariadb_1p3r_epoch.json")
    d = analysis.writer_primary(snap)
    assert d.primary is by_id(snap, 1) and d.epoch == 1 and not d.adopt
    roles = analysis.roles(snap, d)
    assert sorted(roles.values()) == ["primary", "replica", "replica", "replica"]
    healthy = analysis.healthy_replicas(snap, d.primary)
    assert [h.server.server_id for h in healthy] == [2, 3, 4]
    assert all(h.lag_trx == 0 and h.depth == 1 for h in healthy)


def test_round_trip_through_json_gives_the_same_snapshot():
    snap = load("mariadb_1p3r_epoch.json")
    again = load_snapshot(snap.to_json())
    assert again.servers == snap.servers


def test_intermediate_replica_found_and_tree_has_two_levels():
    snap = load("mariadb_intermediate.json")
    d = analysis.writer_primary(snap)
    roles = analysis.roles(snap, d)
    assert roles[by_id(snap, 3).endpoint] == "intermediate"
    assert roles[by_id(snap, 4).endpoint] == "replica"
    (root,) = analysis.tree(snap)
    assert root.server.server_id == 1
    assert [c.server.server_id for c in root.children] == [2, 3]
    assert [g.server.server_id for g in root.children[1].children] == [4]
    health = {h.server.server_id: h for h in analysis.replica_health(snap, d.primary)}
    assert health[4].healthy and health[4].depth == 2


def test_sql_thread_stopped_is_unhealthy_with_gtid_lag():
    snap = load("mariadb_sql_stopped.json")
    d = analysis.writer_primary(snap)
    health = {h.server.server_id: h for h in analysis.replica_health(snap, d.primary, max_lag_trx=5)}
    assert not health[2].healthy
    assert any("SQL thread stopped" in r for r in health[2].reasons)
    assert health[2].lag_trx >= 10 and any("transactions" in r for r in health[2].reasons)
    assert health[3].healthy


def test_old_primary_back_writable_is_refused_by_the_epoch():
    snap = load("mariadb_old_primary_back_writable.json")
    d = analysis.writer_primary(snap)
    assert d.primary is by_id(snap, 3) and d.epoch == 2
    old = by_id(snap, 1)
    assert old.writable and not old.is_replica  # it looks like a primary...
    assert dict(d.refused)[old.endpoint].startswith("holds epoch 1")  # ...and is refused
    assert analysis.roles(snap, d)[old.endpoint] == "refused-primary"


def test_promotion_half_done_gives_no_primary():
    data = raw("mariadb_old_primary_back_writable.json")
    for s in data["servers"]:
        if s["variables"].get("server_id") == 3:
            s["variables"]["read_only"] = 1  # epoch published, read_only not yet switched off
    d = analysis.writer_primary(load_snapshot(data))
    assert d.primary is None and "read-only" in d.reason


def test_no_epoch_adopts_a_single_primary_and_refuses_two():
    data = raw("mariadb_old_primary_back_writable.json")
    for s in data["servers"]:
        s["epoch"] = None
    d = analysis.writer_primary(load_snapshot(data))
    assert d.primary is None and "several writable" in d.reason  # db1 and db3 both writable: never guess
    single = raw("mariadb_1p3r_epoch.json")
    for s in single["servers"]:
        s["epoch"] = None
    d = analysis.writer_primary(load_snapshot(single))
    assert d.adopt and d.primary.server_id == 1


def test_epoch_naming_an_unreachable_server_gives_no_primary():
    data = raw("mariadb_old_primary_back_writable.json")
    for s in data["servers"]:
        if s["variables"].get("server_id") == 3:
            s.update(reachable=False, error="2003: refused", variables={}, replica_status=None, epoch=None)
    d = analysis.writer_primary(load_snapshot(data))
    assert d.primary is None and "not reachable" in d.reason  # db2 holds epoch 2 naming db3; db1 still refused


def test_conflicting_epochs_refused():
    data = raw("mariadb_1p3r_epoch.json")
    data = copy.deepcopy(data)
    for s in data["servers"]:
        if s["variables"].get("server_id") == 2:
            s["epoch"] = {"epoch": 1, "server_id": 2, "host": "127.0.0.1", "port": 1}
    d = analysis.writer_primary(load_snapshot(data))
    assert d.primary is None and "names different servers" in d.reason


def test_candidates_ranked_by_received_then_applied_and_never_a_relay():
    data = raw("mariadb_sql_stopped.json")
    snap = load_snapshot(data)
    ranked = analysis.rank_candidates(snap)
    # db2 received everything but applied less (SQL thread stopped): after db3/db4 on the applied tie-break
    assert [s.server_id for s in ranked][-1] == 2
    for s in data["servers"]:
        if s["variables"].get("server_id") == 3:
            s["blackhole_tables"] = 1
    assert 3 not in [s.server_id for s in analysis.rank_candidates(load_snapshot(data))]


# --- MySQL-format snapshots --------------------------------------------------------------------------------
def test_mysql_snapshot_roles_health_and_gtid_set_lag():
    snap = load("mysql_1p2r_sql_stopped.json")
    assert {s.flavor for s in snap.servers} == {"mysql"}
    d = analysis.writer_primary(snap)
    assert d.primary.server_id == 1 and d.epoch == 1
    health = {h.server.server_id: h for h in analysis.replica_health(snap, d.primary, max_lag_trx=10)}
    assert health[2].healthy and health[2].lag_trx == 0
    assert not health[3].healthy and health[3].lag_trx == 40
    assert analysis.rank_candidates(snap)[0].server_id == 2


def test_mysql_old_primary_refused_and_super_read_only_counts():
    snap = load("mysql_old_primary_back_writable.json")
    d = analysis.writer_primary(snap)
    assert d.primary.server_id == 2 and d.epoch == 2
    assert dict(d.refused)["10.0.0.1:3306"].startswith("holds epoch 1")
    data = raw("mysql_old_primary_back_writable.json")
    for s in data["servers"]:
        if s["variables"].get("server_id") == 2:
            s["variables"]["super_read_only"] = 1
    assert analysis.writer_primary(load_snapshot(data)).primary is None


@pytest.mark.parametrize("name", sorted(p.name for p in HERE.glob("*.json")))
def test_every_stored_snapshot_parses_and_has_one_decision(name):
    snap = load(name)
    d = analysis.writer_primary(snap)
    assert d.reason
    writable_roots = [s for s in snap.reachable if s.writable and not s.is_replica]
    assert d.primary is None or d.primary in writable_roots


def test_replicas_of_a_dead_primary_are_roots_of_the_tree():
    data = raw("mariadb_1p3r_epoch.json")
    for s in data["servers"]:
        if s["variables"].get("server_id") == 1:
            s.update(reachable=False, error="2003: refused", variables={}, replica_hosts=[], epoch=None)
    snap = load_snapshot(data)
    assert sorted(n.server.server_id for n in analysis.tree(snap)) == [2, 3, 4]
    d = analysis.writer_primary(snap)
    assert d.primary is None and "not reachable" in d.reason
    assert [s.server_id for s in analysis.rank_candidates(snap)] == [2, 3, 4]  # all equal: lowest id first


def test_manual_promotion_checks_refuse_a_relay_a_lagging_replica_and_no_binlog():
    from gateway.topology.promote import PromotionError, check_candidate

    data = raw("mariadb_sql_stopped.json")
    snap = load_snapshot(data)
    check_candidate(snap, by_id(snap, 3))  # caught up: accepted
    with pytest.raises(PromotionError, match="more than"):
        # db2 received everything too, but take a copy where db3 received less than db4
        lagging = copy.deepcopy(data)
        for s in lagging["servers"]:
            if s["variables"].get("server_id") == 3:
                s["replica_status"]["Gtid_IO_Pos"] = "0-1-3"
                s["variables"]["gtid_slave_pos"] = "0-1-3"
        snap2 = load_snapshot(lagging)
        check_candidate(snap2, by_id(snap2, 3))
    for key, value, message in (("blackhole_tables", 2, "BLACKHOLE"), ("log_bin", 0, "no binlog")):
        changed = copy.deepcopy(data)
        for s in changed["servers"]:
            if s["variables"].get("server_id") == 4:
                if key == "log_bin":
                    s["variables"]["log_bin"] = value
                else:
                    s[key] = value
        snap3 = load_snapshot(changed)
        with pytest.raises(PromotionError, match=message):
            check_candidate(snap3, by_id(snap3, 4))
