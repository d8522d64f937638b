"""`iotgw topology clone` on a real sandbox: refusals, then a former BLACKHOLE relay provisioned again as a data
replica from a replica under load; it catches up and checksums equal to the primary."""

from __future__ import annotations

import pytest

from gateway.ops.errant import errant_transactions
from gateway.ops.relay import add_relay
from gateway.sandbox.add import add_replica
from tests.helpers import ADMIN, RowLoad, cli, consistency, one, snap, sql


@pytest.mark.timeout(240)
def test_clone_refusals_then_clone_a_former_relay_under_load(make_sandbox) -> None:
    sb = make_sandbox(replicas=3, broker=False)
    d = str(sb.directory)
    sql(sb, "db1", "CREATE DATABASE IF NOT EXISTS iot", "CREATE TABLE iot.t (id INT PRIMARY KEY, v INT)",
        "INSERT INTO iot.t VALUES (1, 1), (2, 2)")
    sb.wait_caught_up()
    code, out = cli("topology", "clone", "--donor", "db2", "--target", "db1", "--sandbox", d)
    assert code == 1 and "is the primary" in out, out
    code, out = cli("topology", "clone", "--donor", "db2", "--target", "db4", "--sandbox", d)
    assert code == 1 and "holds rows in iot.t" in out, out

    add_relay([sb.endpoint(n) for n in sb.db_names()], sb.endpoint("db4"), [], ADMIN)  # db4 now holds no rows
    code, out = cli("topology", "clone", "--donor", "db4", "--target", "db3", "--sandbox", d)
    assert code == 1 and "BLACKHOLE relay" in out, out

    load = RowLoad(sb).start()
    try:
        code, out = cli("topology", "clone", "--donor", "db2", "--target", "db4", "--sandbox", d)
        assert code == 0 and "caught up" in out, out
        # `iotgw sandbox add-replica` on the same clone code (through the fixture's own Sandbox object, so the
        # fixture stops the new server too).
        name, steps = add_replica(sb, donor="db3")
        assert name == "db5" and "caught up" in steps[-1], steps
    finally:
        ops = load.stop()
    assert not load.errors and ops["insert"] > 0, load.errors
    assert one(sb, "db4", "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_NAME = 't'") == "InnoDB"
    count, _ = consistency(sb, ["db1", "db2", "db3", "db4", "db5"], "db1", table="iot.t")
    assert errant_transactions(snap(sb)) == {}  # loaded with sql_log_bin=0: the clones hold nothing errant
    assert one(sb, "db5", "SELECT @@server_id") not in {one(sb, n, "SELECT @@server_id") for n in ("db1", "db2", "db3", "db4")}
    assert count == 2 + ops["insert"] - ops["delete"]
