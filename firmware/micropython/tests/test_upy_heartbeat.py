"""The pair's heartbeat against the shared vectors (protocol section 9): frames, the I2C write and both
nodes' role scenarios, so this port pairs with the Arduino one (which passes the same vectors)."""

from _support import vectors
from iotcollector.beatlink import REPLY_ADDR, I2cBeatSender, TargetMemBeatReceiver
from iotcollector.heartbeat import ACTIVE, JOINING, REPLY_ACTIVE, REPLY_STANDBY, REPLY_UNKNOWN, decode_beat, encode_beat
from iotcollector.pair import ROLE_ACTIVE, PrimaryRole, SecondaryRole
from iotcollector.ticks import ManualTicks

SPEC = vectors("heartbeat.json")


def test_frames_and_i2c_write_byte_exact():
    assert REPLY_ADDR == SPEC["reply_register"]
    assert (REPLY_STANDBY, REPLY_ACTIVE) == (SPEC["reply"]["standby"], SPEC["reply"]["active"])
    for case in SPEC["frames"]:
        state = ACTIVE if case["state"] == "active" else JOINING
        frame = encode_beat(state, case["counter"])
        assert frame.hex() == case["frame_hex"], case["name"]
        assert decode_beat(frame) == (state, case["counter"])

        class Bus:
            def writeto_mem(self, addr, reg, data):
                self.write = (addr, bytes((reg,)) + bytes(data))

            def readfrom_mem(self, addr, reg, n):
                return bytes((REPLY_STANDBY,))

        bus = Bus()
        assert I2cBeatSender(bus, SPEC["address"]).exchange(frame) == (True, REPLY_STANDBY)
        assert bus.write == (SPEC["address"], bytes.fromhex(case["i2c_write_hex"]))
        mem = bytearray(4)
        rx = TargetMemBeatReceiver(mem)
        mem[0:3] = bytes.fromhex(case["i2c_write_hex"])[1:]
        assert rx.receive() == frame
    for case in SPEC["invalid_frames"]:
        assert decode_beat(bytes.fromhex(case["frame_hex"])) is None, case["name"]


def test_secondary_scenarios():
    for case in SPEC["secondary"]:
        for base in (0, (1 << 30) - 300):  # also across the tick counter's wraparound
            clock = ManualTicks(base, 1 << 30)
            role = SecondaryRole(clock, case["timeout_ms"], case["handback_beats"])
            got = []
            for ev in case["events"]:
                clock.advance(ev["t"] - clock.elapsed_ms)
                now = clock.ticks_ms()
                if "beat" in ev:
                    role.on_beat(now, ACTIVE if ev["beat"] == "active" else JOINING)
                else:
                    role.poll(now)
                got.append(role.role)
            assert got == case["roles"], (case["name"], base, got)


def test_primary_scenarios():
    codes = {"standby": REPLY_STANDBY, "active": REPLY_ACTIVE, "none": REPLY_UNKNOWN}
    for case in SPEC["primary"]:
        role = PrimaryRole(ManualTicks(), 200, case["handback_beats"])
        says = []
        for reply in case["replies"]:
            frame = role.frame()
            says.append("active" if frame[1] == ACTIVE else "claiming")
            role.beat_result(True, codes[reply])
        assert says == case["says"], (case["name"], says)
        assert role.role == ROLE_ACTIVE
