"""CircuitPython board glue: the same iotcollector logic over CircuitPython's libraries.

Parts: ``busio.I2C`` with Adafruit's ``adafruit_ds1307`` driver, ``analogio.AnalogIn``, ``wifi`` +
``socketpool`` with ``adafruit_minimqtt`` (wrapped to the ``umqtt.simple`` API so ``MqttLink`` is shared),
``adafruit_ticks`` as the clock (it wraps at 2**29 ms), the heartbeat as I2C controller (``busio``) /
target (``i2ctarget``) or a ``digitalio`` line, and an SD card through ``sdcardio`` + ``storage.VfsFat``.
Install the libraries with ``circup install adafruit_ds1307 adafruit_minimqtt adafruit_ticks``.
CircuitPython mounts its flash read-only for code: a ``boot.py`` must remount it writable for the flash
cache (see docs/micropython.md). ``build_from_parts`` takes every part as an argument (tests use it).
"""

import os
import random
import time

from iotcollector.beatlink import MEM_SIZE, I2cBeatSender, PulseBeatReceiver, PulseBeatSender, TargetMemBeatReceiver
from iotcollector.bootcount import next_boot
from iotcollector.cachelog import CacheLog, FileStorage
from iotcollector.collector import Collector, CollectorConfig
from iotcollector.ds1307 import RtcClock, days_from_civil
from iotcollector.links import MqttLink
from iotcollector.linksup import LinkSupervisor
from iotcollector.node import PrimaryNode, SecondaryNode
from iotcollector.pair import PrimaryRole, SecondaryRole


def log(msg: str) -> None:
    print(msg)


class TicksClock:
    """The clock object the logic wants, from ``adafruit_ticks`` (or any module with the same functions)."""

    def __init__(self, ticks) -> None:
        self.ticks_ms = ticks.ticks_ms
        self.ticks_diff = ticks.ticks_diff
        self.ticks_add = ticks.ticks_add

    def sleep_ms(self, ms: int) -> None:
        time.sleep(ms / 1000)


