"""`iotgw topology failover` on real sandboxes: kill -9 of the primary under write load."""

from __future__ import annotations

import json

import pytest

from tests.helpers import (
    Load,
    cli,
    consistency,
    read_only,
    replica_status,
    rows_or_zero,
    wait_replicas_noticed,
    wait_until,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def test_failover_after_kill_picks_caught_up_replica_over_lagging_one(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=3, broker=False)
    load = Load.start(sb, tmp_path, ["db1"])
    d = str(sb.directory)
    try:
        wait_until(lambda: rows_or_zero(sb, "db1") >= 300, 60, "readings to flow")
        # db2 has the lowest server id, so a tie would go its way: it must lose on applied position.
        with sb.connect("db2") as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE SQL_THREAD")
        base = rows_or_zero(sb, "db1")
        wait_until(lambda: rows_or_zero(sb, "db1") >= base + 300, 60, "more readings while db2 lags")
        code, out = cli("topology", "failover", "--sandbox", d)
        assert code != 0 and "writable" in out  # the primary is alive: refused
        sb.kill("db1")
        wait_replicas_noticed(sb, ["db2", "db3", "db4"])
        code, out = cli("topology", "failover", "--sandbox", d, "--dry-run", "--json")
        assert code == 0, out
        plan = json.loads(out)
        assert plan["dry_run"] and plan["candidate"] != sb.endpoint("db2")
        assert all(read_only(sb, n) for n in ("db2", "db3", "db4"))  # a dry run changes nothing
        code, out = cli("topology", "failover", "--sandbox", d, "--json")
        assert code == 0, out
        result = json.loads(out)
        new = next(n for n in ("db3", "db4") if sb.endpoint(n) == result["new_primary"])
        assert result["new_primary"] == plan["candidate"] and result["epoch"] == 2
        steps = "\n".join(result["steps"])
        assert "SQL thread was stopped" in steps and "NOT repointed" not in steps
        wait_until(lambda: load.follows(sb, new), 30, "the writer to follow the new primary")
        before = rows_or_zero(sb, new)
        wait_until(lambda: rows_or_zero(sb, new) > before + 100, 30, "writes on the new primary")
        load.settle()
        count, _ = consistency(sb, ["db2", "db3", "db4"], new)
        assert count == load.producer.acked
        # The old primary comes back fenced by its config and the writer never uses it.
        sb.restart("db1")
        assert read_only(sb, "db1")
        code, out = cli("topology", "failover", "--sandbox", d)
        assert code != 0 and "writable" in out  # nothing dead any more: refused
    finally:
        load.stop()


def test_blackhole_relay_is_never_promoted(make_sandbox):
    """db2 is made a BLACKHOLE relay with db4 below it; it has the lowest server id and as much as db3."""
    sb = make_sandbox(replicas=3, broker=False)
    with sb.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE iot")
        cur.execute("CREATE TABLE iot.t (id INT PRIMARY KEY, v INT)")
    sb.wait_caught_up()
    with sb.connect("db2") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin=0")  # a local change: it must not replicate
        cur.execute("ALTER TABLE iot.t ENGINE=BLACKHOLE")
    with sb.connect("db4") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE")
        cur.execute("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USE_GTID=slave_pos",
                    (sb.node("db2").port,))
        cur.execute("START SLAVE")
    with sb.connect("db1") as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO iot.t VALUES (%s, %s)", [(i, i) for i in range(200)])
    sb.wait_caught_up()
    sb.kill("db1")
    wait_replicas_noticed(sb, ["db2", "db3"])  # db4 reads from db2, which lives
    code, out = cli("topology", "failover", "--sandbox", str(sb.directory), "--json")
    assert code == 0, out
    assert json.loads(out)["new_primary"] == sb.endpoint("db3")
    with sb.connect("db3") as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO iot.t VALUES (%s, %s)", [(i, i) for i in range(200, 300)])
    count, _ = consistency(sb, ["db3", "db4"], "db3", table="iot.t")  # db4 still below the relay
    assert count == 300
    with sb.connect("db2") as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM iot.t")
        assert cur.fetchone()[0] == 0  # the relay holds no rows
    assert replica_status(sb, "db2")["Master_Port"] == sb.node("db3").port
