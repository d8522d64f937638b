"""Candidate choice and the failover plan on stored snapshots (recorded by snapshots/record.py), no servers.

`primary_dead_lagging.json`: db1 (server 1) killed; db2 received and applied everything (31 trx); db3 received
everything but its SQL thread was stopped (applied 26); db4's IO thread was stopped earlier (received 21).
Variants are made by editing the raw observations, which then go through the same parsing as a live probe.
"""

import copy
import json
from pathlib import Path

from gateway.ops import plan
from gateway.topology.snapshots import load_snapshot

HERE = Path(__file__).parent / "snapshots"


def raw(name):
    return json.loads((HERE / name).read_text())


def server(data, server_id):
    return next(s for s in data["servers"] if s["reachable"] and s["variables"]["server_id"] == server_id)


def ids(servers):
    return [s.server_id for s in servers]


def dead():
    return raw("primary_dead_lagging.json")


def test_healthy_topology_is_not_failed_over():
    snap = load_snapshot(raw("healthy.json"))
    check = plan.confirm_dead(snap)
    assert not check.dead and "writable" in check.reason
    p = plan.plan_failover(snap)
    assert not p.ok and p.candidate is None and "writable" in p.refused


def test_most_received_then_most_applied_wins_and_others_are_repointed():
    p = plan.plan_failover(load_snapshot(dead()))
    assert p.ok, p.refused
    assert p.old.server_id == 1 and p.old.how == "epoch" and not p.old.reachable
    assert p.candidate.server_id == 2  # db3 received as much but applied less: a lagging replica loses
    assert ids(p.repoint) == [3, 4]
    assert p.epoch == 2
    by_id = {c.server.server_id: c for c in p.considered}
    assert (by_id[2].received, by_id[2].applied) == (31, 31)
    assert (by_id[3].received, by_id[3].applied) == (31, 26)
    assert by_id[4].received == 21
    text = "\n".join(p.lines())
    assert text.index("RESET SLAVE ALL") < text.index("write epoch 2") < text.index("read_only=OFF")


def test_received_position_ranks_before_applied():
    data = dead()
    server(data, 2)["reachable"] = False  # without db2: db3 (received 31, applied 26) beats db4 (21, 21)
    p = plan.plan_failover(load_snapshot(data))
    assert p.candidate.server_id == 3 and ids(p.repoint) == [4]


def test_relay_never_chosen():
    data = dead()
    server(data, 2)["blackhole_tables"] = 1
    p = plan.plan_failover(load_snapshot(data))
    assert p.candidate.server_id == 3
    assert ids(p.repoint) == [2, 4]  # the relay still follows the new primary
    assert "BLACKHOLE" in next(c.refused for c in p.considered if c.server.server_id == 2)


def test_no_binlog_excluded_and_sql_error_are_refused():
    data = dead()
    server(data, 2)["variables"]["log_bin"] = 0
    server(data, 3)["replica_status"]["Last_SQL_Errno"] = 1950
    snap = load_snapshot(data)
    p = plan.plan_failover(snap, exclude=(server(data, 4)["endpoint"],))
    assert not p.ok and p.refused == "no eligible replica to promote"
    reasons = {c.server.server_id: c.refused for c in p.considered}
    assert "binlog" in reasons[2] and "1950" in reasons[3] and reasons[4] == "excluded"


def test_candidate_override_checked():
    data = dead()
    snap = load_snapshot(data)
    db3, db4 = server(data, 3)["endpoint"], server(data, 4)["endpoint"]
    assert plan.plan_failover(snap, candidate=db3).candidate.server_id == 3  # as advanced in received
    behind = plan.plan_failover(snap, candidate=db4)
    assert not behind.ok and "loses transactions" in behind.refused
    forced = plan.plan_failover(snap, candidate=db4, force=True)
    assert forced.candidate.server_id == 4 and ids(forced.repoint) == [2, 3] and forced.notes
    assert "not a reachable direct replica" in plan.plan_failover(snap, candidate="127.0.0.1:1").refused


def test_replicas_must_confirm_the_primary_is_gone():
    data = dead()
    server(data, 2)["replica_status"]["Slave_IO_Running"] = "Yes"  # db2 still reads from db1
    check = plan.confirm_dead(load_snapshot(data))
    assert not check.dead and "still read" in check.reason
    assert not plan.plan_failover(load_snapshot(data)).ok
    for s in data["servers"]:
        if s["variables"].get("server_id") != 1:
            s["reachable"] = False
    assert not plan.confirm_dead(load_snapshot(data)).dead  # nobody left to confirm (or to promote)


def test_a_replica_stuck_handshaking_does_not_vouch_for_the_primary():
    # A hung primary still accepts TCP connections: the replica sits in "Preparing" and reads nothing.
    data = dead()
    server(data, 2)["replica_status"]["Slave_IO_Running"] = "Preparing"
    assert plan.confirm_dead(load_snapshot(data)).dead


def test_without_epoch_the_replicas_source_is_the_old_primary():
    data = dead()
    for s in data["servers"]:
        s["epoch"] = None
    p = plan.plan_failover(load_snapshot(data))
    assert p.old.how == "replicas' source" and p.old.server_id == 1
    assert p.candidate.server_id == 2 and p.epoch == 1


def test_returning_old_primary_found_and_cloned_server_not():
    data = dead()
    healthy = raw("healthy.json")
    old = next(s for s in healthy["servers"] if s["variables"]["server_id"] == 1)
    data["servers"][[s["variables"].get("server_id") for s in data["servers"]].index(None)] = copy.deepcopy(old)
    new = server(data, 2)
    new["replica_status"] = None
    new["variables"]["read_only"] = 0
    new["epoch"] = {"epoch": 2, "server_id": 2, "host": "127.0.0.1", "port": new["variables"]["port"]}
    # db4 stands for a server being cloned: no replication yet, holding the epoch of another server.
    server(data, 4)["replica_status"] = None
    snap = load_snapshot(data)
    assert ids(plan.returning_primaries(snap)) == [1]


def test_divergence_compares_server_ids_not_only_sequence_numbers():
    # The old primary's last commit 0-1-100 never reached the replicas; the new primary wrote 0-2-100.
    assert plan.diverged("0-1-100", "0-1-99,0-2-100") == ["0-1-100"]
    assert plan.diverged("0-1-99", "0-1-99,0-2-100") == []
    assert plan.diverged("0-1-99", "0-1-120,0-2-100") == []
    assert plan.diverged("", "0-2-5") == []
    assert plan.diverged("0-1-5,1-1-3", "0-1-5") == ["1-1-3"]
