"""End to end, CPython: the port's main loop (host runner, umqtt.simple API over paho) -> the sandbox's real
Mosquitto -> the real gateway (`iotgw run`) -> MariaDB (primary + replica).

One run covers the issue's two scenarios at once: a single collector whose link is cut for 20 s caches its
readings and delivers them afterwards with their original RTC timestamps (nothing lost, nothing duplicated),
while a redundant pair loses its active node and the partner takes over within the coverage bound.
"""

import time
import uuid

import pytest

pytest.importorskip("gateway.sandbox", reason="the gateway package is part of this repository")
from gateway.sandbox.launch import GatewayProcess, sandbox_config, spool_depth, wait_for  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402
from run_collector import HostCollectors  # noqa: E402

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.timeout(300)]

OUTAGE_S = 20
SAMPLE_MS = 500
HB_PERIOD, HB_TIMEOUT = 500, 2000


def _rows(sb, name, device):
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema='iot' AND table_name='readings'")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT node, boot, seq, UNIX_TIMESTAMP(sampled_at) * 1000, clock_source, cached "
                    "FROM iot.readings WHERE device = %s", (device,))
        return [(n, b, s, None if t is None else int(round(float(t))), src, bool(c)) for n, b, s, t, src, c in
                cur.fetchall()]


def _spy_samples(collector, into):
    """Record every reading the collector puts in its cache: identity -> RTC ts at sampling time."""
    append = collector.cache.append

    def spy(rec):
        ok = append(rec)
        if ok:
            into[(collector.cfg.node, rec.boot, rec.seq)] = rec.ts
        return ok

    collector.cache.append = spy


def test_port_through_real_gateway_outage_and_takeover(tmp_path):
    sb = Sandbox.up(tmp_path / "sb", replicas=1, broker=True)
    gw = None
    single = pair = None
    try:
        prefix = "mp" + uuid.uuid4().hex[:6]
        cfg = sandbox_config(sb, tmp_path / "gw", prefix=prefix, client_id="gw-" + prefix)
        gw = GatewayProcess(tmp_path / "gw", cfg).start()
        wait_for(lambda: "subscribed to" in gw.log_tail(50), 60, "the gateway to subscribe")
        broker = sb.endpoints()["broker"]
        common = dict(site="site-1", prefix=prefix, sample_ms=SAMPLE_MS, ack_timeout_ms=5000)
        single = HostCollectors(broker["host"], broker["port"], "mp-ft-1", state_dir=str(tmp_path / "ft"), **common)
        pair = HostCollectors(broker["host"], broker["port"], "mp-pair-1", pair=True, state_dir=str(tmp_path / "pair"),
                              hb_period_ms=HB_PERIOD, hb_timeout_ms=HB_TIMEOUT, **common)
        sampled = {}
        pair_sampled = {}
        _spy_samples(single.collector("a"), sampled)
        for node in ("a", "b"):
            _spy_samples(pair.collector(node), pair_sampled)

        def run(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                single.step()
                pair.step()
                time.sleep(0.01)

        run(4)
        assert pair.collector("a").role == "active" and pair.collector("b").role == "standby"
        # the link outage of the single collector; meanwhile the pair's active node dies
        single.cut_link(True)
        cut_start = time.time()
        run(3)
        pair.kill("a")
        run(OUTAGE_S - 3)
        cut_end = time.time()
        cached_during_outage = single.collector("a").cache.count
        assert cached_during_outage >= OUTAGE_S * 1000 // SAMPLE_MS // 2  # (half: a busy machine may skip some)
        assert pair.collector("b").role == "active"
        single.cut_link(False)
        # wait until the collector's cache is empty (every reading acknowledged end to end)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and single.collector("a").cache.count > 1:
            run(0.2)
        assert single.collector("a").cache.count <= 1, "the cached readings were not all acknowledged"
        run(1)
        expected_single = {k for k in sampled if k[2] < single.collector("a").seq - 2}
        wait_for(lambda: spool_depth(gw.workdir / "spool.db") == 0
                 and len(_rows(sb, "db1", "mp-ft-1")) >= len(expected_single), 60, "the readings in MariaDB")
        sb.wait_caught_up(timeout=60)
    finally:
        for hc in (single, pair):
            if hc is not None:
                hc.close()
        if gw is not None:
            gw.terminate()
        log = gw.log_tail(30) if gw is not None else ""
        rows_by_server = {}
        try:
            if gw is not None:
                for name in sb.db_names():
                    rows_by_server[name] = (_rows(sb, name, "mp-ft-1"), _rows(sb, name, "mp-pair-1"))
        finally:
            sb.down()

    assert sorted(rows_by_server) == ["db1", "db2"]  # checked on the primary and on the replica
    for name, (rows, pair_rows) in rows_by_server.items():
        # nothing duplicated: one row per identity (the primary key would refuse more; count anyway)
        idents = {(n, b, s) for n, b, s, *_ in rows}
        assert len(idents) == len(rows), name
        # nothing lost: every reading sampled (but the last couple still in flight at the end) is stored
        missing = expected_single - idents
        assert not missing, f"{name}: lost {sorted(missing)[:5]} (gateway log:\n{log})"
        # the original RTC timestamps, kept through caching and replay
        for n, b, s, ts, src, _cached in rows:
            assert src == "rtc" and ts == sampled[(n, b, s)], (name, s, ts, sampled[(n, b, s)])
        outage = [r for r in rows if cut_start * 1000 - 1000 <= r[3] <= cut_end * 1000]
        assert len(outage) >= OUTAGE_S * 1000 // SAMPLE_MS // 2, name
        # The DS1307 counts whole seconds, so a reading sampled live just after the link came back can carry a
        # timestamp up to 1 s before cut_end: one second of margin at each end of the window, as at its start.
        inside = [r for r in outage if cut_start * 1000 + 1000 <= r[3] <= cut_end * 1000 - 1000]
        assert inside and all(r[5] for r in inside), "outage readings arrive as cached"
        seqs = sorted(s for n, b, s, *_ in rows)
        assert seqs == list(range(len(seqs))), f"{name}: a gap in the sequence"
        # the pair: the partner took over within timeout + one sample period (+1 s: the DS1307 counts seconds)
        a_last = max(ts for n, b, s, ts, *_ in pair_rows if n == "a")
        b_first = min(ts for n, b, s, ts, *_ in pair_rows if n == "b")
        assert 0 < b_first - a_last <= HB_TIMEOUT + SAMPLE_MS + 1000, (name, b_first - a_last)
        assert len({(n, b, s) for n, b, s, *_ in pair_rows}) == len(pair_rows)
        for n, b, s, ts, *_ in pair_rows:
            assert ts == pair_sampled[(n, b, s)]
