"""`iotgw topology switchover` there and back under write load; rollback when the candidate cannot catch up."""

from __future__ import annotations

import pytest

from gateway.topology.model import IO_STARTING
from tests.helpers import Load, cli, cli_json, consistency, read_only, replica_status, rows_or_zero, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def _source_port(sb, name):
    row = replica_status(sb, name)
    # Configured and not stopped: right after a START SLAVE the IO thread may still be connecting or handshaking.
    assert row["Slave_IO_Running"] in ("Yes", *IO_STARTING) and row["Slave_SQL_Running"] == "Yes", row
    return int(row["Master_Port"])


def test_switchover_there_and_back_under_load(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=2, broker=False)
    load = Load.start(sb, tmp_path, ["db1"])
    d = str(sb.directory)
    try:
        wait_until(lambda: rows_or_zero(sb, "db1") >= 300, 60, "readings to flow")
        # The candidate cannot catch up (IO thread stopped): refused and rolled back, db1 stays the primary.
        with sb.connect("db2") as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE IO_THREAD")
        base = rows_or_zero(sb, "db1")
        wait_until(lambda: rows_or_zero(sb, "db1") > base + 50, 30, "writes db2 does not receive")
        code, out = cli("topology", "switchover", "--sandbox", d, "--new-primary", "db2", "--timeout", "1")
        assert code != 0 and "rolled back" in out, out
        assert not read_only(sb, "db1") and read_only(sb, "db2")
        assert _source_port(sb, "db2") == sb.node("db1").port
        base = rows_or_zero(sb, "db1")
        wait_until(lambda: rows_or_zero(sb, "db1") > base + 100, 30, "writes continue on db1 after the rollback")

        there = cli_json("topology", "switchover", "--sandbox", d, "--new-primary", "db2", "--demote-old")
        assert there["new_primary"] == sb.endpoint("db2") and there["epoch"] == 2
        wait_until(lambda: load.follows(sb, "db2"), 30, "the writer to follow db2")
        base = rows_or_zero(sb, "db2")
        wait_until(lambda: rows_or_zero(sb, "db2") > base + 200, 30, "writes on db2")
        assert read_only(sb, "db1") and _source_port(sb, "db1") == sb.node("db2").port
        assert _source_port(sb, "db3") == sb.node("db2").port

        back = cli_json("topology", "switchover", "--sandbox", d, "--new-primary", "db1", "--demote-old")
        assert back["new_primary"] == sb.endpoint("db1") and back["epoch"] == 3
        wait_until(lambda: load.follows(sb, "db1"), 30, "the writer to follow db1 again")
        base = rows_or_zero(sb, "db1")
        wait_until(lambda: rows_or_zero(sb, "db1") > base + 200, 30, "writes on db1 again")
        load.settle()
        count, _ = consistency(sb, ["db1", "db2", "db3"], "db1")
        assert count == load.producer.acked  # nothing lost, nothing duplicated (count equals distinct keys)
        assert _source_port(sb, "db2") == sb.node("db1").port and read_only(sb, "db2")
        code, out = cli("topology", "show", "--sandbox", d)
        assert code == 0
    finally:
        load.stop()
