"""Run the MicroPython port's collectors on a PC against a real MQTT broker (CPython).

Simulated parts stand in for the board (a DS1307 on a simulated I2C bus that keeps real time, a sensor
signal, the heartbeat bus between the two boards of a pair); the logic, the cache file format and the MQTT
traffic are the port's own, with ``umqtt.simple``'s API provided by paho-mqtt.

    python firmware/micropython/host/run_collector.py --host 127.0.0.1 --port 1883 --device pair-1 --pair \\
        --state-dir /tmp/pair-1 --duration 60 --kill-primary-at 20 --restart-primary-at 40

Prints one JSON object per line for every event (link, role change, counters every few seconds).
``HostCollectors`` is the same thing as a Python API (start, step, kill/restart the primary, cut the link).
"""

import argparse
import json
import math
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for _folder in (os.path.join(os.path.dirname(HERE), "lib"), HERE):
    if _folder not in sys.path:
        sys.path.insert(0, _folder)

from hostclock import HostTicks  # noqa: E402
from iotcollector.beatlink import MEM_SIZE, I2cBeatSender, TargetMemBeatReceiver  # noqa: E402
from iotcollector.bootcount import next_boot  # noqa: E402
from iotcollector.cachelog import CacheLog, FileStorage  # noqa: E402
from iotcollector.collector import Collector, CollectorConfig  # noqa: E402
from iotcollector.ds1307 import DS1307, RtcClock  # noqa: E402
from iotcollector.links import MqttLink  # noqa: E402
from iotcollector.linksup import LinkSupervisor  # noqa: E402
from iotcollector.node import PrimaryNode, SecondaryNode  # noqa: E402
from iotcollector.pair import PrimaryRole, SecondaryRole  # noqa: E402
from simparts import Ds1307Chip, MemDevice, SimI2C  # noqa: E402
from umqtt_paho import MQTTClient  # noqa: E402

HB_ADDR = 0x42


class SimBoard:
    """One simulated board: its own I2C bus with a DS1307 that follows the PC's clock."""

    def __init__(self, rtc_lost: bool = False) -> None:
        self.bus = SimI2C()
        self.chip = Ds1307Chip()
        self.bus.attach(0x68, self.chip)
        self._last = int(time.time())
        if not rtc_lost:
            DS1307(self.bus).write(self._last)

    def tick(self) -> None:
        now = int(time.time())
        if now > self._last:
            self.chip.tick(now - self._last)
            self._last = now


