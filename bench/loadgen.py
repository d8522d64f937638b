"""Load generation and process accounting shared by the ingest benchmarks.

`Publishers` drives N MQTT publisher connections (one per collector) from one select() loop, so the
publishing side is cheap and parallel enough that the subscriber, not the publisher, sets the rate. It sends
protocol-v1 readings (about 110 bytes) at QoS 1, at full speed or on a schedule, and (optionally) follows the
end-to-end acks to measure the ack latency of every reading. `ProcStats` reads a process's CPU time, RSS and
disk writes from /proc.
"""

from __future__ import annotations

import os
import select
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gateway.mqttconn import BrokerSettings, connect_blocking, make_client
from gateway.protocol import encode_reading, parse_ack

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcSample:
    """One reading of /proc/<pid>: CPU seconds (user + system, all threads), RSS, disk bytes written."""

    at: float
    cpu_s: float
    rss_mb: float
    hwm_mb: float
    write_bytes: int


def proc_sample(pid: int) -> ProcSample:
    """CPU from /proc/<pid>/stat (utime + stime), RSS from status, write_bytes from io."""
    stat = open(f"/proc/{pid}/stat").read()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)
    status = open(f"/proc/{pid}/status").read().splitlines()
    kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in status if ln.startswith(("VmRSS", "VmHWM"))}
    io = dict(ln.split(": ") for ln in open(f"/proc/{pid}/io").read().splitlines())
    return ProcSample(time.monotonic(), cpu, kb["VmRSS"] / 1024, kb["VmHWM"] / 1024, int(io["write_bytes"]))


def load_average() -> str:
    """The 1/5/15-minute load averages (the machine is shared: every result carries it)."""
    return " ".join(open("/proc/loadavg").read().split()[:3])


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass
class Collector:
    """One publisher connection acting as one collector (device), with its unacknowledged readings."""

    device: str
    client: mqtt.Client
    next_seq: int = 0
    upto: int = -1
    sent_at: dict[int, float] = field(default_factory=dict)


class Publishers:
    """N publisher connections, one select() loop, QoS 1 protocol-v1 readings."""

    def __init__(self, settings: BrokerSettings, *, connections: int, prefix: str, site: str, boot: int,
                 follow_acks: bool, name: str = "bench") -> None:
        self.prefix, self.site, self.boot = prefix, site, boot
        self.follow_acks = follow_acks
        self.latencies: list[float] = []
        self.acked = 0
        self.collectors: list[Collector] = []
        for i in range(connections):
            device = f"{name}-{i:03d}"
            client = make_client(settings, f"{name}-{boot}-{i}")
            client.max_inflight_messages_set(100)
            col = Collector(device, client)
            if follow_acks:
                client.on_message = self._on_ack_for(col)
            connect_blocking(client, settings)
            if follow_acks:
                client.subscribe(f"{prefix}/{site}/{device}/ack", qos=1)
            self.collectors.append(col)
        self._by_sock = {c.client.socket(): c.client for c in self.collectors}
        self._last_misc = 0.0
        self.pump(0.2)

    def _on_ack_for(self, col: Collector):
        def on_ack(_c, _u, msg: mqtt.MQTTMessage) -> None:
            ack = parse_ack(msg.payload)
            if ack.boot != self.boot or ack.upto <= col.upto:
                return
            now = time.monotonic()
            for seq in range(col.upto + 1, ack.upto + 1):
                t = col.sent_at.pop(seq, None)
                if t is not None:
                    self.latencies.append(now - t)
                    self.acked += 1
            col.upto = ack.upto
        return on_ack

    def publish(self, col: Collector) -> None:
        seq = col.next_seq
        col.next_seq += 1
        now = time.time()
        payload = encode_reading(col.device, "a", self.boot, seq, int(now * 1000), "rtc",
                                 round(20 + (seq % 1000) / 100, 2), "C")
        if self.follow_acks:
            col.sent_at[seq] = time.monotonic()
        col.client.publish(f"{self.prefix}/{self.site}/{col.device}/reading", payload, qos=1)

    def pump(self, timeout: float) -> None:
        """One pass of the select() loop over every connection."""
        socks = list(self._by_sock)
        wants = [s for s, c in self._by_sock.items() if c.want_write()]
        readable, writable, _ = select.select(socks, wants, [], max(0.0, timeout))
        for s in readable:
            self._by_sock[s].loop_read()
        for s in writable:
            self._by_sock[s].loop_write()
        now = time.monotonic()
        if now - self._last_misc > 0.5:
            self._last_misc = now
            for c in self._by_sock.values():
                c.loop_misc()

    def outstanding(self) -> int:
        return sum(c.next_seq - 1 - c.upto for c in self.collectors)

    def burst(self, total: int, done, deadline_s: float = 300) -> float:
        """Publish `total` readings round-robin as fast as the connections take them; run the loop until
        `done()`; seconds from the first publish to done."""
        started = time.monotonic()
        per = total // len(self.collectors)
        for _ in range(per):
            for col in self.collectors:
                self.publish(col)
            self.pump(0)
        end = started + deadline_s
        while not done() and time.monotonic() < end:
            self.pump(0.01)
        return time.monotonic() - started

    def steady(self, rate: float, seconds: float, deadline_s: float = 120) -> float:
        """Publish at `rate` readings/s in total for `seconds` (collectors in turn), then wait for the acks."""
        started = time.monotonic()
        total = int(rate * seconds)
        interval = 1.0 / rate
        n = len(self.collectors)
        for i in range(total):
            due = started + i * interval
            while True:
                wait = due - time.monotonic()
                if wait <= 0:
                    break
                self.pump(wait)
            self.publish(self.collectors[i % n])
            self.pump(0)
        end = time.monotonic() + deadline_s
        while self.follow_acks and self.outstanding() > 0 and time.monotonic() < end:
            self.pump(0.01)
        return time.monotonic() - started

    def close(self) -> None:
        for c in self.collectors:
            c.client.disconnect()  # written at once: paho sends from the caller when no loop thread runs


