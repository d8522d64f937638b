"""HA groups on real sandboxes: registry replicated with the topology, lookups over the gateway's HTTP server,
3:1 weights over 1,000 real reads, `group promote` through the switchover, and a client that keeps reading
and writing through a `kill -9` of the primary and a failover with bounded retries."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import gateway
from gateway.client import groups as gc
from gateway.metrics import HttpServer
from gateway.ops import groups as g
from gateway.ops.failover import failover
from gateway.sandbox.process import wait_until
from gateway.topology.conn import Credentials
from tests.helpers import ADMIN, cli, consistency, one, sql, wait_replicas_noticed

WRITER = Credentials("iotgw", "iotgw", connect_timeout=2, io_timeout=5)


def _serve(reg: g.Registry, token: str | None = None) -> tuple[HttpServer, str]:
    http = HttpServer("127.0.0.1", 0)
    # The gateway reads the registry with its plain writer account (no admin account in the service).
    g.add_group_routes(http, g.GroupService(g.Registry(reg.seeds, WRITER), WRITER, ttl_s=5), token=token)
    http.start()
    return http, f"http://127.0.0.1:{http.port}"


@pytest.mark.timeout(240)
def test_registry_lookup_weights_and_group_promote(make_sandbox) -> None:
    sb = make_sandbox(replicas=3, broker=False)
    d = str(sb.directory)
    assert cli("group", "create", "sensors", "--description", "readings", "--sandbox", d)[0] == 0
    for name, weight, mode in (("db1", 1, "rw"), ("db2", 3, "rw"), ("db3", 1, "rw"), ("db4", 1, "offline")):
        code, out = cli("group", "add", "sensors", name, "--weight", str(weight), "--mode", mode, "--sandbox", d)
        assert code == 0, out
    code, out = cli("group", "create", "sensors", "--sandbox", d)
    assert code == 1 and "exists already" in out
    code, out = cli("group", "add", "nosuch", "db1", "--sandbox", d)
    assert code == 1 and "no group 'nosuch'" in out, out
    sb.wait_caught_up()
    # The registry is data of the topology: replicated, readable on a replica.
    on_replica = g.Registry([sb.endpoint("db3")], ADMIN, separate=True).get("sensors")
    assert {(m.endpoint, m.weight, m.mode) for m in on_replica.members} == {
        (sb.endpoint("db1"), 1, "rw"), (sb.endpoint("db2"), 3, "rw"), (sb.endpoint("db3"), 1, "rw"), (sb.endpoint("db4"), 1, "offline")}

    reg = g.Registry([sb.endpoint(n) for n in sb.db_names()], ADMIN)
    http, url = _serve(reg)
    guarded, guarded_url = _serve(reg, token="s3cret")
    try:
        view = gc.http_lookup(url)("sensors", True)
        assert view["primary"] == sb.endpoint("db1")
        assert {r["endpoint"]: r["weight"] for r in view["readers"]} == {sb.endpoint("db2"): 3, sb.endpoint("db3"): 1}
        assert view["skipped"] == [{"endpoint": sb.endpoint("db4"), "why": "offline"}]
        with pytest.raises(Exception, match="403"):
            gc.http_lookup(guarded_url)("sensors", False)
        assert gc.http_lookup(guarded_url, "s3cret")("sensors", False)["primary"] == sb.endpoint("db1")
        code, out = cli("group", "lookup", "sensors", "--url", url)
        assert code == 0 and f"reader {sb.endpoint('db2')} weight 3" in out, out

        # 1,000 real reads through the client: 3:1 weights give 750/250, exactly (smooth rotation).
        client = gc.GroupClient(gc.http_lookup(url), WRITER)
        ports = Counter(client.run("sensors", "ro", lambda c: _port(c)) for _ in range(1000))
        assert ports == {sb.node("db2").port: 750, sb.node("db3").port: 250}
        assert client.stats.lookups == 1  # one cold lookup, then the cache (TTL 5 s) answered

        # The public API: gateway.connect(mode, group=…) asks the same lookup.
        with gateway.connect("rw", group="sensors", lookup=url, user="iotgw", password="iotgw") as conn:
            assert _port(conn) == sb.node("db1").port
        with gateway.connect("ro", group="sensors", lookup=url, user="iotgw", password="iotgw") as conn:
            assert _port(conn) in (sb.node("db2").port, sb.node("db3").port)

        # group promote: the switchover of the operations, refused for a member that is not rw.
        code, out = cli("group", "promote", "sensors", "db4", "--sandbox", d)
        assert code == 1 and "only 'rw' members" in out, out
        code, out = cli("group", "promote", "sensors", "db2", "--demote-old", "--sandbox", d)
        assert code == 0 and "is the primary" in out, out
        view = gc.http_lookup(url)("sensors", True)
        assert view["primary"] == sb.endpoint("db2")
        assert {r["endpoint"] for r in view["readers"]} == {sb.endpoint("db1"), sb.endpoint("db3")}
    finally:
        http.stop()
        guarded.stop()
    code, out = cli("group", "remove", "sensors", "db4", "--sandbox", d)
    assert code == 0, out
    # Read on the primary (db2 since the promotion), not on the first seed (now a replica): the removal shows at once.
    assert sb.endpoint("db4") not in {m.endpoint for m in reg.get("sensors").members}


@pytest.mark.timeout(180)
def test_registry_reads_its_own_writes_and_answers_without_a_primary(make_sandbox) -> None:
    sb = make_sandbox(replicas=1, broker=False)
    primary, replica = sb.endpoint("db1"), sb.endpoint("db2")
    reg = g.Registry([replica, primary], ADMIN)  # the replica first: the server that answers first
    reg.create("sensors")
    sb.wait_caught_up()
    sql(sb, "db2", "STOP SLAVE SQL_THREAD")  # the replica's copy stays behind from here on
    reg.add("sensors", primary, 2, "rw")
    assert reg.get("sensors").members == (g.Member(primary, 2, "rw"),)
    reg.add("sensors", replica, 1, "ro")
    reg.remove("sensors", primary)
    assert reg.get("sensors").members == (g.Member(replica, 1, "ro"),)
    assert g.Registry([replica], ADMIN, separate=True).get("sensors").members == (), "the replica's copy lags"
    sql(sb, "db2", "START SLAVE SQL_THREAD")
    sb.wait_caught_up()
    sb.kill("db1")
    # No primary: the registry still answers, from the replica's (caught-up) copy; writes are refused by name.
    assert reg.get("sensors").members == (g.Member(replica, 1, "ro"),)
    with pytest.raises(g.GroupError, match="no primary"):
        reg.add("sensors", primary, 1, "rw")


def _port(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@port")
        return int(cur.fetchone()[0])


@pytest.mark.timeout(240)
def test_client_keeps_reading_and_writing_through_a_failover(make_sandbox) -> None:
    sb = make_sandbox(replicas=2, broker=False)
    sql(sb, "db1", "CREATE DATABASE IF NOT EXISTS iot", "CREATE TABLE iot.t (id INT PRIMARY KEY, v INT)")
    reg = g.Registry([sb.endpoint(n) for n in sb.db_names()], ADMIN)
    reg.create("sensors")
    for name in sb.db_names():
        reg.add("sensors", sb.endpoint(name), 1, "rw")
    sb.wait_caught_up()
    http, url = _serve(reg)
    client = gc.GroupClient(gc.http_lookup(url), WRITER, database="iot", ttl_s=2.0)
    acked: list[int] = []
    failures: list[str] = []
    reads = 0
    stop = threading.Event()

    def work() -> None:
        nonlocal reads
        i = 0
        while not stop.is_set():
            i += 1
            try:
                client.run("sensors", "rw", lambda c, i=i: _insert(c, i))  # idempotent: safe to retry
                acked.append(i)
                client.run("sensors", "ro", lambda c: _count(c))
                reads += 1
            except Exception as exc:  # a failure beyond the bounded retries: the test fails on it
                failures.append(repr(exc))
                return
            time.sleep(0.005)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        _wait(lambda: len(acked) > 50, 30, "writes before the crash")
        sb.kill("db1")
        killed_at = len(acked)
        wait_replicas_noticed(sb, ["db2", "db3"])
        result = failover([sb.endpoint(n) for n in ("db2", "db3")], ADMIN)
        new_primary = next(n for n in ("db2", "db3") if sb.endpoint(n) == result.new_primary)
        _wait(lambda: len(acked) > killed_at + 50 or failures, 60, "writes after the failover")
        after_failover = len(acked)
        _wait(lambda: len(acked) > after_failover + 20 or failures, 30, "more writes")
    finally:
        stop.set()
        worker.join(30)
        http.stop()
    assert not failures, failures
    assert client.stats.retries >= 1 and client.stats.max_attempts_used <= client.attempts, client.stats
    assert reads > 100
    ids = {r[0] for r in sql(sb, new_primary, "SELECT id FROM iot.t")}
    assert set(acked[after_failover - 20:]) <= ids  # everything acknowledged after the failover is there
    survivors = [n for n in ("db2", "db3")]
    count, _ = consistency(sb, survivors, new_primary, table="iot.t")
    assert count == len(ids) and one(sb, new_primary, "SELECT @@read_only") == 0


def _insert(conn, i: int) -> None:
    with conn.cursor() as cur:
        cur.execute("INSERT IGNORE INTO t (id, v) VALUES (%s, %s)", (i, i))
    conn.commit()


def _count(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t")
        return int(cur.fetchone()[0])


def _wait(pred, timeout: float, what: str) -> None:
    wait_until(pred, timeout, 0.05, what, max_interval=0.05)


