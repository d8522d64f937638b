"""Load generation and process accounting shared by the ingest benchmarks.

`Publishers` drives N paho publisher connections (one per collector) from one select() loop: protocol-v1
readings (about 110 bytes) at QoS 1 on a schedule, optionally following the end-to-end acks to measure the ack
latency of every reading.

`RawPublishers` and `RawCountingSubscriber` are the ingest ceiling: plain sockets and pre-encoded MQTT 5
packets, so almost nothing but the broker limits them. Python publishers built on paho cost ~100 µs per
message and a paho subscriber about as much: with those, the "ceiling" was slower than the gateway and
measured the load generator. `RawPublishers.burst` writes each connection's pre-encoded PUBLISH packets as
fast as its socket takes them and counts the PUBACKs (and, when asked, follows the end-to-end acks).

`proc_sample` reads a process's CPU time, RSS and disk writes from /proc.
"""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gateway.ingest import wire
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


def median(values: list[float]) -> float:
    """The middle value (the upper middle of an even count): the figure the benches report over rounds."""
    return sorted(values)[len(values) // 2]


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


# --- the ceiling: raw sockets, pre-encoded packets -------------------------------------------------------
def raw_connect(settings: BrokerSettings, client_id: str, *, receive_maximum: int = 0,
                subscribe: tuple[str, int] | None = None, timeout: float = 10.0) -> socket.socket:
    """A plain-socket MQTT 5 connection (clean start), CONNACK checked, optionally subscribed (SUBACK
    awaited); returned non-blocking."""
    sock = socket.create_connection((settings.host, settings.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(wire.connect(client_id, keepalive=120, clean_start=True, receive_maximum=receive_maximum))
    want = [wire.CONNACK]
    if subscribe is not None:
        sock.sendall(wire.subscribe(1, [subscribe]))
        want.append(wire.SUBACK)
    data = b""
    while want:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"{settings.url}: closed during the handshake")
        packets, data = wire.split(data + chunk)
        for p in packets:
            if isinstance(p, wire.Packet) and want and p.kind == want[0]:
                if p.kind == wire.CONNACK and wire.connack(p.body)[1] >= 0x80:
                    raise ConnectionError(f"{settings.url}: CONNACK refused ({wire.connack(p.body)[1]:#x})")
                want.pop(0)
    sock.setblocking(False)
    return sock


def scan_publishes(data: bytes) -> tuple[list[int], bytes]:
    """The packet ids of the QoS 1 PUBLISH packets at the start of `data` (fixed headers only, nothing decoded)
    and the bytes of an incomplete packet left over: the least work a counting subscriber can do."""
    mids: list[int] = []
    pos, end = 0, len(data)
    while end - pos >= 2:
        first = data[pos]
        length, shift, i = 0, 0, pos + 1
        while True:
            if i >= end:
                return mids, data[pos:]
            b = data[i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
        stop = i + length
        if stop > end:
            break
        if first >> 4 == wire.PUBLISH and first & 0x06:
            p = i + 2 + ((data[i] << 8) | data[i + 1])
            mids.append((data[p] << 8) | data[p + 1])
        pos = stop
    return mids, data[pos:]


@dataclass
class _RawConn:
    device: str
    sock: socket.socket
    out: bytes = b""
    offset: int = 0
    ends: list[int] = field(default_factory=list)  # end offset in `out` of each packet, by seq
    written: int = 0  # packets completely written
    sent_at: list[float] = field(default_factory=list)  # when packet seq was completely written
    rest: bytes = b""
    pubacks: int = 0
    upto: int = -1


class RawPublishers:
    """N plain-socket MQTT 5 publishers in one select() loop: QoS 1 protocol-v1 readings, pre-encoded."""

    def __init__(self, settings: BrokerSettings, *, connections: int, prefix: str, site: str, boot: int,
                 follow_acks: bool, name: str = "raw") -> None:
        self.prefix, self.site, self.boot, self.follow_acks = prefix, site, boot, follow_acks
        self.latencies: list[float] = []
        self.acked = 0
        self.conns: list[_RawConn] = []
        for i in range(connections):
            device = f"{name}-{i:03d}"
            # End-to-end acks at QoS 0: nothing to acknowledge back, so the loop only counts.
            sub = (f"{prefix}/{site}/{device}/ack", 0) if follow_acks else None
            self.conns.append(_RawConn(device, raw_connect(settings, f"{name}-{boot}-{i}", subscribe=sub)))
        self._by_sock = {c.sock: c for c in self.conns}

    @property
    def pubacks(self) -> int:
        return sum(c.pubacks for c in self.conns)

    def _prepare(self, per: int) -> None:
        now_ms = int(time.time() * 1000)
        for c in self.conns:
            topic = f"{self.prefix}/{self.site}/{c.device}/reading"
            packets = [wire.publish(topic, encode_reading(c.device, "a", self.boot, seq, now_ms, "rtc",
                                                          round(20 + (seq % 1000) / 100, 2), "C").encode(),
                                    qos=1, packet_id=seq % 0xFFFF + 1) for seq in range(per)]
            c.out, c.offset, c.written = b"".join(packets), 0, 0
            c.ends, pos = [], 0
            for p in packets:
                pos += len(p)
                c.ends.append(pos)
            c.sent_at = [0.0] * per

    def burst(self, total: int, deadline_s: float = 300) -> float:
        """Write `total` readings (split over the connections) as fast as the sockets take them; seconds until
        every PUBACK came (and every end-to-end ack, when following them) or the deadline."""
        per = total // len(self.conns)
        self._prepare(per)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        started = time.monotonic()
        end = started + deadline_s
        while time.monotonic() < end:
            if all(c.pubacks >= per and (not self.follow_acks or c.upto >= per - 1) for c in self.conns):
                break
            socks = list(self._by_sock)
            writing = [c.sock for c in self.conns if c.offset < len(c.out)]
            readable, writable, _ = select.select(socks, writing, [], 0.05)
            for s in writable:
                c = self._by_sock[s]
                try:
                    c.offset += s.send(memoryview(c.out)[c.offset:c.offset + 262144])
                except BlockingIOError:
                    continue
                now = time.monotonic()
                while c.written < per and c.ends[c.written] <= c.offset:
                    c.sent_at[c.written] = now
                    c.written += 1
            for s in readable:
                c = self._by_sock[s]
                n = s.recv_into(view)
                if not n:
                    raise ConnectionError(f"broker closed the connection of {c.device}")
                self._received(c, c.rest + bytes(view[:n]))
        return time.monotonic() - started

    def _received(self, c: _RawConn, data: bytes) -> None:
        packets, c.rest = wire.split(data)
        now = time.monotonic()
        for p in packets:
            if isinstance(p, wire.Packet):
                c.pubacks += p.kind == wire.PUBACK
                continue
            ack = parse_ack(p.payload)
            if ack.boot != self.boot or ack.upto <= c.upto:
                continue
            for seq in range(c.upto + 1, min(ack.upto, len(c.sent_at) - 1) + 1):
                self.latencies.append(now - c.sent_at[seq])
                self.acked += 1
            c.upto = ack.upto

    def close(self) -> None:
        for c in self.conns:
            try:
                c.sock.setblocking(True)
                c.sock.sendall(wire.DISCONNECT_PACKET)
            except OSError:  # already gone
                pass
            c.sock.close()


def _raw_count(settings: BrokerSettings, topic: str, target: int, window: int, conn) -> None:
    """Child process body: subscribe at QoS 1, say ready, count `target` messages PUBACKing each read's
    messages in one write, send the time of the last one."""
    sock = raw_connect(settings, f"bench-rawcount-{os.getpid()}", receive_maximum=window, subscribe=(topic, 1))
    sock.setblocking(True)
    sock.settimeout(1.0)
    conn.send("ready")
    got, rest = 0, b""
    view = memoryview(bytearray(1 << 20))
    deadline = time.monotonic() + 300
    while got < target and time.monotonic() < deadline:
        try:
            n = sock.recv_into(view)
        except TimeoutError:
            continue
        if not n:
            break
        mids, rest = scan_publishes(rest + bytes(view[:n]))
        if mids:
            got += len(mids)
            sock.sendall(wire.pubacks(mids))
    conn.send((time.time(), got))
    sock.close()


class RawCountingSubscriber:
    """The ceiling's subscriber: a plain-socket MQTT 5 client that only counts QoS 1 messages and PUBACKs them
    (one write per read), in its own process like the gateway, with the gateway's receive maximum."""

    def __init__(self, settings: BrokerSettings, topic: str, target: int, window: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_raw_count, args=(settings, topic, target, window, child), daemon=True)
        self.proc.start()
        if not self._conn.poll(30) or self._conn.recv() != "ready":
            raise RuntimeError("raw counting subscriber did not start")

    def result(self) -> tuple[float, int]:
        """(time.time() of the last message, messages counted)."""
        out = self._conn.recv()
        self.proc.join(10)
        return out
