"""Errant transactions on a real 1+3 MariaDB sandbox: detected, named, explained, each repair path exercised,
the refusals, and afterwards replication runs, failover accepts the replica, and every server checksums equal."""

from __future__ import annotations

import pytest

from gateway.ops import errant as e
from gateway.ops import errant_repair as repair
from gateway.ops.plan import plan_failover
from tests.helpers import ADMIN, cli, consistency, one, snap, sql, wait_sql_error


@pytest.mark.timeout(240)
def test_errant_detect_explain_repair_and_refuse(make_sandbox) -> None:
    sb = make_sandbox(replicas=3, broker=False)
    sql(sb, "db1", "CREATE DATABASE IF NOT EXISTS iot", "CREATE TABLE iot.t (id INT PRIMARY KEY, v INT)",
        "INSERT INTO iot.t VALUES (1, 1), (2, 2)")
    sb.wait_caught_up()
    assert e.errant_transactions(snap(sb)) == {}

    # 1. A harmless errant statement on db3 while the primary is quiet: inject (the no-op on the primary).
    sql(sb, "db3", "ANALYZE TABLE iot.t")
    s = snap(sb)
    assert list(e.errant_transactions(s)) == [sb.endpoint("db3")]
    assert "errant" in e.candidate_refusal(s, sb.endpoint("db3"))
    code, out = cli("topology", "errant", "check", "--sandbox", str(sb.directory))
    assert code == 1 and "db3" in out and "no data change (ANALYZE TABLE iot.t)" in out, out
    result = repair.fix(s, sb.endpoint("db3"), ADMIN)
    assert result.ok and result.method == "inject", result.steps
    gtid = result.errant[0]
    assert gtid.startswith(f"0-{one(sb, 'db3', 'SELECT @@server_id')}-")  # written by db3 itself
    # The primary now holds the GTID in its binlog state, and so does every replica.
    for name in ("db1", "db2", "db4"):
        assert gtid in one(sb, name, "SELECT @@gtid_binlog_state"), name

    # 2. An errant row on db2 while the primary is quiet: strict mode would accept the no-op, but it would hide
    #    a row the primary does not have: refused, with the tables named.
    sql(sb, "db2", "INSERT INTO iot.t VALUES (1000, 1)")
    s = snap(sb)
    with pytest.raises(e.ErrantError, match=r"differ from the primary's in iot\.t .*would hide diverged rows"):
        repair.fix(s, sb.endpoint("db2"), ADMIN, method="inject")
    code, out = cli("topology", "errant", "fix", "db2", "--method", "clean", "--sandbox", str(sb.directory))
    assert code == 1 and "hide diverged rows" in out, out

    # The primary writes again: db2 stops with error 1950 (strict mode), and inject is no longer possible.
    sql(sb, "db1", "INSERT INTO iot.t VALUES (3, 3)")
    wait_sql_error(sb, "db2", 1950)
    s = snap(sb)
    with pytest.raises(e.ErrantError, match="behind the primary"):
        repair.fix(s, sb.endpoint("db2"), ADMIN)  # auto chooses clean, which cannot prove the rows equal
    with pytest.raises(e.ErrantError, match="strict"):
        repair.fix(s, sb.endpoint("db2"), ADMIN, method="inject")
    # 3. The data was never meant to exist: revert it on db2 (flashback, sql_log_bin=0) and clean its binlog.
    dry = repair.fix(s, sb.endpoint("db2"), ADMIN, revert=True, dry_run=True)
    assert dry.method == "clean" and any("RESET MASTER" in q for q in dry.sql) and not dry.ok
    result = repair.fix(s, sb.endpoint("db2"), ADMIN, revert=True)
    assert result.ok and result.method == "clean", result.steps
    assert one(sb, "db2", "SELECT COUNT(*) FROM iot.t WHERE id = 1000") == 0

    # 4. A harmless errant FLUSH on db4, then primary writes: clean (strict mode refuses the no-op).
    sql(sb, "db4", "FLUSH TABLES")
    sql(sb, "db1", "INSERT INTO iot.t VALUES (4, 4)")
    wait_sql_error(sb, "db4", 1950)
    code, out = cli("topology", "errant", "fix", "db4", "--sandbox", str(sb.directory))
    assert code == 0 and "clean done" in out, out

    # Afterwards: no errant transaction anywhere, replication runs, failover would accept the repaired ones.
    sql(sb, "db1", "INSERT INTO iot.t VALUES (5, 5)", "UPDATE iot.t SET v = 7 WHERE id = 1", "DELETE FROM iot.t WHERE id = 2")
    s = snap(sb)
    assert e.errant_transactions(s) == {}
    for name in ("db2", "db3", "db4"):
        assert e.candidate_refusal(s, sb.endpoint(name)) == ""
        assert plan_failover(s, candidate=sb.endpoint(name), require_dead=False).ok
    assert consistency(sb, ["db1", "db2", "db3", "db4"], "db1", table="iot.t")[0] == 4
