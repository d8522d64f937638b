"""MicroPython board glue: real parts -> iotcollector objects, and the main loop.

Parts: ``machine.I2C`` (DS1307, heartbeat controller), ``machine.I2CTarget`` (heartbeat target, MicroPython
1.26+ on rp2, esp32, stm32, …), ``machine.Pin`` (GPIO heartbeat, LED), ``machine.ADC`` (the sensor), an SD card
(``machine.SDCard`` or the ``sdcard`` driver over SPI, mounted with ``os.mount``) with a flash file as the
fallback cache, WLAN, and ``umqtt.simple`` (install on the board: ``mpremote mip install umqtt.simple``).
Everything is built by ``build(config)``; ``main()`` wires it up and loops.
"""

import os
import random
import time

import machine
from iotboard.profiles import with_profile
from iotcollector.beatlink import MEM_SIZE, I2cBeatSender, PulseBeatReceiver, PulseBeatSender, TargetMemBeatReceiver
from iotcollector.bootcount import next_boot
from iotcollector.cachelog import CacheLog, FileStorage
from iotcollector.collector import Collector, CollectorConfig
from iotcollector.ds1307 import DS1307, NoClock, RtcClock
from iotcollector.links import MqttLink, SerialLink
from iotcollector.linksup import LinkSupervisor
from iotcollector.node import PrimaryNode, SecondaryNode
from iotcollector.pair import PrimaryRole, SecondaryRole


def log(msg: str) -> None:
    print(msg)


def rand() -> float:
    return random.getrandbits(16) / 65536  # random.random() is missing on some ports


def wlan_connect(cfg, clock=time, timeout_ms: int = 20000) -> bool:
    """Join the configured WLAN; False if it did not connect in time (the MQTT supervisor retries later)."""
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(cfg["wifi_ssid"], cfg["wifi_password"])
        start = clock.ticks_ms()
        while not wlan.isconnected():
            if clock.ticks_diff(clock.ticks_ms(), start) > timeout_ms:
                return False
            clock.sleep_ms(100)
    return True


# machine.reset_cause() values -> the status's "reset" (protocol section 6). Ports define the constants
# they have; a missing one simply never matches.
_RESET_NAMES = (("PWRON_RESET", "power"), ("WDT_RESET", "wdt"), ("HARD_RESET", "ext"), ("BROWNOUT_RESET", "brownout"),
                ("SOFT_RESET", "soft"), ("DEEPSLEEP_RESET", "soft"))


def reset_reason() -> str:
    """Why this board started: power, wdt, ext, brownout, soft or unknown."""
    try:
        cause = machine.reset_cause()
    except (AttributeError, OSError):
        return "unknown"
    for const, name in _RESET_NAMES:
        if getattr(machine, const, None) == cause:
            return name
    return "unknown"


def make_watchdog(cfg):
    """The hardware watchdog (``wdt_ms``, default 8000; 0 disables it), or None. rp2 allows at most 8388 ms."""
    ms = cfg.get("wdt_ms", 8000)
    if not ms:
        return None
    try:
        return machine.WDT(timeout=ms)
    except (AttributeError, ValueError, OSError) as exc:
        log("no watchdog (%s)" % exc)
        return None


