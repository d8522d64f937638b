"""A BLACKHOLE relay added and removed under load on a real 1+3 MariaDB sandbox."""

from __future__ import annotations

import json

import pytest

from gateway.ops.errant import errant_transactions
from gateway.ops.plan import plan_failover
from gateway.ops.relay import RelayError, add_relay
from gateway.topology import analysis
from tests.helpers import ADMIN, RowLoad, cli, consistency, one, replica_status, snap, sql, wait_replicas_noticed


def _source_port(sb, name: str) -> int:
    return int(replica_status(sb, name)["Master_Port"])


@pytest.mark.timeout(240)
def test_relay_add_remove_under_load_and_never_promoted(make_sandbox) -> None:
    sb = make_sandbox(replicas=3, broker=False)
    seeds = [sb.endpoint(n) for n in sb.db_names()]
    sql(sb, "db1", "CREATE DATABASE IF NOT EXISTS iot", "CREATE TABLE iot.t (id INT PRIMARY KEY, v INT)",
        "INSERT INTO iot.t VALUES (1, 1), (2, 2)")
    sb.wait_caught_up()
    with pytest.raises(RelayError, match="is the primary"):
        add_relay(seeds, sb.endpoint("db1"), [], ADMIN)

    load = RowLoad(sb).start()
    try:
        result = add_relay(seeds, sb.endpoint("db2"), [sb.endpoint("db3")], ADMIN)
        assert result.converted == ["iot.t"] and result.moved == [sb.endpoint("db3")], result.steps
        assert _source_port(sb, "db3") == sb.node("db2").port
        assert errant_transactions(snap(sb)) == {}  # the ALTERs ran with sql_log_bin=0: nothing errant
        # The relay's binlog flows on while the load goes on: db3 keeps receiving rows through db2. (Checked on
        # the row itself: the load deletes rows too, so a count before and after may not grow.)
        assert one(sb, "db3", "SELECT COUNT(*) FROM iot.t WHERE id = 3") == 0
        sql(sb, "db1", "INSERT INTO iot.t VALUES (3, 3)")
        pos = one(sb, "db1", "SELECT @@gtid_binlog_pos")
        assert one(sb, "db3", f"SELECT MASTER_GTID_WAIT('{pos}', 30)") == 0
        assert one(sb, "db3", "SELECT v FROM iot.t WHERE id = 3") == 3
        assert one(sb, "db2", "SELECT COUNT(*) FROM iot.t") == 0  # BLACKHOLE: holds no rows
        assert one(sb, "db2", "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_NAME='t'") == "BLACKHOLE"

        # topology show: the relay is a level of the tree, with its lag; it is never healthy for reads.
        code, out = cli("topology", "show", "--sandbox", str(sb.directory), "--json")
        assert code == 0, out
        report = {s["endpoint"]: s for s in json.loads(out)["servers"]}
        assert report[sb.endpoint("db2")]["role"] == "relay" and report[sb.endpoint("db2")]["blackhole"]
        assert report[sb.endpoint("db3")]["source"] == sb.endpoint("db2")
        assert report[sb.endpoint("db2")]["lag_trx"] is not None and not report[sb.endpoint("db2")]["healthy"]
        code, out = cli("topology", "show", "--sandbox", str(sb.directory))
        assert code == 0 and "relay" in out and "BLACKHOLE, no rows; adds" in out, out
        s = snap(sb)
        [root] = [n for n in analysis.tree(s) if n.server.endpoint == sb.endpoint("db1")]
        relay_node = next(c for c in root.children if c.server.endpoint == sb.endpoint("db2"))
        assert [c.server.endpoint for c in relay_node.children] == [sb.endpoint("db3")]

        code, out = cli("topology", "relay", "remove", "db2", "--sandbox", str(sb.directory), "--json")
        assert code == 0 and json.loads(out)["moved"] == [sb.endpoint("db3")], out
        assert _source_port(sb, "db3") == sb.node("db1").port
    finally:
        ops = load.stop()
    assert not load.errors and min(ops.values()) > 0, (ops, load.errors)
    count, _ = consistency(sb, ["db1", "db3", "db4"], "db1", table="iot.t")  # data-bearing servers; the relay has none
    assert count == 2 + 1 + ops["insert"] - ops["delete"]
    assert one(sb, "db2", "SELECT COUNT(*) FROM iot.t") == 0

    # Failover never picks the relay, even though it is the most advanced replica.
    sql(sb, "db4", "STOP SLAVE IO_THREAD")
    sql(sb, "db1", "INSERT INTO iot.t VALUES (4, 4)")
    pos = one(sb, "db1", "SELECT @@gtid_binlog_pos")
    assert one(sb, "db2", f"SELECT MASTER_GTID_WAIT('{pos}', 30)") == 0
    sb.kill("db1")
    wait_replicas_noticed(sb, ["db2", "db3"])  # db4's IO thread is stopped already
    s = snap(sb)
    plan = plan_failover(s)
    assert plan.ok and plan.candidate is not None and plan.candidate.endpoint != sb.endpoint("db2"), plan.lines()
    relay_verdict = next(c for c in plan.considered if c.server.endpoint == sb.endpoint("db2"))
    assert "BLACKHOLE" in relay_verdict.refused
