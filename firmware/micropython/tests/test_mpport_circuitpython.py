"""CircuitPython variant, CPython only: Adafruit's adafruit_ds1307 driver on the same simulated I2C bus agrees
with our codec; the CircuitPython glue publishes through the real adafruit_minimqtt to a real Mosquitto;
the busio heartbeat sender and the i2ctarget memory emulation pair two nodes."""

import socket
import time

import adafruit_ds1307
import pytest
from _hostnet import Mosquitto, PahoGateway
from _support import vectors
from adafruit_minimqtt.adafruit_minimqtt import MQTT, MMQTTException
from hostclock import HostTicks
from iotboard import circuitpython_board as cp
from iotcollector import ds1307 as codec
from iotcollector.beatlink import MEM_SIZE, I2cBeatSender
from iotcollector.ds1307 import DS1307, RtcClock
from iotcollector.heartbeat import decode_beat
from simparts import Ds1307Chip, SimI2C


def _bus_with_chip():
    bus = SimI2C()
    chip = Ds1307Chip()
    bus.attach(0x68, chip)
    return bus, chip


def _plain_24h_vectors():
    return [v for v in vectors("ds1307.json") if not v["twelve_hour"] and not v["halted"]]


def test_adafruit_reads_what_our_codec_writes():
    for v in _plain_24h_vectors():
        bus, chip = _bus_with_chip()
        DS1307(bus).write(v["unix"])
        t = adafruit_ds1307.DS1307(bus).datetime
        y, mo, d = codec.civil_from_days(v["unix"] // 86400)
        rem = v["unix"] % 86400
        assert (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec) == (
            y, mo, d, rem // 3600, rem // 60 % 60, rem % 60), v["name"]


def test_adafruit_register_image_agrees_with_codec():
    for v in _plain_24h_vectors():
        bus, chip = _bus_with_chip()
        rtc = adafruit_ds1307.DS1307(bus)
        cp.AdafruitDs1307Chip(rtc).write(v["unix"])  # through Adafruit's BCDDateTimeRegister
        image = bytes(chip.mem[0:7])
        ours = codec.encode(v["unix"])
        # seconds, minutes, hours, date, month, year byte for byte; CH clear
        assert image[0:3] + image[4:7] == ours[0:3] + ours[4:7] == bytes(v["registers"][0:3] + v["registers"][4:7])
        # weekday: Adafruit counts Monday = 1, our vectors Sunday = 1; the chip only increments the register
        assert image[3] == (ours[3] - 2) % 7 + 1, v["name"]
        assert codec.decode(image) == (v["unix"], False)


def test_clock_halt_bit_agrees():
    halted = [v for v in vectors("ds1307.json") if v["halted"]][0]
    bus, chip = _bus_with_chip()
    chip.mem[0:7] = bytes(halted["registers"])
    rtc = adafruit_ds1307.DS1307(bus)
    assert rtc.disable_oscillator is True
    assert codec.decode(chip.mem[0:7])[1] is True
    assert RtcClock(cp.AdafruitDs1307Chip(rtc)).lost()
    rtc.disable_oscillator = False
    assert codec.decode(chip.mem[0:7]) == (halted["unix"], False)


def test_rtc_clock_over_adafruit_driver():
    bus, chip = _bus_with_chip()
    clock = RtcClock(cp.AdafruitDs1307Chip(adafruit_ds1307.DS1307(bus)))
    assert clock.lost() and clock.now_ms() == (None, "none")
    assert clock.set_ms(1700000000999)
    assert clock.now_ms() == (1700000000000, "rtc") and not clock.lost()
    chip.tick(86400)
    assert clock.now_ms() == (1700086400000, "rtc")


@pytest.fixture
def broker(tmp_path):
    m = Mosquitto(tmp_path).start()
    yield m
    m.stop()


@pytest.mark.timeout(120)
def test_circuitpython_collector_over_minimqtt(broker, tmp_path):
    gw = PahoGateway(broker.port)
    bus, chip = _bus_with_chip()
    rtc_chip = cp.AdafruitDs1307Chip(adafruit_ds1307.DS1307(bus))  # halted: set from the first ack's t
    clients = []

    def make_client():
        mqtt = MQTT(broker="127.0.0.1", port=broker.port, client_id="cp-node-a", socket_pool=socket,
                    socket_timeout=0.05, recv_timeout=5, connect_retries=1, keep_alive=10)
        clients.append(cp.MiniMqttClient(mqtt, (MMQTTException,)))
        return clients[-1]

    cfg = {"dev": "cp-1", "node": "a", "site": "site-1", "prefix": "iot", "unit": "V", "sample_ms": 200,
           "ack_timeout_ms": 5000, "cache_capacity": 100, "boot_file": str(tmp_path / "boot.count"), "role": "single"}
    node = cp.build_from_parts(cfg, HostTicks(), rtc_chip, lambda: 3.3, make_client, str(tmp_path))
    try:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            node.step()
            time.sleep(0.01)
        gw.wait_for(lambda g: len(g.rows) >= 10, 10, "readings via minimqtt")
        deadline = time.monotonic() + 10
        while node.cache.count > 1 and time.monotonic() < deadline:
            node.step()
            time.sleep(0.01)
        assert node.cache.count <= 1  # acks came back through minimqtt and trimmed the cache
        assert node.rtc_sets == 1
        rows = [gw.rows[k] for k in sorted(gw.rows)]
        assert rows[0]["src"] == "none" and rows[-1]["src"] == "rtc" and rows[-1]["ts"] >= 1700000000000
        assert all(r["val"] == 3.3 and r["unit"] == "V" for r in rows)
        # the last will was registered: an abrupt drop publishes it
        clients[-1].mqtt._sock.close()
        gw.wait_for(lambda g: any(s[1]["state"] == "offline" for s in g.statuses), 15, "last will")
    finally:
        gw.close()


class FakeRequest:
    """One request of CircuitPython's i2ctarget: a controller write (data) or read."""

    def __init__(self, data=None, on_read=None):
        self.is_read = data is None
        self.data = data
        self.on_read = on_read

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self):
        return self.data

    def write(self, buf):
        self.on_read(bytes(buf))


class FakeTargetBus:
    """A controller bus (busio API) whose device at 0x42 is an i2ctarget.I2CTarget: every transfer becomes a
    request that the target side services later, as on two real boards."""

    def __init__(self):
        self.pending = []
        self.locked = False
        self.emulator = None

    def try_lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        self.locked = False

    def writeto(self, address, buf, start=0, end=None):
        self.pending.append(FakeRequest(bytes(buf[start:end])))
        self.emulator.service()  # the target board answers within the transfer (clock stretching)

    def writeto_then_readfrom(self, address, out_buf, in_buf, out_start=0, out_end=None, in_start=0, in_end=None):
        self.writeto(address, out_buf, out_start, out_end)
        got = []
        self.pending.append(FakeRequest(on_read=got.append))
        self.emulator.service()
        n = (len(in_buf) if in_end is None else in_end) - in_start
        in_buf[in_start:in_start + n] = got[0][:n]

    def request(self, timeout=0):
        return self.pending.pop(0) if self.pending else None


def test_busio_sender_and_i2ctarget_emulation():
    bus = FakeTargetBus()
    mem = bytearray(MEM_SIZE)
    bus.emulator = cp.TargetMemEmulator(bus, mem)
    receiver = cp.ServicedReceiver(bus.emulator)
    sender = I2cBeatSender(cp.BusioMem(bus), 0x42)
    receiver.set_reply(1)
    delivered, reply = sender.exchange(bytes((0xB7, 0, 5)))
    assert delivered and reply == 1
    assert decode_beat(receiver.receive()) == (0, 5)
    assert receiver.receive() is None  # no new beat
    receiver.set_reply(0)
    assert sender.exchange(bytes((0xB7, 1, 6))) == (True, 0)
    assert decode_beat(receiver.receive()) == (1, 6)


def test_dio_pin_adapter():
    class Dio:
        value = False

    pin = cp.DioPin(Dio())
    pin.value(1)
    assert pin.value() == 1 and pin.dio.value is True
