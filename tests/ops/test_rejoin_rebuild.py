"""Bringing a killed primary back: rejoin when it has not diverged, rebuild (new server id, clone) when it has."""

from __future__ import annotations

import pytest

from gateway.ops.clone import rejoin
from gateway.ops.failover import failover
from gateway.sandbox import Sandbox
from gateway.sandbox.rebuild import rebuild_node
from tests.helpers import (
    ADMIN,
    cli,
    consistency,
    read_only,
    replica_status,
    rows_or_zero,
    wait_replicas_noticed,
    wait_until,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]
REPL = ("repl", "repl")


def _write(sb, name, start, n):
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS iot")
        cur.execute("CREATE TABLE IF NOT EXISTS iot.t (id INT PRIMARY KEY)")
        cur.executemany("INSERT INTO iot.t VALUES (%s)", [(i,) for i in range(start, start + n)])


def _replicating(sb, name, source):
    row = replica_status(sb, name)
    return row.get("Master_Port") == sb.node(source).port and row.get("Slave_SQL_Running") == "Yes" and \
        row.get("Slave_IO_Running") == "Yes"


def test_clean_old_primary_rejoins_and_diverged_one_is_rebuilt(make_sandbox):
    sb = make_sandbox(replicas=2, broker=False)
    _write(sb, "db1", 0, 100)
    sb.wait_caught_up()
    sb.kill("db1")  # nothing in flight: it has not diverged
    wait_replicas_noticed(sb, ["db2", "db3"])
    new = failover([sb.endpoint(n) for n in sb.db_names()], ADMIN).new_primary
    new_name = next(n for n in ("db2", "db3") if sb.endpoint(n) == new)
    other = ({"db2", "db3"} - {new_name}).pop()
    sb.restart("db1")
    assert read_only(sb, "db1")
    r = rejoin(sb.endpoint("db1"), new, ADMIN, REPL)
    assert r.rejoined and not r.diverged
    _write(sb, new_name, 100, 50)
    wait_until(lambda: _replicating(sb, "db1", new_name), 30, "db1 to replicate from the new primary")
    assert consistency(sb, ["db1", "db2", "db3"], new_name, table="iot.t")[0] == 150

    # Now db1 is a replica; make the *primary* diverge: a write the replicas never get, then kill it.
    for n in ("db1", other):
        with sb.connect(n) as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE")
    _write(sb, new_name, 150, 1)
    sb.kill(new_name)
    for n in ("db1", other):
        with sb.connect(n) as conn, conn.cursor() as cur:
            cur.execute("START SLAVE")
    wait_replicas_noticed(sb, ["db1", other])
    second = failover([sb.endpoint(n) for n in sb.db_names()], ADMIN).new_primary
    second_name = next(n for n in ("db1", other) if sb.endpoint(n) == second)
    _write(sb, second_name, 1000, 10)  # the new primary's 0-X-N now clashes with the lost 0-Y-N
    sb.restart(new_name)
    r = rejoin(sb.endpoint(new_name), second, ADMIN, REPL)
    assert not r.rejoined and len(r.diverged) == 1
    assert read_only(sb, new_name)  # fenced all the same
    old_id = sb.node(new_name).server_id
    steps = rebuild_node(sb, new_name)
    assert sb.node(new_name).server_id > old_id and any("dumped" in s for s in steps)
    assert _replicating(sb, new_name, second_name)
    count, _ = consistency(sb, sb.db_names(), second_name, table="iot.t")
    assert count == 160  # the diverged row 150 is gone from everywhere; everything else is there
    assert rows_or_zero(sb, new_name) == 0  # (iot.readings never existed here)


def test_sandbox_rebuild_cli_replica(make_sandbox):
    sb = make_sandbox(replicas=2, broker=False)
    _write(sb, "db1", 0, 20)
    sb.wait_caught_up()
    sb.kill("db3")
    code, out = cli("sandbox", "rebuild", "--dir", str(sb.directory), "db3")
    fresh = Sandbox.load(sb.directory)
    sb.nodes["db3"] = fresh.nodes["db3"]  # the CLI started it: let the fixture stop it by its new PID
    assert code == 0, out
    assert "is now replica" in out and sb.nodes["db3"].server_id == 4
    code, out = cli("sandbox", "rebuild", "--dir", str(sb.directory), "db1")
    assert code != 0 and "is the primary" in out
    _write(sb, "db1", 20, 5)
    assert consistency(sb, ["db1", "db2", "db3"], "db1", table="iot.t")[0] == 25
