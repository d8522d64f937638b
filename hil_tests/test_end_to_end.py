"""End to end: simulated boards -> the gateway's serial ingest -> MariaDB primary
with replicas, while the primary is failed over: nothing lost.

Sim rig only: the two boards of the redundant pair run at real time (``pace 1.0``, the gateway is in the
loop) and their ptys are the gateway's ``[[serial.port]]``s. The primary is killed (SIGKILL) and the most
advanced replica promoted while readings flow. Every reading either board printed must end up exactly
once on the new primary and on the surviving replica (same count and CHECKSUM TABLE), and each board
must have had it acknowledged (trimmed from its cache).
"""

from __future__ import annotations

import json

import pytest

from gateway.protocol import parse_frame
from gateway.sandbox import Sandbox
from gateway.sandbox.launch import GatewayProcess, wait_for
from gateway.topology import analysis
from gateway.topology.conn import Credentials
from gateway.topology.discovery import discover
from gateway.topology.promote import promote
from hil_tests.rig.build import SHORT_PERIODS, build_firmware
from hil_tests.rig.scenario import ADC_MV, RTC_EPOCH
from hil_tests.rig.sim import BoardSpec

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.usefixtures("sim_only")]

ADMIN = Credentials("root", "", connect_timeout=2, io_timeout=20)


def endpoint(sb: Sandbox, name: str) -> str:
    return f"127.0.0.1:{sb.node(name).port}"


def identities_on(sb: Sandbox, name: str) -> list[tuple[str, str, int, int]]:
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema='iot' AND table_name='readings'")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT device, node, boot, seq FROM iot.readings")
        return [(d, n, int(b), int(s)) for d, n, b, s in cur.fetchall()]


def printed_identities(board) -> set[tuple[str, str, int, int]]:
    out = set()
    for line in board.lines_matching(r"^!R "):
        r = json.loads(parse_frame(line.text)[1])
        out.add((r["dev"], r["node"], r["boot"], r["seq"]))
    return out


def run_chain(make_harness, tmp_path, *, failover: bool) -> None:
    sb = Sandbox.up(tmp_path / "sb", replicas=2, broker=False)
    gw = None
    try:
        # with the pair's EEPROM cache (IOTGW_PAIR_CACHE=1): the boards keep every reading until the
        # gateway's end-to-end ack, so the acks are part of what is proven here
        fw = build_firmware(["pair_primary_uno", "pair_secondary_uno"], {**SHORT_PERIODS, "IOTGW_PAIR_CACHE": 1})
        h = make_harness([
            BoardSpec("a", fw["pair_primary_uno"], eeprom=tmp_path / "a.eep", rtc_epoch=RTC_EPOCH),
            BoardSpec("b", fw["pair_secondary_uno"], eeprom=tmp_path / "b.eep", rtc_epoch=RTC_EPOCH),
        ], pace=1.0)
        a, b = h.boards["a"], h.boards["b"]
        for board in (a, b):
            board.set_adc(0, ADC_MV)

        cfg = {
            "mqtt": {"enabled": False},  # serial only
            "serial": {"port": [{"port": a.pty, "site": "hil"}, {"port": b.pty, "site": "hil"}]},
            "spool": {"path": str(tmp_path / "gw" / "spool.db")},
            "http": {"listen": "127.0.0.1:0"},
            "database": {"kind": "mysql", "servers": [endpoint(sb, n) for n in sb.db_names()], "user": "iotgw",
                         "password": sb.endpoints()["mariadb"]["users"]["iotgw"], "retry_max_s": 1.0},
        }
        gw = GatewayProcess(tmp_path / "gw", cfg).start()  # `iotgw run`: its writer follows the promotion

        primary = sb.primary_name()
        a.expect(r"^cache trim upto=\d+$", 30)  # the chain works end to end: acks come back to the board
        wait_for(lambda: len(identities_on(sb, primary)) >= 10, 60,
                 f"10 readings on {primary} (gateway log:\n{gw.log_tail()})")
        servers = sb.db_names()
        if failover:  # kill the primary while readings flow, promote the most advanced replica
            sb.kill(primary)
            servers = [n for n in servers if n != primary]
            snap = discover([endpoint(sb, n) for n in servers], ADMIN)
            best = analysis.rank_candidates(snap)[0]
            promote([endpoint(sb, n) for n in servers], best.endpoint, ADMIN)
            primary = next(n for n in servers if endpoint(sb, n) == best.endpoint)
            a.wait(1.0)
        a.mark()
        a.expect(r"^cache trim upto=\d+$", 30)  # acks (still, or again) flow through the primary
        a.wait(1.0)

        # nothing lost: every reading the boards printed so far ends up on the primary, once
        printed = printed_identities(a) | printed_identities(b)
        wait_for(lambda: printed <= set(identities_on(sb, primary)), 60,
                 f"all {len(printed)} printed readings on {primary} (gateway log:\n{gw.log_tail()})")
        rows = identities_on(sb, primary)
        assert len(rows) == len(set(rows)), "duplicate identities"
        # every live server holds the same rows (count and CHECKSUM TABLE)
        sb.wait_caught_up(timeout=60)
        sums = {}
        for name in servers:
            with sb.connect(name) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM iot.readings WHERE node IN ('a', 'b')")
                count = cur.fetchone()[0]
                cur.execute("CHECKSUM TABLE iot.readings")
                sums[name] = (count, cur.fetchone()[1])
        assert len(set(sums.values())) == 1, f"servers differ: {sums}"
    finally:
        if gw is not None:
            gw.terminate()
        sb.down()


def test_pair_through_serial_ingest_to_primary_and_replicas(make_harness, tmp_path):
    run_chain(make_harness, tmp_path, failover=False)


def test_pair_through_serial_ingest_survives_primary_failover(make_harness, tmp_path):
    run_chain(make_harness, tmp_path, failover=True)