def _count_messages(settings: BrokerSettings, topic: str, target: int, conn) -> None:
    """Child process body: subscribe, say ready, count `target` messages, send the time of the last one."""
    got = [0]
    finished = threading.Event()

    def on_message(_c, _u, _m) -> None:
        got[0] += 1
        if got[0] >= target:
            finished.set()

    client = make_client(settings, f"bench-count-{os.getpid()}")
    client.on_message = on_message
    connect_blocking(client, settings)
    client.subscribe(topic, qos=1)
    # Its own select() loop reading every packet that has arrived per wake-up: paho's loop_read() reads one
    # packet per call when nothing of ours is in flight (its max_packets argument is ignored), which would
    # make this "ceiling" slower than the gateway.
    sock = client.socket()
    ready_at = time.monotonic() + 0.3
    said_ready = False
    deadline = time.monotonic() + 300
    while not finished.is_set() and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock] if client.want_write() else [], [], 0.05)
        if readable:
            for _ in range(1000):
                before = got[0]
                client.loop_read()
                if got[0] == before:  # nothing more buffered (or a packet that was not a message)
                    break
        if writable or client.want_write():
            client.loop_write()
        client.loop_misc()
        if not said_ready and time.monotonic() >= ready_at:
            said_ready = True
            conn.send("ready")
    conn.send((time.time(), got[0]))
    client.disconnect()


class CountingSubscriber:
    """The ceiling: a paho subscriber that only counts (QoS 1, PUBACK by paho itself), in its own process
    like the gateway, so it does not share the publishers' interpreter."""

    def __init__(self, settings: BrokerSettings, topic: str, target: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_count_messages, args=(settings, topic, target, child), daemon=True)
        self.proc.start()
        if not self._conn.poll(30) or self._conn.recv() != "ready":
            raise RuntimeError("counting subscriber did not start")

    def finished(self) -> bool:
        return self._conn.poll()

    def result(self) -> tuple[float, int]:
        """(time.time() of the last message, messages counted)."""
        out = self._conn.recv()
        self.proc.join(10)
        return out
