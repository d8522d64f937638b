"""A small simulated world for scenario tests: fake broker (tests/fakes/umqtt), a gateway stand-in that
acks like protocol section 5, and builders for collectors and pair nodes on a shared ManualTicks clock.

The gateway stand-in follows the protocol's watermark rule (contiguous from 0) and re-acks duplicates;
the real gateway is exercised by the end-to-end test, not here.
"""

import json

from iotcollector.cachelog import CacheLog, MemoryStorage
from iotcollector.collector import Collector, CollectorConfig
from iotcollector.ds1307 import DS1307, RtcClock
from iotcollector.links import MqttLink
from iotcollector.linksup import LinkSupervisor
from iotcollector.ticks import ManualTicks
from simparts import Ds1307Chip, SimI2C
from umqtt import simple


class MiniGateway:
    """Consumes readings from the fake broker's log; keeps one row per identity; acks with ``t``."""

    def __init__(self, broker, clock_ms=1700000000000):
        self.broker = broker
        self.pos = 0
        self.rows = {}  # (dev, node, boot, seq) -> reading dict
        self.arrivals = []  # every reading received, duplicates included
        self.held = {}  # (dev, node, boot) -> set of seq
        self.upto = {}
        self.clock_ms = clock_ms
        self.acking = True

    def pump(self):
        log = self.broker.log
        while self.pos < len(log):
            topic, payload, qos, retain = log[self.pos]
            self.pos += 1
            if not topic.endswith("/reading"):
                continue
            r = json.loads(payload)
            self.arrivals.append(r)
            ident = (r["dev"], r["node"], r["boot"], r["seq"])
            if ident not in self.rows:
                self.rows[ident] = r
            key = (r["dev"], r["node"], r["boot"])
            held = self.held.setdefault(key, set())
            held.add(r["seq"])
            upto = self.upto.get(key, -1)
            while upto + 1 in held:
                upto += 1
            self.upto[key] = upto
            if upto >= 0 and self.acking and self.broker.up:
                ack = '{"v":1,"dev":"%s","node":"%s","boot":%d,"upto":%d,"t":%d}' % (
                    r["dev"], r["node"], r["boot"], upto, self.clock_ms)
                self.broker.publish(topic[:-len("reading")] + "ack", ack, 1, False)


class Rand:
    """Deterministic stand-in for random: a fixed sequence in [0, 1)."""

    def __init__(self, values=(0.0, 0.5, 0.99, 0.25)):
        self.values = values
        self.i = 0

    def __call__(self):
        v = self.values[self.i % len(self.values)]
        self.i += 1
        return v


def make_rtc(unix=1700000000, running=True):
    bus = SimI2C()
    chip = Ds1307Chip()
    bus.attach(0x68, chip)
    rtc = RtcClock(DS1307(bus))
    if running:
        rtc.set_ms(unix * 1000)
    return rtc, chip


def make_collector(clock, dev="ft-1", node="a", boot=1, storage=None, capacity=100, rtc=None, sensor=None,
                   sample_ms=1000, ack_timeout_ms=5000, role="single", log=None, status_ms=60000):
    cfg = CollectorConfig(dev, node, "site-1", "iot", "C", sample_ms, ack_timeout_ms, status_ms=status_ms)
    link = MqttLink(lambda: simple.MQTTClient(dev + "-" + node, "broker"), "iot", "site-1", dev)
    cache = CacheLog(storage if storage is not None else MemoryStorage(), capacity)
    if rtc is None:
        rtc, _ = make_rtc()
    if sensor is None:
        values = [0]

        def sensor():
            values[0] += 1
            return values[0] / 4

    sup = LinkSupervisor(clock, Rand(), base_ms=500, max_ms=8000)
    return Collector(cfg, clock, rtc, sensor, cache, link, sup, boot, role, log)


def new_clock(start=0, period=1 << 30):
    return ManualTicks(start, period)


def run(clock, steppers, ms, step_ms=10, gateway=None, chips=(), each=None):
    """Advance ``ms`` of simulated time in ``step_ms`` steps, stepping every node and the gateway."""
    t = 0
    sec_frac = 0
    while t < ms:
        for s in steppers:
            s.step()
        if gateway is not None:
            gateway.pump()
        if each is not None:
            each(clock.elapsed_ms)
        clock.advance(step_ms)
        sec_frac += step_ms
        while sec_frac >= 1000:
            sec_frac -= 1000
            for chip in chips:
                chip.tick(1)
        t += step_ms
