"""A mixed redundant pair: the Arduino firmware on a simulated Uno on one side, the MicroPython port's pair
logic (``firmware/micropython/lib/iotcollector``, run here under CPython) on the other, exchanging real
heartbeat frames (protocol section 9) over the simulated board's I2C through the harness. Each side takes
over and hands back within the bounds of section 9: takeover exactly one timeout after the last active
beat, hand-back on the restarted primary's first active beat.

Sim rig only: the harness plays the MicroPython node's I2C (as the target the Uno writes to, or as the
controller writing to the Uno).
"""

from __future__ import annotations

import sys
import time

import pytest

from hil_tests.rig.build import REPO, SHORT_PERIODS, build_firmware
from hil_tests.rig.scenario import RTC_EPOCH
from hil_tests.rig.sim import BoardSpec

sys.path.insert(0, str(REPO / "firmware" / "micropython" / "lib"))
from iotcollector.beatlink import TargetMemBeatReceiver  # noqa: E402
from iotcollector.heartbeat import ACTIVE, decode_beat  # noqa: E402
from iotcollector.pair import PrimaryRole, SecondaryRole  # noqa: E402

pytestmark = pytest.mark.usefixtures("sim_only")

PERIOD = SHORT_PERIODS["IOTGW_HEARTBEAT_MS"]
TIMEOUT = SHORT_PERIODS["IOTGW_TIMEOUT_MS"]
N = SHORT_PERIODS["IOTGW_HANDBACK_BEATS"]
ADDRESS = 0x42  # protocol section 9
SLACK_MS = 60  # the Python side acts between polls of the simulated clock
# The Uno measures its timeout with millis(): timer0 ticks every 1.024 ms and millis() makes up the drift with
# a 2 ms step every ~42 ticks, so 600 elapsed millis() can be up to 2 ms less real (simulated) time.
MILLIS_GRAIN_MS = 2


class SimTicks:
    """``ticks_ms``/``ticks_add``/``ticks_diff`` on a settable simulated time (ms, no wraparound here)."""

    def __init__(self) -> None:
        self.now = 0

    def ticks_ms(self) -> int:
        return self.now

    @staticmethod
    def ticks_add(t: int, d: int) -> int:
        return t + d

    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        return a - b


def test_arduino_primary_micropython_secondary(make_harness, tmp_path):
    fw = build_firmware(["pair_primary_uno"])
    h = make_harness([BoardSpec("a", fw["pair_primary_uno"], eeprom=tmp_path / "a.eep", rtc_epoch=RTC_EPOCH)])
    h.i2c_target(ADDRESS)
    a = h.boards["a"]
    a.expect(r"^role active$", 10, start=0)
    h.run_for(1.0)
    a.power(False)
    off_at = a.now_ms()
    h.run_for(1.0)
    a.power(True)
    back_active = a.expect(r"^role active$", 10)
    h.run_for(1.0)

    # The MicroPython secondary, fed the Uno's real I2C writes in simulated time order, polled every ms.
    clock = SimTicks()
    mem = bytearray(4)
    rx = TargetMemBeatReceiver(mem)
    sec = SecondaryRole(clock, TIMEOUT, N)
    writes = [w for w in h.i2c_log if w.src == "a" and w.dst == "ext"]
    assert len(writes) > 10 and all(len(w.data) == 4 and w.data[0] == 0 for w in writes), writes[:3]
    roles = []  # (ms, role) at every change
    end = int(writes[-1].ms) + 2
    i = 0
    for t in range(0, end):
        clock.now = t
        while i < len(writes) and writes[i].ms <= t:
            mem[0:3] = writes[i].data[1:]  # the target memory the controller wrote at register 0
            beat = decode_beat(rx.receive() or bytes(mem[0:3]))
            assert beat is not None
            sec.on_beat(t, beat[0])
            i += 1
        sec.poll(t)
        if not roles or roles[-1][1] != sec.role:
            roles.append((t, sec.role))
    last_before_off = max(w.ms for w in writes if w.ms < off_at and w.data[2] == ACTIVE)
    changes = [r for r in roles if r[0] > 0]
    assert [r[1] for r in changes] == ["active", "standby"], roles  # never active while the Uno was up at start
    took = changes[0][0] - last_before_off
    assert TIMEOUT <= took <= TIMEOUT + 2, f"took over {took} ms after the last active beat"
    first_active_after = min(w.ms for w in writes if w.ms > off_at and w.data[2] == ACTIVE)
    handed = changes[1][0]
    assert first_active_after <= handed <= first_active_after + 1, (handed, first_active_after)
    assert abs(back_active.ms - first_active_after) <= 5  # the Uno turned active on that same beat
    # its beats before it: N - 1 claiming ones, all delivered to the target
    claims = [w for w in writes if off_at < w.ms < first_active_after]
    assert len(claims) == N - 1 and all(w.data[2] == 0 for w in claims), claims


def test_micropython_primary_arduino_secondary(make_harness, tmp_path):
    fw = build_firmware(["pair_secondary_uno"])
    h = make_harness([BoardSpec("b", fw["pair_secondary_uno"], eeprom=tmp_path / "b.eep", rtc_epoch=RTC_EPOCH)],
                     pace=1.0)
    b = h.boards["b"]
    b.expect(r"^role standby$", 10, start=0)
    clock = SimTicks()

    def drive(primary: PrimaryRole, until_ms: float) -> list[tuple[float, int]]:
        """Run the MicroPython primary against the Uno until ``until_ms``; returns (ms, state) per beat."""
        sent = []
        while True:
            clock.now = int(h.now_ms())
            if clock.now >= until_ms:
                return sent
            if primary.beat_due(clock.now):
                frame = primary.frame()
                at = h.i2c_write("b", bytes((0,)) + frame)
                primary.beat_result(True, -1)  # the bridge carries writes only: no read-back
                sent.append((at, frame[1]))
            time.sleep(0.002)

    start = h.now_ms()
    first = drive(PrimaryRole(clock, PERIOD, N), start + 2000)
    assert [s for _, s in first[:N]] == [0] * (N - 1) + [1]
    b.mark()
    silent_from = h.now_ms()
    last_active = first[-1][0]
    take = b.expect(r"^role active$", 10)
    assert TIMEOUT - MILLIS_GRAIN_MS <= take.ms - last_active <= TIMEOUT + SLACK_MS, take.ms - last_active
    while h.now_ms() < silent_from + 1500:
        time.sleep(0.02)
    b.mark()
    second = drive(PrimaryRole(clock, PERIOD, N), h.now_ms() + 1500)
    handback = b.expect(r"^role standby$", 5)
    first_active = next(at for at, s in second if s == 1)
    assert [s for _, s in second[:N]] == [0] * (N - 1) + [1]
    # the Uno goes standby on the beat that made the MicroPython primary active: overlap under one period
    assert 0 <= handback.ms - first_active <= SLACK_MS, (handback.ms, first_active)
    assert handback.ms - first_active < PERIOD
