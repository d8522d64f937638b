"""ReadSelector on real replicas: order, wrap, skips (dead, SQL thread stopped, lag), strategies, shared rotation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

import pytest

from gateway.client.reads import NoReadableServer, ReadSelector, SharedRotation, TopologySource
from tests.helpers import ADMIN, WRITER, wait_until

pytestmark = pytest.mark.servers


def ids(selector, n):
    return [selector.next().server_id for _ in range(n)]


def write_some(sb, primary, n, table="iot.t"):
    with sb.connect(primary) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS iot")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        for i in range(n):
            cur.execute(f"INSERT INTO {table} (v) VALUES (%s)", (i,))


def test_rotation_order_wrap_and_every_skip(make_sandbox):
    sb = make_sandbox(replicas=3, broker=False)
    sid = {n: sb.node(n).server_id for n in sb.db_names()}
    source = TopologySource([sb.endpoint("db3")], WRITER, refresh_s=0)  # 0: every choice re-checks the servers
    rr = ReadSelector(source)
    assert ids(rr, 7) == [sid["db2"], sid["db3"], sid["db4"], sid["db2"], sid["db3"], sid["db4"], sid["db2"]]

    sb.kill("db2")  # a dead replica: SHOW SLAVE HOSTS still lists it for a while; the probe does not
    assert ids(rr, 4) == [sid["db3"], sid["db4"], sid["db3"], sid["db4"]]
    assert any(e == sb.endpoint("db2") and "unreachable" in r[0] for e, r in rr.last_skipped)

    with sb.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE SQL_THREAD")
    write_some(sb, "db1", 5)
    assert ids(rr, 3) == [sid["db4"]] * 3
    (reasons,) = [r for e, r in rr.last_skipped if e == sb.endpoint("db3")]
    assert "SQL thread stopped" in reasons
    with sb.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("START SLAVE SQL_THREAD")

    # Lag with both threads running: db4 applies everything 60 s late (MASTER_DELAY).
    with sb.connect("db4") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE")
        cur.execute("CHANGE MASTER TO MASTER_DELAY=60")
        cur.execute("START SLAVE")
    write_some(sb, "db1", 20)
    lag_trx = ReadSelector(source, max_lag_trx=5)

    def only_db3() -> bool:
        try:
            return set(ids(lag_trx, 3)) == {sid["db3"]}
        except NoReadableServer:  # db3 itself is still applying the 20 writes after its SQL thread restart
            return False

    wait_until(only_db3, 20, "db4 to be skipped for its GTID distance")
    (reasons,) = [r for e, r in lag_trx.last_skipped if e == sb.endpoint("db4")]
    assert any("transactions > 5" in r for r in reasons)
    lag_s = ReadSelector(source, max_lag_s=1)
    wait_until(
        lambda: set(ids(lag_s, 4)) == {sid["db3"]} and any("s > 1 s" in r for e, rs in lag_s.last_skipped for r in rs),
        20,
        "db4 to be skipped for its lag in seconds",
    )
    # No lag limit: db4 is healthy and rotates again.
    assert set(ids(rr, 4)) == {sid["db3"], sid["db4"]}

    # A hung replica (SIGSTOP) costs one connect timeout per check, then is skipped.
    sb.freeze("db4")
    try:
        started = time.monotonic()
        assert ids(rr, 2) == [sid["db3"]] * 2
        assert time.monotonic() - started < 4 * WRITER.connect_timeout + 2
        assert any(e == sb.endpoint("db4") and "unreachable" in r[0] for e, r in rr.last_skipped)
    finally:
        sb.thaw("db4")

    # Nothing healthy: an error that says why, or the primary if configured.
    with sb.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE")
    strict = ReadSelector(source, max_lag_trx=5)
    with pytest.raises(NoReadableServer, match="no healthy replica"):
        strict.next()
    fallback = ReadSelector(source, max_lag_trx=5, fallback_primary=True)
    target = fallback.next()
    assert target.is_primary and target.server_id == sid["db1"]


def test_least_lag_and_weighted(sandbox):
    sid = {n: sandbox.node(n).server_id for n in ("db2", "db3")}
    source = TopologySource([sandbox.endpoint("db1")], WRITER, refresh_s=60)
    weighted = ReadSelector(source, "weighted", weights={sandbox.endpoint("db2"): 3, sandbox.endpoint("db3"): 1})
    picks = ids(weighted, 1000)
    assert Counter(picks) == {sid["db2"]: 750, sid["db3"]: 250}  # smooth weighted round robin: exact
    assert picks[:4].count(sid["db3"]) == 1  # and interleaved, not 750 then 250
    least = ReadSelector(TopologySource([sandbox.endpoint("db1")], WRITER, refresh_s=0), "least_lag")
    assert set(ids(least, 4)) == {sid["db2"], sid["db3"]}  # equal lag: taken in turn
    with sandbox.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE SQL_THREAD")
    try:
        write_some(sandbox, "db1", 3)
        assert ids(least, 3) == [sid["db2"]] * 3
    finally:
        with sandbox.connect("db3") as conn, conn.cursor() as cur:
            cur.execute("START SLAVE SQL_THREAD")


_WORKER = """
import json, sys
from gateway.client.reads import ReadSelector, SharedRotation, TopologySource
from gateway.topology.conn import Credentials
creds = Credentials("iotgw", "iotgw", connect_timeout=5, io_timeout=30)
sel = ReadSelector(TopologySource([sys.argv[1]], creds, refresh_s=60), rotation=SharedRotation(creds))
sys.stdin.readline()  # start together
print(json.dumps([sel.next().server_id for _ in range(int(sys.argv[2]))]))
"""


def test_four_processes_share_one_rotation(sandbox):
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("GRANT SELECT, INSERT, UPDATE, CREATE ON read_scaling.* TO 'iotgw'@'%'")
    n = 120
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, sandbox.endpoint("db1"), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    total = Counter(x for r in results for x in r)
    assert sum(total.values()) == 4 * n
    a, b = total[sandbox.node("db2").server_id], total[sandbox.node("db3").server_id]
    assert abs(a - b) <= 0.1 * (a + b) / 2, total  # within 10 % (a strict shared rotation gives a difference of 0)
    with sandbox.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("SELECT server_id, host, port FROM read_scaling.current_slave")
        server_id, host, port = cur.fetchone()
    assert server_id in (sandbox.node("db2").server_id, sandbox.node("db3").server_id) and host == "127.0.0.1"


def test_shared_rotation_wraps_in_server_id_order(sandbox):
    source = TopologySource([sandbox.endpoint("db2")], WRITER, refresh_s=60)
    shared = ReadSelector(source, rotation=SharedRotation(ADMIN))
    other = ReadSelector(source, rotation=SharedRotation(ADMIN))
    s2, s3 = sandbox.node("db2").server_id, sandbox.node("db3").server_id
    assert [shared.next().server_id, other.next().server_id, shared.next().server_id, other.next().server_id] == [
        s2,
        s3,
        s2,
        s3,
    ]
    shared.close()
    other.close()
