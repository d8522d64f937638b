"""The simulated-board harness itself, proven with two tiny sketches of our own (``sim/testfw``).

Everything the scenario tests rely on is checked here against firmware whose behaviour is obvious:
the pty, the DS1307, the ADC in millivolts, EEPROM across resets and restarts, a power cut after the
k-th EEPROM byte, the I2C bridge between two boards (stop, resume, cut), and the simulated clock.
"""

from __future__ import annotations

import calendar
import time

import pytest

from hil_tests.rig.build import build_testfw
from hil_tests.rig.sim import BoardSpec

pytestmark = pytest.mark.usefixtures("sim_only")

RTC_EPOCH = calendar.timegm((2026, 11, 23, 12, 0, 0))


@pytest.fixture(scope="module")
def testfw():
    return build_testfw()


def test_probe_pty_rtc_adc_and_clock(make_harness, testfw, tmp_path):
    h = make_harness([BoardSpec("a", testfw / "probe.elf", eeprom=tmp_path / "a.eep", rtc_epoch=RTC_EPOCH)])
    a = h.boards["a"]
    a.expect(r"^probe boot=0$", 10)  # an erased EEPROM reads 0xFF: 0xFF + 1 wraps to 0
    a.set_adc(0, 1250)
    # analogRead against AVcc = 5000 mV: 1250 mV reads 1023 * 1250 / 5000 = 255
    line = a.expect(r"^adc 25[56]$", 5)
    rtc = a.expect(r"^rtc (\d+) ch=0$", 5)
    # the DS1307 counts in simulated time from the moment it was set (time 0)
    assert abs(int(rtc.match[1]) - (RTC_EPOCH + rtc.ms / 1000)) <= 1.5, (rtc, line)
    # lines and the clock agree: the rtc line is printed every 500 simulated ms
    second = a.expect(r"^rtc (\d+) ch=0$", 5)
    assert 450 <= second.ms - rtc.ms <= 550
    # the pty carries lines both ways: what the board echoes is on the control channel and on the pty
    wire = a.open_wire()
    a.send_line("hello board")
    a.expect(r"^echo hello board$", 5)
    assert wire.wait_for(lambda: any(line.text == "echo hello board" for line in wire.since(0)), 10), wire.tail(5)
    # a halted clock reads CH=1 and stops counting
    a.set_rtc(None)
    halted = a.expect(r"^rtc (\d+) ch=1$", 5)
    again = a.expect(r"^rtc (\d+) ch=1$", 5)
    assert halted.match[1] == again.match[1]


def test_eeprom_survives_reset_and_restart(make_harness, testfw, tmp_path):
    eep = tmp_path / "a.eep"
    h = make_harness([BoardSpec("a", testfw / "probe.elf", eeprom=eep)])
    a = h.boards["a"]
    a.expect(r"^probe boot=0$", 10)
    a.reset()
    a.expect(r"^probe boot=1$", 10)
    a.power(False)
    a.power(True)
    a.expect(r"^probe boot=2$", 10)
    h.close()
    assert eep.read_bytes()[0] == 2
    h2 = make_harness([BoardSpec("a", testfw / "probe.elf", eeprom=eep)])
    h2.boards["a"].expect(r"^probe boot=3$", 10)


@pytest.mark.parametrize("k", [1, 7])
def test_power_cut_after_kth_eeprom_write(make_harness, testfw, tmp_path, k):
    h = make_harness([BoardSpec("a", testfw / "probe.elf", eeprom=tmp_path / "a.eep")])
    a = h.boards["a"]
    a.expect(r"^probe boot=0$", 10)
    a.cut_power_after_eeprom_writes(k)
    a.send_line("w 10")  # writes bytes 16..25 with values 0..9
    event = h.wait_event("a powercut")
    ee = a.eeprom()
    assert ee[16:16 + k] == bytes(range(k)), event
    assert ee[16 + k:26] == b"\xff" * (10 - k), "bytes after the cut must not be written"
    assert not a.lines_matching(r"^wrote "), "the board finished a write it had no power for"
    a.power(True)
    a.expect(r"^probe boot=1$", 10)