class WlanKeeper:
    """Keeps the WLAN joined while the node runs: when it drops, rejoin without blocking the loop (the
    heartbeat and the takeover timer must stay on time), the attempts spaced by a backoff that doubles
    from ``base_ms`` to ``max_ms`` and starts again once connected. The MQTT link has its own backoff
    (LinkSupervisor) and reconnects once the WLAN is back."""

    def __init__(self, cfg, clock=time, wlan=None, base_ms: int = 1000, max_ms: int = 60000) -> None:
        if wlan is None:
            import network

            wlan = network.WLAN(network.STA_IF)
        self.cfg = cfg
        self.clock = clock
        self.wlan = wlan
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.delay = base_ms
        self.next_try = clock.ticks_ms()
        self.attempts = 0

    def step(self) -> bool:
        """Call every loop; True while connected."""
        if self.wlan.isconnected():
            self.delay = self.base_ms
            return True
        now = self.clock.ticks_ms()
        if self.clock.ticks_diff(now, self.next_try) < 0:
            return False
        self.attempts += 1
        log("wlan down: joining %s (attempt %d)" % (self.cfg["wifi_ssid"], self.attempts))
        try:
            self.wlan.active(True)
            self.wlan.connect(self.cfg["wifi_ssid"], self.cfg["wifi_password"])
        except OSError as exc:
            log("wlan connect failed: %s" % exc)
        self.next_try = self.clock.ticks_add(now, self.delay)
        self.delay = min(self.delay * 2, self.max_ms)
        return False


def make_i2c(cfg):
    return machine.I2C(cfg["i2c_id"], scl=machine.Pin(cfg["i2c_scl"]), sda=machine.Pin(cfg["i2c_sda"]),
                       freq=cfg["i2c_freq"])


def make_rtc(cfg, i2c):
    return RtcClock(DS1307(i2c)) if cfg.get("rtc") else NoClock()


def make_sensor(cfg):
    adc = machine.ADC(machine.Pin(cfg["adc_pin"]))
    scale, offset = cfg["adc_scale"], cfg["adc_offset"]
    return lambda: adc.read_u16() * scale + offset


def mount_sd(cfg, mount=None):
    """Mount the SD card at ``sd_mount`` (with ``os.mount`` unless ``mount`` is given); returns the folder,
    or None when there is no card."""
    spi = cfg.get("sd_spi")
    if not spi and cfg.get("sd_slot") is None:
        log("no SD card configured: caching in flash")
        return None
    try:
        if spi:
            import sdcard  # micropython-lib driver: mpremote mip install sdcard

            bus = machine.SPI(spi["id"], sck=machine.Pin(spi["sck"]), mosi=machine.Pin(spi["mosi"]),
                              miso=machine.Pin(spi["miso"]))
            card = sdcard.SDCard(bus, machine.Pin(spi["cs"]))
        else:
            card = machine.SDCard(slot=cfg["sd_slot"])
        (mount or os.mount)(card, cfg["sd_mount"])
    except (OSError, ImportError, AttributeError, TypeError) as exc:  # AttributeError: no machine.SDCard (rp2)
        log("no SD card (%s): caching in flash" % exc)
        return None
    return cfg["sd_mount"]


def open_cache(cfg, mount=None):
    """The cache log on the SD card if there is one, else in a flash file; returns (CacheLog, folder)."""
    folder = mount_sd(cfg, mount) or cfg["flash_dir"]
    path = folder.rstrip("/") + "/cache.log"
    cache = CacheLog(FileStorage(path, os), cfg["cache_capacity"])
    if cache.torn_bytes:
        log("cache: cut %d bytes of a torn record" % cache.torn_bytes)
    return cache, folder


def timeout_client_class(base, timeout_s: float):
    """``umqtt.simple.MQTTClient`` with a socket timeout, so a network that goes silent raises OSError
    instead of blocking the loop (and with it the heartbeat) forever, e.g. while waiting for a PUBACK.
    umqtt.simple's ``wait_msg`` puts the socket back to blocking after its first read, so the timeout is
    restored after every call of it."""

    class TimeoutClient(base):
        def connect(self, clean_session=True):
            result = base.connect(self, clean_session)
            self.sock.settimeout(timeout_s)
            return result

        def wait_msg(self):
            try:
                return base.wait_msg(self)
            finally:
                if self.sock is not None:
                    self.sock.settimeout(timeout_s)

    return TimeoutClient


