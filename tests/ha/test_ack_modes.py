"""`[ack] after`: database and replica modes hold the end-to-end ack until the database has the reading.

Real Mosquitto and MariaDB; the gateway runs in-process (the Gateway class, as `iotgw run` does) so a hook
can query the servers at the very moment an ack is handed to the MQTT connection.
"""

from __future__ import annotations

import threading
import time

import pymysql
import pytest

from gateway.acks import advance, query_present
from gateway.config import ConfigError, parse
from gateway.sandbox.launch import sandbox_config, wait_for
from gateway.service import Gateway
from gateway.simulator import SimOptions, Simulator
from tests.ingest.helpers import Background, assert_exact, broker_of, unique

pytestmark = pytest.mark.servers


def test_ack_config_is_validated():
    assert parse({}).ack.after == "spool"
    assert parse({"ack": {"after": "database"}}).ack.after == "database"
    with pytest.raises(ConfigError, match="ack.after: must be 'spool', 'database' or 'replica'"):
        parse({"ack": {"after": "disk"}})
    with pytest.raises(ConfigError, match="ack.after: 'replica' needs"):
        parse({"ack": {"after": "replica"}})  # SQLite has no replica
    with pytest.raises(ConfigError, match="ack.aftr: unknown key"):
        parse({"ack": {"aftr": "spool"}})


def test_watermark_walks_database_and_local_quarantine():
    assert advance(-1, 9, set()) == 9
    assert advance(-1, [0, 1, 3], set()) == 1
    assert advance(-1, [0, 1, 3], {2}) == 3  # a quarantined reading held here fills the gap
    assert advance(4, [], set()) == 4