def test_i2c_bridge_heartbeat_stop_resume_and_cut(make_harness, testfw):
    h = make_harness([BoardSpec("a", testfw / "pair_master.elf"), BoardSpec("b", testfw / "pair_slave.elf")])
    a, b = h.boards["a"], h.boards["b"]
    sent = a.expect_all(r"^hb sent (\d+) rc=0$", 3, 5)
    got = b.expect_all(r"^hb got (\d+)$", 3, 5)
    assert [s.match[1] for s in sent] == [g.match[1] for g in got]
    assert all(abs(g.ms - s.ms) <= 5 for s, g in zip(sent, got, strict=True))  # same heartbeat, ms apart
    # master frozen: the slave takes over 1000 ms after the last heartbeat it got
    a.freeze(True)
    b.mark()
    take = b.expect(r"^takeover$", 5)
    last = b.lines_matching(r"^hb got")[-1]
    assert 1000 <= take.ms - last.ms <= 1050, (last, take)
    a.freeze(False)
    b.expect(r"^handback$", 5)
    # I2C line cut: the master's writes are not acknowledged, the slave takes over
    h.i2c(False)
    a.mark()
    a.expect(r"^hb sent \d+ rc=[1-4]$", 5)
    b.expect(r"^takeover$", 5)
    h.i2c(True)
    a.expect(r"^hb sent \d+ rc=0$", 5)
    b.expect(r"^handback$", 5)


def test_sim_clock_runs_and_paces(make_harness, testfw):
    h = make_harness([BoardSpec("a", testfw / "probe.elf")])
    t0 = h.now_ms()
    t1 = h.run_for(2.0)
    assert t1 - t0 >= 2000
    h.pace(1.0)
    ratio = h.measure_ratio(1.5)
    assert 0.5 <= ratio <= 1.1, f"paced at 1.0 but ran {ratio:.2f}x real time"


def test_serial_rig_board_on_a_simulated_port(make_harness, testfw):
    """The serial rig's board class, pointed at a simulated board's pty: the real-board path runs here too."""
    from hil_tests.rig.serial_rig import SerialBoard

    h = make_harness([BoardSpec("a", testfw / "probe.elf", rtc_epoch=RTC_EPOCH)])
    board = SerialBoard("a", h.boards["a"].pty)
    try:
        board.expect(r"^rtc \d+ ch=0$", 10)  # lines, stamped with the host's clock
        board.send_line("from the serial rig")
        line = board.expect(r"^echo from the serial rig$", 10)
        assert line.ms <= board.now_ms()
        assert board.capabilities == frozenset()  # no --power-cmd: no power control, tests skip on it
    finally:
        board.close()


def test_serial_board_reopens_its_port_after_a_power_cycle(tmp_path):
    """A USB board's port vanishes when its power is cut and comes back when it boots: SerialBoard waits for
    it and reopens it (a pty behind a stable symlink, as /dev/serial/by-id/... is for a real board)."""
    import os

    from hil_tests.rig.serial_rig import SerialBoard

    link = tmp_path / "ttyACM-by-id"

    def plug() -> int:
        master, slave = os.openpty()
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.ttyname(slave))
        os.close(slave)
        return master

    master = plug()
    board = SerialBoard("a", str(link), reopen_timeout=10)
    try:
        os.write(master, b"boot 7\n")
        board.expect(r"^boot 7$", 5)
        os.close(master)  # power off: the device (and its node) is gone
        link.unlink()
        deadline = time.monotonic() + 5
        while board._port is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert board._port is None, "the board did not notice that its port went away"
        master = plug()  # power on: the device is back
        deadline = time.monotonic() + 5
        while board.reopened < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert board.reopened == 1
        os.write(master, b"boot 8\n")
        board.expect(r"^boot 8$", 5)
        board.send_line("ack")
        got = b""
        while not got.endswith(b"ack\n"):
            got += os.read(master, 64)
        board.reopen_timeout = 0.3  # before the cut: the reader takes the timeout when it notices
        os.close(master)  # and a port that never comes back ends the board's output with the reason
        link.unlink()
        deadline = time.monotonic() + 5
        while board.lines.closed_reason is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "did not come back" in (board.lines.closed_reason or ""), board.lines.closed_reason
    finally:
        board.close()
