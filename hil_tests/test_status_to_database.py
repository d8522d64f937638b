"""Status that tells, end to end: a simulated ``ft_collector`` whose cache filled up while its serial line
was unplugged reports ``dropped`` in its periodic status (protocol section 6), and the gateway's serial
ingest stores it in the database's ``device_status`` table (the latest status per site, device, node).

Sim rig only (the gateway holds the board's pty, as a ``[[serial.port]]``), real MariaDB.
"""

from __future__ import annotations

import pytest

from gateway.sandbox import Sandbox
from gateway.sandbox.launch import GatewayProcess, wait_for
from hil_tests.rig.build import SHORT_PERIODS, build_firmware
from hil_tests.rig.scenario import ADC_MV, RTC_EPOCH
from hil_tests.rig.sim import BoardSpec

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.usefixtures("sim_only")]

# The gateway keeps collector statuses only with its device_status store (gateway/device_status.py).
pytest.importorskip("gateway.device_status", reason="this gateway does not store collector statuses yet")

STATUS_MS = 1000
UNO_CACHE_RECORDS = (1024 - 14 - 60) // 25  # EEPROM minus boot counter and trim state, in records


def latest_status(sb: Sandbox) -> dict | None:
    rows = sb.rows("SELECT site, boot, state, role, cached, cap, dropped, reset_cause, store_err, clock, period_ms "
                   "FROM iot.device_status WHERE device='ft-1' AND node='a'")
    if not rows:
        return None
    row = rows[0]
    keys = ("site", "boot", "state", "role", "cached", "cap", "dropped", "reset", "store_err", "clock", "period_ms")
    return dict(zip(keys, row, strict=True))


def test_dropped_after_a_cache_full_episode_reaches_the_database(make_harness, tmp_path):
    sb = Sandbox.up(tmp_path / "sb", replicas=0, broker=False)
    gw = None
    try:
        fw = build_firmware(["ft_uno"], {**SHORT_PERIODS, "IOTGW_STATUS_MS": STATUS_MS})
        h = make_harness([BoardSpec("a", fw["ft_uno"], eeprom=tmp_path / "ft.eep", rtc_epoch=RTC_EPOCH)], pace=1.0)
        board = h.boards["a"]
        board.set_adc(0, ADC_MV)
        cfg = {
            "mqtt": {"enabled": False},
            "serial": {"port": [{"port": board.pty, "site": "hil"}]},
            "spool": {"path": str(tmp_path / "gw" / "spool.db")},
            "http": {"listen": "127.0.0.1:0"},
            "database": {"kind": "mysql", "servers": [f"127.0.0.1:{sb.node(sb.primary_name()).port}"],
                         "user": "iotgw", "password": sb.endpoints()["mariadb"]["users"]["iotgw"],
                         "retry_max_s": 1.0},
        }
        gw = GatewayProcess(tmp_path / "gw", cfg).start()
        boot = int(board.expect(r"^boot (\d+)$", 10, start=0).match[1])
        board.expect(r"^cache trim upto=\d+$", 30)  # the chain works: acks come back
        wait_for(lambda: (latest_status(sb) or {}).get("boot") == boot, 30,
                 f"the start status in device_status (gateway log:\n{gw.log_tail()})")
        assert latest_status(sb)["dropped"] == 0

        # Unplugged: the 38-record EEPROM cache fills in about 8 s of 200 ms samples, then samples are dropped.
        board.serial_link(False)
        dropped = int(board.expect(r"^cache full dropped=([3-9]|\d\d+)$", 30).match[1])
        board.serial_link(True)
        board.expect(r"^cache trim upto=\d+$", 30)  # the backlog drains

        def told() -> bool:
            st = latest_status(sb)
            return st is not None and st["boot"] == boot and st["dropped"] >= dropped

        wait_for(told, 30, f"a status with dropped >= {dropped} (gateway log:\n{gw.log_tail()})")
        st = latest_status(sb)
        assert (st["site"], st["state"], st["role"], st["cap"], st["reset"], st["clock"], st["period_ms"]) == (
            "hil", "online", "single", UNO_CACHE_RECORDS, "power", "rtc", SHORT_PERIODS["IOTGW_SAMPLE_MS"])
        assert st["store_err"] == 0
        # the board said the same in its own status lines
        last = board.lines_matching(r'^!S \{.*"dropped":(\d+)')[-1]
        assert int(last.match[1]) >= dropped
    finally:
        if gw is not None:
            gw.terminate()
        sb.down()