class _TimedSockets:
    """Stands in for the ``socket`` module inside umqtt.simple so every socket it creates has a timeout
    before ``connect``: an unreachable broker then fails the attempt after ``timeout_s`` instead of
    stalling the loop for the TCP stack's own, much longer, connect timeout (a stalled primary stops
    its heartbeat, and its partner would take over)."""

    def __init__(self, real, timeout_s: float) -> None:
        self.real = real
        self.timeout_s = timeout_s

    def socket(self, *args):
        sock = self.real.socket(*args)
        sock.settimeout(self.timeout_s)
        return sock

    def getaddrinfo(self, *args):
        return self.real.getaddrinfo(*args)


def install_socket_timeout(umqtt_module, timeout_s: float) -> None:
    """Give every socket umqtt.simple opens a timeout (idempotent)."""
    current = getattr(umqtt_module, "socket", None)
    if current is None:
        return
    if isinstance(current, _TimedSockets):
        current.timeout_s = timeout_s
    else:
        umqtt_module.socket = _TimedSockets(current, timeout_s)


def make_mqtt_factory(cfg):
    import umqtt.simple
    from umqtt.simple import MQTTClient

    timeout_s = cfg.get("mqtt_timeout_s", 2)
    install_socket_timeout(umqtt.simple, timeout_s)
    client_class = timeout_client_class(MQTTClient, timeout_s)
    client_id = "%s-%s" % (cfg["dev"], cfg["node"])
    tls = make_tls_context(cfg)
    port = cfg.get("mqtt_port") or (8883 if tls is not None else 1883)
    # user/password: the device credentials from the gateway's device list (docs/micropython.md)
    user = cfg.get("mqtt_user") or None
    password = cfg.get("mqtt_password") or None
    brokers = cfg.get("mqtt_brokers")
    if brokers:  # [(host, port), ...]: the link moves to the next when one fails
        return [_client_factory(client_class, client_id, host, broker_port, user, password, cfg["mqtt_keepalive"], tls)
                for host, broker_port in brokers]
    return _client_factory(client_class, client_id, cfg["mqtt_host"], port, user, password, cfg["mqtt_keepalive"], tls)


def _client_factory(client_class, client_id, host, port, user, password, keepalive, tls):
    return lambda: client_class(client_id, host, port=port, user=user, password=password, keepalive=keepalive,
                                ssl=tls)


def make_tls_context(cfg):
    """An ``ssl.SSLContext`` for ``mqtt_tls`` (umqtt.simple takes it as ``ssl=``): the server's certificate
    is verified against ``mqtt_ca`` (a PEM or DER file on the board) when given; None without TLS."""
    if not cfg.get("mqtt_tls"):
        return None
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cfg.get("mqtt_ca"):
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=cfg["mqtt_ca"])
    else:
        # No CA on the board: encrypted but not authenticated (say so, it is a choice the user makes).
        if hasattr(ctx, "check_hostname"):
            ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        log("mqtt tls without mqtt_ca: the broker's certificate is not verified")
    return ctx


class UsbSerial:
    """The USB serial console as a link to the gateway's serial ingest: frames go out on stdout (among the
    console text, which the gateway ignores), acks come in on stdin, read without blocking."""

    def __init__(self) -> None:
        import select
        import sys

        self.sys = sys
        self.poller = select.poll()
        self.poller.register(sys.stdin, select.POLLIN)

    def write(self, data) -> None:
        self.sys.stdout.write(bytes(data).decode())

    def read(self):
        out = b""
        while self.poller.poll(0) and len(out) < 256:
            ch = self.sys.stdin.read(1)
            if not ch:
                break
            out += ch.encode() if isinstance(ch, str) else ch
        return out or None


