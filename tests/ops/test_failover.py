"""`iotgw topology failover` on real sandboxes: kill -9 of the primary under write load."""

from __future__ import annotations

import json

import pytest

from tests.ops.helpers import Load, cli, consistency, ep, read_only, rows_or_zero, wait_until

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
        code, out = cli("topology", "failover", "--sandbox", d, "--dry-run", "--json")
        assert code == 0, out
        plan = json.loads(out)
        assert plan["dry_run"] and plan["candidate"] != ep(sb, "db2")
        assert all(read_only(sb, n) for n in ("db2", "db3", "db4"))  # a dry run changes nothing
        code, out = cli("topology", "failover", "--sandbox", d, "--json")
        assert code == 0, out
        result = json.loads(out)
        new = next(n for n in ("db3", "db4") if ep(sb, n) == result["new_primary"])
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