class AdafruitDs1307Chip:
    """``adafruit_ds1307.DS1307`` behind the chip interface RtcClock uses (``read``/``write`` in Unix seconds).

    The Adafruit driver numbers weekdays from Monday = 1 (``tm_wday + 1``) where our codec writes
    Sunday = 1; the chip only counts the register, so both agree on every date and time field."""

    def __init__(self, rtc) -> None:
        self.rtc = rtc

    def read(self):
        t = self.rtc.datetime
        days = days_from_civil(t.tm_year, t.tm_mon, t.tm_mday)
        unix = ((days * 24 + t.tm_hour) * 60 + t.tm_min) * 60 + t.tm_sec
        return unix, bool(self.rtc.disable_oscillator)

    def write(self, unix: int) -> None:
        from iotcollector.ds1307 import civil_from_days

        days, rem = divmod(unix, 86400)
        year, month, day = civil_from_days(days)
        wday = (days + 3) % 7  # struct_time: Monday = 0; 1970-01-01 was a Thursday
        self.rtc.datetime = time.struct_time((year, month, day, rem // 3600, rem // 60 % 60, rem % 60, wday, -1, -1))
        self.rtc.disable_oscillator = False


class MiniMqttClient:
    """``umqtt.simple.MQTTClient``'s API over ``adafruit_minimqtt.MQTT``; its errors surface as OSError so
    the collector's link handling is the same on both ports."""

    def __init__(self, mqtt, errors=()) -> None:
        self.mqtt = mqtt
        self.errors = tuple(errors) + (OSError,)
        self._cb = None
        mqtt.on_message = self._on_message

    def _on_message(self, client, topic, message) -> None:
        if self._cb is not None:
            msg = message if isinstance(message, (bytes, bytearray)) else message.encode()
            self._cb(topic.encode(), msg)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self.errors as exc:
            raise OSError("mqtt: %s" % exc)  # noqa: B904  (CircuitPython warns on every chained raise)

    def set_callback(self, f) -> None:
        self._cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0) -> None:
        self.mqtt.will_set(_text(topic), _text(msg), retain, qos)

    def connect(self, clean_session=True):
        return self._call(self.mqtt.connect, clean_session)

    def subscribe(self, topic, qos=0) -> None:
        self._call(self.mqtt.subscribe, _text(topic), qos)

    def publish(self, topic, msg, retain=False, qos=0) -> None:
        self._call(self.mqtt.publish, _text(topic), _text(msg), retain, qos)

    def check_msg(self) -> None:
        self._call(self.mqtt.loop, self.mqtt._socket_timeout)

    def disconnect(self) -> None:
        try:
            self.mqtt.disconnect()
        finally:
            try:
                self.mqtt.deinit()
            except Exception:  # deinit of a broken connection may fail in any way; it is gone either way
                pass


def _text(value):
    return bytes(value).decode() if isinstance(value, (bytes, bytearray)) else value


class BusioMem:
    """``readfrom_mem``/``writeto_mem`` (machine.I2C style) over a ``busio.I2C``, for the heartbeat sender."""

    def __init__(self, i2c) -> None:
        self.i2c = i2c

    def _locked(self, fn):
        while not self.i2c.try_lock():
            pass
        try:
            return fn()
        finally:
            self.i2c.unlock()

    def writeto_mem(self, address: int, memaddr: int, buf) -> None:
        self._locked(lambda: self.i2c.writeto(address, bytes((memaddr,)) + bytes(buf)))

    def readfrom_mem(self, address: int, memaddr: int, n: int) -> bytes:
        out = bytearray(n)
        self._locked(lambda: self.i2c.writeto_then_readfrom(address, bytes((memaddr,)), out))
        return bytes(out)


class TargetMemEmulator:
    """Makes CircuitPython's request-based ``i2ctarget.I2CTarget`` behave as the memory device the primary
    expects (first written byte = address, auto-increment), serviced from the main loop."""

    def __init__(self, target, mem) -> None:
        self.target = target
        self.mem = mem
        self.pointer = 0

    def service(self) -> None:
        while True:
            request = self.target.request(timeout=0)
            if not request:
                return
            with request:
                if request.is_read:
                    n = len(self.mem) - self.pointer
                    request.write(bytes(self.mem[self.pointer:self.pointer + n]))
                else:
                    data = request.read()
                    if data:
                        self.pointer = data[0] % len(self.mem)
                        for b in data[1:]:
                            self.mem[self.pointer] = b
                            self.pointer = (self.pointer + 1) % len(self.mem)


class ServicedReceiver(TargetMemBeatReceiver):
    """TargetMemBeatReceiver that first lets the emulator answer pending I2C requests."""

    def __init__(self, emulator) -> None:
        TargetMemBeatReceiver.__init__(self, emulator.mem)
        self.emulator = emulator

    def receive(self):
        self.emulator.service()
        return TargetMemBeatReceiver.receive(self)


class DioPin:
    """A ``digitalio.DigitalInOut`` with ``machine.Pin``'s ``value()`` method."""

    def __init__(self, dio) -> None:
        self.dio = dio

    def value(self, v=None):
        if v is None:
            return 1 if self.dio.value else 0
        self.dio.value = bool(v)


def rand() -> float:
    return random.random()


def build_from_parts(cfg, clock, rtc_chip, sensor, make_client, cache_dir: str, beat=None):
    """A Collector (or pair node) from ready parts. ``beat`` is a sender (primary) or receiver (secondary)."""
    cache = CacheLog(FileStorage(cache_dir.rstrip("/") + "/cache.log", os), cfg["cache_capacity"])
    boot = next_boot(cfg["boot_file"], os, cache)
    link = MqttLink(make_client, cfg["prefix"], cfg["site"], cfg["dev"])
    ccfg = CollectorConfig(cfg["dev"], cfg["node"], cfg["site"], cfg["prefix"], cfg["unit"], cfg["sample_ms"],
                           cfg["ack_timeout_ms"], status_ms=cfg.get("status_ms", 60000),
                           resend_window=cfg.get("resend_window", 8), resend_cap_ms=cfg.get("resend_cap_ms", 60000))
    collector = Collector(ccfg, clock, RtcClock(rtc_chip), sensor, cache, link, LinkSupervisor(clock, rand), boot,
                          log=log)
    if cfg["role"] == "primary":
        return PrimaryNode(collector, PrimaryRole(clock, cfg["hb_period_ms"], cfg["hb_handback_beats"]), beat)
    if cfg["role"] == "secondary":
        return SecondaryNode(collector, SecondaryRole(clock, cfg["hb_timeout_ms"], cfg["hb_handback_beats"]), beat)
    return collector


def main(cfg=None) -> None:  # pragma: no cover - needs a CircuitPython board
    """Entry point called by code.py."""
    import adafruit_ds1307
    import adafruit_ticks
    import analogio
    import board
    import busio
    import socketpool
    import wifi
    from adafruit_minimqtt.adafruit_minimqtt import MQTT, MMQTTException

    if cfg is None:
        from config import CONFIG as cfg
    pin = lambda name: getattr(board, name)  # noqa: E731  config names pins as strings on CircuitPython
    i2c = busio.I2C(pin(cfg["cp_scl"]), pin(cfg["cp_sda"]))
    chip = AdafruitDs1307Chip(adafruit_ds1307.DS1307(i2c))
    adc = analogio.AnalogIn(pin(cfg["cp_adc"]))
    scale, offset = cfg["adc_scale"], cfg["adc_offset"]
    wifi.radio.connect(cfg["wifi_ssid"], cfg["wifi_password"])
    pool = socketpool.SocketPool(wifi.radio)

    def client_factory(host, port):
        def make_client():
            mqtt = MQTT(broker=host, port=port, client_id="%s-%s" % (cfg["dev"], cfg["node"]), socket_pool=pool,
                        keep_alive=cfg["mqtt_keepalive"], socket_timeout=0.05, recv_timeout=5,
                        connect_retries=1)  # our LinkSupervisor does the backoff
            return MiniMqttClient(mqtt, (MMQTTException,))
        return make_client

    # mqtt_brokers: several brokers, the link moves to the next when a connection attempt fails
    make_client = [client_factory(h, p) for h, p in cfg.get("mqtt_brokers") or [(cfg["mqtt_host"], cfg["mqtt_port"])]]

    cache_dir = mount_sd_cp(cfg) or cfg["flash_dir"]
    beat = None
    if cfg["role"] == "primary":
        if cfg["hb_transport"] == "gpio":
            import digitalio

            dio = digitalio.DigitalInOut(pin(cfg["cp_hb_pin"]))
            dio.switch_to_output(False)
            beat = PulseBeatSender(DioPin(dio))
        else:
            beat = I2cBeatSender(BusioMem(i2c), cfg["hb_target_addr"])
    elif cfg["role"] == "secondary":
        if cfg["hb_transport"] == "gpio":
            import digitalio

            dio = digitalio.DigitalInOut(pin(cfg["cp_hb_pin"]))
            dio.switch_to_input()
            beat = PulseBeatReceiver(DioPin(dio))
        else:
            import i2ctarget

            target = i2ctarget.I2CTarget(pin(cfg["cp_target_scl"]), pin(cfg["cp_target_sda"]),
                                         (cfg["hb_target_addr"],))
            beat = ServicedReceiver(TargetMemEmulator(target, bytearray(MEM_SIZE)))
    node = build_from_parts(cfg, TicksClock(adafruit_ticks), chip, lambda: adc.value * scale + offset, make_client,
                            cache_dir, beat)
    while True:
        node.step()
        time.sleep(0.01)


def mount_sd_cp(cfg):  # pragma: no cover - needs a CircuitPython board
    """Mount an SD card on SPI with sdcardio; returns the folder or None."""
    spi_cfg = cfg.get("sd_spi")
    if not spi_cfg:
        return None
    try:
        import board
        import busio
        import sdcardio
        import storage

        spi = busio.SPI(getattr(board, spi_cfg["cp_sck"]), getattr(board, spi_cfg["cp_mosi"]),
                        getattr(board, spi_cfg["cp_miso"]))
        card = sdcardio.SDCard(spi, getattr(board, spi_cfg["cp_cs"]))
        storage.mount(storage.VfsFat(card), cfg["sd_mount"])
    except (OSError, ImportError, KeyError) as exc:
        log("no SD card (%s): caching in flash" % exc)
        return None
    return cfg["sd_mount"]