def make_link(cfg, make_client=None, clock=time):
    """MQTT (default), a hardware UART, or the USB console, after ``cfg["link"]``."""
    kind = cfg.get("link", "mqtt")
    if kind == "mqtt":
        return MqttLink(make_client or make_mqtt_factory(cfg), cfg["prefix"], cfg["site"], cfg["dev"], clock,
                        cfg["mqtt_keepalive"])
    if kind == "uart":
        uart = machine.UART(cfg["uart_id"], baudrate=cfg.get("uart_baud", 115200), tx=machine.Pin(cfg["uart_tx"]),
                            rx=machine.Pin(cfg["uart_rx"]), timeout=0)
        return SerialLink(uart)
    if kind == "usb":
        return SerialLink(UsbSerial())
    raise ValueError("link must be mqtt, uart or usb")


def build(cfg, clock=time, make_client=None, mount=None):
    """Build the node described by ``cfg`` (over its board profile): a Collector, or a
    PrimaryNode/SecondaryNode around one."""
    cfg = with_profile(cfg)
    i2c = make_i2c(cfg)
    cache, _ = open_cache(cfg, mount)
    boot = next_boot(cfg["boot_file"], os, cache)
    link = make_link(cfg, make_client, clock)
    ccfg = CollectorConfig(cfg["dev"], cfg["node"], cfg["site"], cfg["prefix"], cfg["unit"], cfg["sample_ms"],
                           cfg["ack_timeout_ms"], status_ms=cfg.get("status_ms", 60000),
                           resend_window=cfg.get("resend_window", 8), resend_cap_ms=cfg.get("resend_cap_ms", 60000))
    collector = Collector(ccfg, clock, make_rtc(cfg, i2c), make_sensor(cfg), cache, link,
                          LinkSupervisor(clock, rand), boot, log=log)
    role = cfg["role"]
    if role == "single":
        return collector
    gpio = cfg["hb_transport"] == "gpio"
    if role == "primary":
        if gpio:
            sender = PulseBeatSender(machine.Pin(cfg["hb_pin"], machine.Pin.OUT))
        else:
            sender = I2cBeatSender(i2c, cfg["hb_target_addr"])
        return PrimaryNode(collector, PrimaryRole(clock, cfg["hb_period_ms"], cfg["hb_handback_beats"]), sender)
    if role == "secondary":
        if gpio:
            receiver = PulseBeatReceiver(machine.Pin(cfg["hb_pin"], machine.Pin.IN))
        else:
            mem = bytearray(MEM_SIZE)
            target = machine.I2CTarget(cfg["hb_target_i2c_id"], addr=cfg["hb_target_addr"], mem=mem,
                                       scl=machine.Pin(cfg["hb_target_scl"]), sda=machine.Pin(cfg["hb_target_sda"]))
            receiver = TargetMemBeatReceiver(mem)
            receiver.target = target  # keep the peripheral object alive
        return SecondaryNode(collector, SecondaryRole(clock, cfg["hb_timeout_ms"], cfg["hb_handback_beats"]),
                             receiver)
    raise ValueError("role must be single, primary or secondary")


def main(cfg=None, clock=time, max_steps=None, mount=None):
    """Entry point called by main.py: join the WLAN (for MQTT), build the node, loop (forever on a board;
    tests pass ``max_steps``). The loop never blocks for long, so heartbeats and the takeover timer stay on time."""
    if cfg is None:
        from config import CONFIG as cfg
    cfg = with_profile(cfg)
    reason = reset_reason()
    log("reset %s" % reason)
    keeper = None
    if cfg.get("link", "mqtt") == "mqtt":
        wlan_connect(cfg, clock)
        keeper = WlanKeeper(cfg, clock)
    node = build(cfg, clock, mount=mount)
    collector = getattr(node, "collector", node)
    collector.reset_reason = reason
    # Started once everything is built (joining the WLAN may take longer than the watchdog), fed once per
    # loop iteration only: a step that hangs (a bus, a card, the network stack) resets the board, which
    # then resumes under a new boot.
    wdt = make_watchdog(cfg)
    steps = 0
    while max_steps is None or steps < max_steps:
        if keeper is not None:
            keeper.step()
        node.step()
        if wdt is not None:
            wdt.feed()
        clock.sleep_ms(20)
        steps += 1
    return node
