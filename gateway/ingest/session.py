"""One MQTT 5 connection for the gateway's ingest: a lean subscriber written for the hot path.

Why not paho here (the simulator and the tools still use it): the ingest connection carries every reading, and
paho spends most of the gateway's CPU on it: it reads a packet's header a byte at a time and one packet per
loop pass, and every PUBACK sent from the spool writer thread costs a wake-up write plus its own send. This
connection reads everything the socket holds in one `recv` and splits it into packets, sends a whole group
commit's PUBACKs in one write, and sleeps in `select()` until the broker sends, another thread queues
something to send, or the keep-alive is due.

Threads: one thread (the ingest's) owns the socket and calls `pump()`; any thread may call `ack()` and
`publish()`, which queue bytes under a lock and wake that thread when it is asleep (a byte on a socket pair).
All socket I/O stays in the one thread, which TLS needs.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.ingest import wire
from gateway.mqttconn import BrokerSettings, MqttConnectError, explain_exception, explain_reason, tls_context

log = logging.getLogger(__name__)

RECV_BYTES = 256 * 1024  # one recv takes a burst's worth of ~150-byte PUBLISH packets


class ConnectionLost(ConnectionError):
    """The connection ended or broke; the message names why (for the log and /healthz)."""


def reason_name(packet_type: int, code: int) -> str:
    """The MQTT 5 name of a reason code ("Bad user name or password"), or its number when unknown."""
    try:
        return str(ReasonCode(packet_type, identifier=code))
    except Exception:  # a code the table does not know for this packet type
        return f"reason code 0x{code:02x}"


class MqttSession:
    """A connected MQTT 5 session: `open()`, then `subscribe()`, `pump()` in a loop, `close()`."""

    def __init__(self, settings: BrokerSettings, client_id: str, *, clean_start: bool = True,
                 inflight_limit: int = 0) -> None:
        self.settings, self.client_id, self.clean_start = settings, client_id, clean_start
        # Our QoS 1 publishes in flight: the broker's Receive Maximum, or `inflight_limit` when given. The ingest
        # gives its ack window (10,000) as paho did before: Mosquitto advertises 20 yet answers every publish at
        # once, and a window of 20 let the acks fall seconds behind under a backlog (see ACK_WINDOW in
        # gateway/ingest/mqtt.py). A broker that enforces its Receive Maximum would disconnect us (0x93).
        self.inflight_limit = inflight_limit
        self.keepalive = settings.keepalive
        self.session_present = False
        self._sock: socket.socket | None = None
        self._rest = b""  # the start of a packet not yet complete
        self._view = memoryview(bytearray(RECV_BYTES))
        self._early: list[wire.Message] = []  # messages that came with the CONNACK
        self._lock = threading.Lock()  # guards _out, _inflight, _waiting, _wake_sent
        self._out = bytearray()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_sent = False
        self._io_thread: int | None = None
        # Our own QoS 1 publishes (end-to-end acks): at most the broker's Receive Maximum in flight, the rest
        # wait here in order. They are not resent after a reconnect: an end-to-end ack is cumulative and the next
        # commit of the stream, or the collector's resend, brings a newer one.
        self._quota = 65535
        self._inflight: set[int] = set()
        self._waiting: deque[tuple[str, bytes]] = deque()
        self._next_id = 0
        self._sub_id = 0
        self._subscriptions: dict[int, list[str]] = {}
        now = time.monotonic()
        self._sent_at = self._heard_at = now
        self._ping_at: float | None = None
        self.closed = False

    # --- connecting -------------------------------------------------------------------------------
    def open(self, timeout: float = 10.0) -> None:
        """Connect, send CONNECT and wait for the CONNACK; MqttConnectError naming the cause otherwise."""
        s = self.settings
        try:
            sock = socket.create_connection((s.host, s.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if s.tls_ca:
                sock = tls_context(s).wrap_socket(sock, server_hostname=s.host)
        except Exception as exc:
            self.close(graceful=False)
            raise MqttConnectError(explain_exception(s, exc)) from exc
        self._sock = sock
        try:
            sock.sendall(wire.connect(self.client_id, keepalive=s.keepalive, clean_start=self.clean_start,
                                      session_expiry=s.session_expiry, receive_maximum=s.receive_maximum,
                                      username=s.user, password=s.password))
            packets = self._read_connack(sock, time.monotonic() + timeout)
        except MqttConnectError:
            self.close(graceful=False)
            raise
        except (OSError, wire.MalformedPacket) as exc:
            self.close(graceful=False)
            raise MqttConnectError(f"{s.url}: connection lost during handshake ({exc})") from exc
        first = packets[0]
        if not isinstance(first, wire.Packet) or first.kind != wire.CONNACK:
            self.close(graceful=False)
            raise MqttConnectError(f"{s.url}: the broker answered CONNECT with something else than a CONNACK")
        present, code, props = wire.connack(first.body)
        if code >= 0x80:
            self.close(graceful=False)
            raise MqttConnectError(explain_reason(s, reason_name(PacketTypes.CONNACK, code)))
        self.session_present = present
        self._quota = self.inflight_limit or int(props.get(wire.RECEIVE_MAXIMUM, 65535))  # type: ignore[call-overload]
        if wire.SERVER_KEEP_ALIVE in props:  # the broker may shorten (or lengthen) our keep-alive
            self.keepalive = int(props[wire.SERVER_KEEP_ALIVE])  # type: ignore[call-overload]
        sock.setblocking(False)
        now = time.monotonic()
        self._sent_at = self._heard_at = now
        self._handle(packets[1:], self._early)

    def _read_connack(self, sock: socket.socket, deadline: float) -> list[wire.Message | wire.Packet]:
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MqttConnectError(f"{self.settings.url}: no CONNACK within the connect timeout")
            sock.settimeout(left)
            try:
                chunk = sock.recv(RECV_BYTES)
            except TimeoutError:
                continue
            if not chunk:
                raise MqttConnectError(f"{self.settings.url}: the broker closed the connection before its CONNACK")
            packets, data = wire.split(data + chunk)
            if packets:
                self._rest = data
                return packets

    def subscribe(self, topics: list[tuple[str, int]]) -> None:
        """Queue a SUBSCRIBE; a refused filter (SUBACK reason ≥ 0x80) is logged naming the filter and why."""
        self._sub_id = self._sub_id % 0xFFFF + 1
        self._subscriptions[self._sub_id] = [t for t, _ in topics]
        self._queue(wire.subscribe(self._sub_id, topics))

    # --- other threads ----------------------------------------------------------------------------
    def ack(self, mids: Iterable[int]) -> None:
        """PUBACK these QoS 1 packet ids, in one write (any thread; dropped once the session is closed)."""
        mids = list(mids)
        if mids:
            self._queue(wire.pubacks(mids))

    def publish_room(self) -> int:
        """How many QoS 1 publishes may go out now: the broker's Receive Maximum less those it has not PUBACKed."""
        with self._lock:
            return max(0, self._quota - len(self._inflight) - len(self._waiting))

    def in_flight(self) -> int:
        """Our QoS 1 publishes the broker has not PUBACKed yet (sent or waiting to be sent)."""
        with self._lock:
            return len(self._inflight) + len(self._waiting)

    def publish(self, topic: str, payload: bytes | str) -> None:
        """Publish at QoS 1 (any thread); beyond `publish_room()` it waits here in order for PUBACKs (callers that
        would rather coalesce check the room first)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        with self._lock:
            if self.closed:
                return
            if len(self._inflight) < self._quota and not self._waiting:
                self._out += self._publish_packet(topic, payload)
                self._wake_locked()
            else:
                self._waiting.append((topic, payload))

    def _publish_packet(self, topic: str, payload: bytes) -> bytes:
        """Called with the lock held."""
        while True:
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self._inflight:
                break
        self._inflight.add(self._next_id)
        return wire.publish(topic, payload, qos=1, packet_id=self._next_id)

    def _queue(self, data: bytes) -> None:
        with self._lock:
            if self.closed:
                return
            self._out += data
            self._wake_locked()

    def _wake_locked(self) -> None:
        if self._wake_sent or threading.get_ident() == self._io_thread:
            return  # already woken, or the I/O thread itself (it sends before it sleeps again)
        self._wake_sent = True
        try:
            self._wake_w.send(b"\x00")
        except OSError:  # the pair is full (already woken) or closed (the session is closing)
            pass

    def wake(self) -> None:
        """Make `pump()` return now (another thread has something for the ingest loop to do)."""
        with self._lock:
            if not self.closed:
                self._wake_locked()

    # --- the I/O thread ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Send what is queued without reading anything (the I/O thread only; `pump()` does this every pass)."""
        self._io_thread = threading.get_ident()
        if self._sock is None or self.closed:
            raise ConnectionLost("not connected")
        self._flush(self._sock)

    def pump(self, timeout: float) -> list[wire.Message]:
        """Wait up to `timeout` s (less when the keep-alive is due), send what is queued, read what arrived.

        Returns the PUBLISH messages received; raises ConnectionLost when the connection ends."""
        self._io_thread = threading.get_ident()
        sock = self._sock
        if sock is None or self.closed:
            raise ConnectionLost("not connected")
        if self._early:
            early, self._early = self._early, []
            return early
        now = time.monotonic()
        wait = max(0.0, min(timeout, self._keepalive_due(now) - now))
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            wait = 0.0  # decrypted bytes are already buffered inside the TLS layer
        try:
            readable, writable, _ = select.select([sock, self._wake_r], [sock] if self._out else [], [], wait)
        except (OSError, ValueError) as exc:
            raise ConnectionLost(f"socket error: {exc}") from exc
        if self._wake_r in readable:
            try:
                self._wake_r.recv(4096)
            except OSError:  # nothing left to read: another wake-up was already taken
                pass
            with self._lock:
                self._wake_sent = False
        messages: list[wire.Message] = []
        if sock in readable or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            self._read(sock, messages)
        self._flush(sock)
        self._keepalive(time.monotonic())
        return messages

    def _read(self, sock: socket.socket, messages: list[wire.Message]) -> None:
        view = self._view
        try:
            # Into a buffer kept for the session: a fresh 256 KiB bytes object per recv would be mapped,
            # shrunk and unmapped by the allocator every time (three syscalls and page faults per wake-up).
            n = sock.recv_into(view)
            data = bytes(view[:n])
            if isinstance(sock, ssl.SSLSocket):
                while sock.pending():
                    n = sock.recv_into(view)
                    data += view[:n]
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            raise ConnectionLost(f"read failed: {exc}") from exc
        if not data:
            raise ConnectionLost("the broker closed the connection")
        self._heard_at = time.monotonic()
        self._ping_at = None  # anything from the broker shows it is alive
        try:
            packets, self._rest = wire.split(self._rest + data if self._rest else data)
        except wire.MalformedPacket as exc:
            raise ConnectionLost(f"malformed packet from the broker: {exc}") from exc
        self._handle(packets, messages)

    def _handle(self, packets: list[wire.Message | wire.Packet], messages: list[wire.Message]) -> None:
        for p in packets:
            if type(p) is wire.Message:
                messages.append(p)
                continue
            kind = p.kind  # type: ignore[union-attr]
            try:
                if kind == wire.PUBACK:
                    self._published(wire.puback_id(p.body))  # type: ignore[union-attr]
                elif kind == wire.SUBACK:
                    self._subscribed(*wire.suback(p.body))  # type: ignore[union-attr]
                elif kind == wire.DISCONNECT:
                    code, why = wire.disconnect_reason(p.body)  # type: ignore[union-attr]
                    raise ConnectionLost("the broker disconnected us: " + reason_name(PacketTypes.DISCONNECT, code)
                                         + (f" ({why})" if why else ""))
                elif kind in (wire.CONNACK, wire.AUTH):
                    raise ConnectionLost(f"unexpected packet type {kind} from the broker")
                # PINGRESP: the broker is alive (noted in _read)
            except wire.MalformedPacket as exc:
                raise ConnectionLost(f"malformed packet from the broker: {exc}") from exc

    def _published(self, packet_id: int) -> None:
        with self._lock:
            self._inflight.discard(packet_id)
            while self._waiting and len(self._inflight) < self._quota:
                self._out += self._publish_packet(*self._waiting.popleft())

    def _subscribed(self, packet_id: int, codes: list[int]) -> None:
        topics = self._subscriptions.pop(packet_id, [])
        for topic, code in zip(topics, codes, strict=False):
            if code >= 0x80:
                log.error("MQTT: %s refused the subscription to %r: %s", self.settings.url, topic,
                          reason_name(PacketTypes.SUBACK, code))

    def _flush(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._out:
                return
            data = bytes(self._out)
            self._out.clear()
        try:
            sent = sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            raise ConnectionLost(f"write failed: {exc}") from exc
        if sent < len(data):  # the rest goes first next time (select waits until the socket takes more)
            with self._lock:
                self._out[0:0] = data[sent:]
        self._sent_at = time.monotonic()

    def _keepalive_due(self, now: float) -> float:
        if not self.keepalive:
            return now + 3600.0
        if self._ping_at is not None:
            return self._ping_at + self.keepalive  # the answer is overdue then
        return min(self._sent_at, self._heard_at) + self.keepalive

    def _keepalive(self, now: float) -> None:
        """PINGREQ when nothing was sent or heard for a keep-alive period; lost when it stays unanswered."""
        if not self.keepalive or now < self._keepalive_due(now):
            return
        if self._ping_at is not None:
            raise ConnectionLost(f"no answer from the broker for {now - self._heard_at:.0f} s (keep-alive)")
        self._ping_at = now
        with self._lock:
            self._out += wire.PINGREQ_PACKET
        assert self._sock is not None
        self._flush(self._sock)

    def close(self, graceful: bool = True) -> None:
        """End the session: DISCONNECT first when `graceful` (the broker keeps a session with an expiry)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            pending = bytes(self._out) if graceful else b""
            self._out.clear()
        sock, self._sock = self._sock, None
        if sock is not None:
            if graceful:
                try:
                    sock.settimeout(2.0)
                    sock.sendall(pending + wire.DISCONNECT_PACKET)
                except OSError:  # the connection is already gone
                    pass
            try:
                sock.close()
            except OSError:
                pass
        self._wake_r.close()
        self._wake_w.close()