def test_query_present_on_sqlite(tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute("CREATE TABLE readings (device TEXT, node TEXT, boot INT, seq INT, PRIMARY KEY (device, node, boot, seq))")
    conn.executemany("INSERT INTO readings VALUES (?,?,?,?)",
                     [("d1", "a", 1, s) for s in range(10)] + [("d2", "a", 1, s) for s in (0, 1, 5)])
    got = query_present(lambda sql, p: list(conn.execute(sql, p)),
                        [(("d1", "a", 1), 3, 9), (("d2", "a", 1), 0, 6), (("d3", "a", 1), 0, 2)], "?")
    assert got == {("d1", "a", 1): 9, ("d2", "a", 1): [0, 1, 5], ("d3", "a", 1): []}


def _gateway(sb, tmp_path, after: str, **overrides) -> Gateway:
    overrides["ack"] = {"after": after, **overrides.get("ack", {})}
    cfg = sandbox_config(sb, tmp_path, prefix=unique("t"), client_id=unique("gw-"), **overrides)
    return Gateway(parse(cfg))


def _sim(gw: Gateway, sb, **options) -> Simulator:
    """Collectors on the gateway's topics, connected once the gateway is (started by the caller)."""
    wait_for(lambda: gw.mqtt.connected, 30, "the gateway to connect")
    sim = Simulator(broker_of(sb), SimOptions(prefix=gw.cfg.mqtt.topic_prefix, **options))
    sim.connect()
    return sim


def _run_all_acked(gw: Gateway, sb, deadline_s: float, **options):
    """Run collectors to the end; every reading must come back acknowledged. Returns the report."""
    sim = _sim(gw, sb, **options)
    try:
        report = sim.run(deadline_s=deadline_s)
    finally:
        sim.close()
    assert report.unacked == 0, report.summary()
    return report


class AckChecker:
    """The ack gate's hook: at the moment an ack is handed over, every reading it covers must be on `servers`
    (on at least one of them). Violations are collected and asserted by the test."""

    def __init__(self, sb, servers: list[str]) -> None:
        self.sb, self.servers = sb, servers
        self.checked = 0
        self.violations: list[str] = []
        self.lock = threading.Lock()

    def _count(self, name: str, ack) -> int:
        # A fresh connection each time: the test kills and restarts servers. A server killed while an ack is
        # on its way cannot answer; the ack waits here until it is back (what it committed is still there).
        deadline = time.monotonic() + 120
        while True:
            try:
                with self.sb.connect(name) as conn, conn.cursor() as cur:
                    cur.execute("SELECT COUNT(*) FROM iot.readings WHERE device=%s AND node=%s AND boot=%s "
                                "AND seq<=%s", (ack.device, ack.node, ack.boot, ack.upto))
                    return cur.fetchone()[0]
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def __call__(self, _site, ack) -> None:
        held = {name: self._count(name, ack) for name in self.servers}
        with self.lock:
            self.checked += 1
            if max(held.values()) != ack.upto + 1:
                self.violations.append(f"ack {ack.device} upto {ack.upto}: only {held} readings stored")


@pytest.mark.parametrize("after", ["database", "replica"])
def test_no_ack_before_the_database_has_the_reading(sandbox, tmp_path, after):
    sb = sandbox
    primary = sb.primary_name()
    replicas = [n for n in sb.db_names() if n != primary]
    gw = _gateway(sb, tmp_path, after)
    checker = AckChecker(sb, [primary] if after == "database" else replicas)
    gw.acks.before_publish = checker
    gw.start()
    try:
        report = _run_all_acked(gw, sb, 90, devices=5, count=200, rate=500, ack_timeout=2)
        assert checker.checked >= 5, "the hook saw no acks"
        assert not checker.violations, checker.violations[:5]
        health = gw.health()["acks"]
        assert health["after"] == after
        sb.wait_caught_up(timeout=60)
        assert_exact(sb, report)
    finally:
        gw.stop()


def test_database_outage_keeps_the_collectors_caches(make_sandbox, tmp_path):
    """20 s without the primary in database mode: no acks, the collectors keep everything; nothing is lost."""
    sb = make_sandbox(replicas=1)
    gw = _gateway(sb, tmp_path, "database", ack={"held_degraded_s": 5.0})
    checker = AckChecker(sb, ["db1"])
    gw.acks.before_publish = checker
    gw.start()
    try:
        sim = _sim(gw, sb, devices=5, count=400, rate=25, ack_timeout=2)
        run = Background(sim, deadline_s=150)
        wait_for(lambda: sim.report.acked > 50, 60, "acks flowing")
        sb.kill("db1")
        time.sleep(2)  # acks of readings stored before the kill may still be on their way
        acked_at_kill = sim.report.acked
        published = gw.acks.published
        time.sleep(18)
        # Nothing acknowledged while the database was away: the collectors hold their readings.
        assert gw.acks.published == published
        assert sim.report.acked == acked_at_kill
        assert sim.outstanding() > 100
        health = gw.health()
        assert health["acks"]["held_streams"] == 5 and health["acks"]["oldest_held_s"] > 10, health["acks"]
        assert any("acks held back" in p for p in health["degraded"]), health["degraded"]
        assert "iotgw_acks_held_streams 5.0" in gw.metrics.exposition().decode()
        sb.restart("db1")
        report = run.join_acked(timeout=180)
        wait_for(lambda: gw.spool.depth == 0, 60, "the spool to drain")
        sb.wait_caught_up(timeout=60)
        assert_exact(sb, report)
        assert not checker.violations, checker.violations[:5]
        assert gw.health()["acks"]["held_streams"] == 0
    finally:
        gw.stop()


def test_spool_watermark_raised_from_the_database(tmp_path):
    """A gateway that saw only every other reading of a stream (the rest went to another gateway) would hold
    them all above its own watermark; the database's watermark moves it on and empties `held`."""
    from gateway.protocol import Reading
    from gateway.spool import Entry, Spool

    spool = Spool(tmp_path / "spool.db")

    def reading(seq: int) -> Reading:
        return Reading("d", "a", 1, seq, "s", 1_700_000_000_000, "rtc", 1.0, "C", False, "rtc", 1)

    spool.commit_group([Entry(reading(s)) for s in range(1, 20, 2)])
    assert spool.marks.current(("d", "a", 1)) == -1 and len(spool.marks.held[("d", "a", 1)]) == 10
    spool.raise_marks({("d", "a", 1): ("s", 18)})
    result = spool.commit_group([Entry(reading(21))])
    assert spool.marks.current(("d", "a", 1)) == 19  # 19 was held above 18: contiguous on
    assert result.marks[("d", "a", 1)] == ("s", 19)
    assert spool.conn.execute("SELECT count(*) FROM held WHERE seq <= 19").fetchone()[0] == 0
    assert spool.commit_group([Entry(reading(4))]).marks  # a resend below the raised mark: a duplicate
    assert spool.last_stored == 0
    spool.close()
    reopened = Spool(tmp_path / "spool.db")  # the raised mark is durable
    assert reopened.marks.current(("d", "a", 1)) == 19
    reopened.close()


def test_database_mode_with_the_local_sqlite_database(sandbox, tmp_path):
    """Without MariaDB (`database.kind = "sqlite"`) the `database` ack point waits for the local readings file."""
    import sqlite3

    gw = _gateway(sandbox, tmp_path, "database", database=False)  # readings in tmp_path/readings.db
    seen: list[str] = []

    def check(_site, ack) -> None:
        conn = sqlite3.connect(tmp_path / "readings.db")
        try:
            n = conn.execute("SELECT count(*) FROM readings WHERE device=? AND node=? AND boot=? AND seq<=?",
                             (ack.device, ack.node, ack.boot, ack.upto)).fetchone()[0]
        finally:
            conn.close()
        if n != ack.upto + 1:
            seen.append(f"ack {ack.device} upto {ack.upto}: {n} stored")

    gw.acks.before_publish = check
    gw.start()
    try:
        _run_all_acked(gw, sandbox, 60, devices=3, count=100, rate=300, ack_timeout=2)
        assert gw.acks.published > 0 and not seen, seen[:5]
    finally:
        gw.stop()


def test_serial_collector_acked_after_the_database(tmp_path):
    """A USB collector in `database` mode: ack lines only for what the readings database holds; a refused
    reading with a valid identity (held in the quarantine) does not stop its stream's acks."""
    import os
    import sqlite3

    from gateway import protocol

    master, slave = os.openpty()
    cfg = parse({"mqtt": {"enabled": False}, "serial": {"port": [{"port": os.ttyname(slave), "site": "bench"}]},
                 "spool": {"path": str(tmp_path / "spool.db")}, "http": {"enabled": False},
                 "database": {"kind": "sqlite", "sqlite_path": str(tmp_path / "readings.db")},
                 "ack": {"after": "database"}})
    gw = Gateway(cfg)
    early: list[str] = []

    def check(_site, ack) -> None:
        conn = sqlite3.connect(tmp_path / "readings.db")
        try:
            n = conn.execute("SELECT count(*) FROM readings WHERE device='u1' AND seq<=?", (ack.upto,)).fetchone()[0]
        finally:
            conn.close()
        if n < ack.upto + (0 if ack.upto >= 5 else 1):  # seq 5 is the refused one, in the quarantine
            early.append(f"upto {ack.upto} with {n} stored")

    gw.acks.before_publish = check
    gw.start()
    try:
        wait_for(lambda: gw.serial[0].connected, 30, "the serial port to open")
        for seq in range(12):
            unit = "V" if seq != 5 else "x" * 40  # an over-long unit: refused, identity valid
            os.write(master, (protocol.frame("R", protocol.encode_reading("u1", "a", 3, seq, 1_700_000_000_000 + seq,
                                                                          "rtc", 1.5, unit)) + "\n").encode())
        acks: list[int] = []
        buffer = b""

        def read_acks() -> bool:
            nonlocal buffer
            import select

            while select.select([master], [], [], 0.1)[0]:
                buffer += os.read(master, 4096)
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                parsed = protocol.parse_frame(line.decode())
                if parsed and parsed[0] == "A":
                    acks.append(protocol.parse_ack(parsed[1]).upto)
            return bool(acks) and acks[-1] == 11

        wait_for(read_acks, 30, f"an ack up to 11 (got {acks})")
        assert not early, early
        assert acks == sorted(acks)
        assert gw.spool.stats().quarantined == 1
    finally:
        gw.stop()
        os.close(master)
        os.close(slave)