class HostCollectors:
    """A single collector or a redundant pair of the port, publishing to ``host:port``."""

    def __init__(self, host: str, port: int, device: str, site: str = "site-1", prefix: str = "iot",
                 pair: bool = False, state_dir: str = ".", sample_ms: int = 1000, ack_timeout_ms: int = 5000,
                 hb_period_ms: int = 1000, hb_timeout_ms: int = 3500, capacity: int = 5000,
                 ticks_period: int = 1 << 30, rtc_lost: bool = False, emit=None) -> None:
        self.host, self.port, self.device, self.site, self.prefix = host, port, device, site, prefix
        self.state_dir = state_dir
        self.sample_ms, self.ack_timeout_ms, self.capacity = sample_ms, ack_timeout_ms, capacity
        self.hb_period_ms, self.hb_timeout_ms = hb_period_ms, hb_timeout_ms
        self.clock = HostTicks(ticks_period)
        self.emit = emit or (lambda event: None)
        self.rtc_lost = rtc_lost
        self.link_blocked = False
        self.hb_mem = bytearray(MEM_SIZE)
        self.hb_bus = SimI2C()  # the wire between the two boards
        self.hb_bus.attach(HB_ADDR, MemDevice(self.hb_mem))
        self.boards = {}
        self.nodes = {}
        self.alive = {}
        self.lock = threading.RLock()  # step() and the controls may run in different threads
        self._thread = None
        self._stop = threading.Event()
        os.makedirs(state_dir, exist_ok=True)
        if pair:
            self.nodes["a"] = self._primary()
            self.nodes["b"] = self._secondary()
        else:
            self.nodes["a"] = self._collector("a")

    # -- building -------------------------------------------------------------------------------------
    def _make_client(self, node: str):
        def make():
            if self.link_blocked:
                raise OSError("link cut (simulated)")
            return MQTTClient(f"{self.device}-{node}", self.host, self.port, keepalive=10)
        return make

    def _collector(self, node: str) -> Collector:
        board = self.boards[node] = SimBoard(self.rtc_lost)
        folder = os.path.join(self.state_dir, node)
        os.makedirs(folder, exist_ok=True)
        cache = CacheLog(FileStorage(os.path.join(folder, "cache.log"), os), self.capacity)
        boot = next_boot(os.path.join(folder, "boot.count"), os, cache)
        cfg = CollectorConfig(self.device, node, self.site, self.prefix, "C", self.sample_ms, self.ack_timeout_ms)
        phase = random.random() * 6.28

        def sensor():
            return round(20 + 5 * math.sin(time.time() / 60 + phase), 3)

        def log(msg):
            self.emit({"event": "log", "node": node, "msg": msg})

        self.alive[node] = True
        return Collector(cfg, self.clock, RtcClock(DS1307(board.bus)), sensor, cache,
                         MqttLink(self._make_client(node), self.prefix, self.site, self.device),
                         LinkSupervisor(self.clock, random.random, base_ms=200, max_ms=5000), boot, log=log)

    def _primary(self) -> PrimaryNode:
        return PrimaryNode(self._collector("a"), PrimaryRole(self.clock, self.hb_period_ms, 3),
                           I2cBeatSender(self.hb_bus, HB_ADDR))

    def _secondary(self) -> SecondaryNode:
        return SecondaryNode(self._collector("b"), SecondaryRole(self.clock, self.hb_timeout_ms, 3),
                             TargetMemBeatReceiver(self.hb_mem))

    # -- running --------------------------------------------------------------------------------------
    def collector(self, node: str) -> Collector:
        n = self.nodes[node]
        return n if isinstance(n, Collector) else n.collector

    def step(self) -> None:
        with self.lock:
            for node, n in self.nodes.items():
                if self.alive[node]:
                    self.boards[node].tick()
                    n.step()

    def start(self, step_ms: int = 10) -> "HostCollectors":
        """Run the loop in a background thread (for the demo); ``stop()`` ends it."""
        def loop():
            while not self._stop.is_set():
                self.step()
                self._stop.wait(step_ms / 1000)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="mp-collectors-" + self.device, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def run(self, seconds: float, step_ms: int = 10) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step()
            time.sleep(step_ms / 1000)

    def kill(self, node: str) -> None:
        """The board loses power: no more steps, its MQTT connection drops without DISCONNECT."""
        with self.lock:
            self._kill(node)

    def _kill(self, node: str) -> None:
        self.alive[node] = False
        link = self.collector(node).link
        if link.client is not None:
            link.client.kill()
            link.client = None
        self.emit({"event": "killed", "node": node})

    def restart_primary(self) -> None:
        """Power the primary back on: a new boot, the same cache file."""
        with self.lock:
            self.nodes["a"] = self._primary()
        self.emit({"event": "restarted", "node": "a", "boot": self.collector("a").boot})

    def cut_link(self, cut: bool) -> None:
        """Simulate a network outage for every node (connections dropped, reconnects refused)."""
        with self.lock:
            self.link_blocked = cut
            if cut:
                for node in self.nodes:
                    c = self.collector(node)
                    if c.link.client is not None:
                        c.link.client.kill()
                        c.link.client = None
                    c.supervisor.up = False

    def close(self) -> None:
        self.stop()
        with self.lock:
            for node in self.nodes:
                self.collector(node).link.close()

    def snapshot(self) -> dict:
        """Per node: role, boot, seq, cache size, counters, link and power state."""
        with self.lock:
            out = {}
            for node in self.nodes:
                c = self.collector(node)
                out[node] = {"role": c.role, "boot": c.boot, "seq": c.seq, "cached": c.cache.count, "sent": c.sent,
                             "resent": c.resent, "dropped": c.dropped, "link": c.supervisor.up,
                             "alive": self.alive[node]}
            return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--device", default="mp-1")
    ap.add_argument("--site", default="site-1")
    ap.add_argument("--prefix", default="iot")
    ap.add_argument("--pair", action="store_true", help="run a redundant pair (nodes a and b)")
    ap.add_argument("--state-dir", default="./mp-state", help="cache and boot counter files")
    ap.add_argument("--sample-ms", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=0, help="seconds to run (0: until interrupted)")
    ap.add_argument("--kill-primary-at", type=float, default=None, help="seconds after start")
    ap.add_argument("--restart-primary-at", type=float, default=None, help="seconds after start")
    ap.add_argument("--rtc-lost", action="store_true", help="start with a halted DS1307 (set from the first ack)")
    args = ap.parse_args(argv)

    def emit(event):
        event["t"] = round(time.time(), 3)
        print(json.dumps(event), flush=True)

    hc = HostCollectors(args.host, args.port, args.device, args.site, args.prefix, args.pair, args.state_dir,
                        args.sample_ms, rtc_lost=args.rtc_lost, emit=emit)
    start = time.monotonic()
    last_report = 0.0
    killed = restarted = False
    try:
        while not args.duration or time.monotonic() - start < args.duration:
            elapsed = time.monotonic() - start
            if args.kill_primary_at is not None and not killed and elapsed >= args.kill_primary_at:
                hc.kill("a")
                killed = True
            if args.restart_primary_at is not None and killed and not restarted and elapsed >= args.restart_primary_at:
                hc.restart_primary()
                restarted = True
            hc.step()
            if elapsed - last_report >= 5:
                emit({"event": "status", "nodes": hc.snapshot()})
                last_report = elapsed
            time.sleep(0.01)
    except KeyboardInterrupt:
        pass
    finally:
        emit({"event": "final", "nodes": hc.snapshot()})
        hc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
