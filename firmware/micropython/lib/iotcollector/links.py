"""Links from a collector to the gateway: MQTT through a ``umqtt.simple``-style client, or a serial line.

A link has ``connect(will, status)``, ``send_reading(payload)``, ``send_status(payload)``, ``poll()``
(the ack payloads received since the last call) and ``close()``. Sending raises OSError when the link
is broken; the collector then closes it and lets the LinkSupervisor pick the time of the next attempt.
"""

from iotcollector.protocol import FrameError, frame, parse_line, topic


def _as_oserror(fn, *args):
    """Call a client method; any failure becomes OSError. umqtt.simple reports a broken or confused
    connection with AssertionError, IndexError or MQTTException as well as OSError, and none of them may
    stop the collector's loop: they all mean "the link is down, reconnect later"."""
    try:
        return fn(*args)
    except OSError:
        raise
    except Exception as exc:
        raise OSError("mqtt client: %r" % (exc,))  # noqa: B904  (MicroPython warns on every chained raise)


class MqttLink:
    """MQTT over any client with the ``umqtt.simple.MQTTClient`` API, made fresh per connection by
    ``make_client()`` (umqtt.simple on a board, the paho adapter on a PC). Readings go out at QoS 1;
    the status is retained and is also the last will, with ``"state":"offline"``."""

    def __init__(self, make_client, prefix: str, site: str, dev: str, clock=None, keepalive_s: int = 0) -> None:
        # One factory, or one per broker: a connection attempt that fails moves to the next broker (wrapping
        # around), and the LinkSupervisor's backoff spaces the attempts, so a dead broker costs one failed
        # attempt before the next is tried. Every gateway serves every broker (docs/deployment.md).
        self.brokers = list(make_client) if isinstance(make_client, (list, tuple)) else [make_client]
        self.broker = 0  # index of the broker in use (or tried next)
        self.switches = 0
        self.reading_topic = topic(prefix, site, dev, "reading")
        self.status_topic = topic(prefix, site, dev, "status")
        self.ack_topic = topic(prefix, site, dev, "ack")
        self.client = None
        self._inbox = []
        # umqtt.simple sends no keepalive by itself: a node that publishes less often than the keepalive
        # (a standby node, a slow sample period) would be dropped by the broker after 1.5 x keepalive,
        # and its retained last will would flap the device offline. poll() pings after half of it.
        self.clock = clock
        self.ping_after_ms = keepalive_s * 500 if clock is not None else 0
        self._last_out = 0
        self.pings = 0

    def _sent(self) -> None:
        if self.clock is not None:
            self._last_out = self.clock.ticks_ms()

    def _on_message(self, msg_topic, msg) -> None:
        if isinstance(msg_topic, (bytes, bytearray)):
            msg_topic = bytes(msg_topic).decode()
        if msg_topic == self.ack_topic:
            self._inbox.append(bytes(msg))

    def connect(self, will: str, status: str) -> None:
        client = self.brokers[self.broker]()
        client.set_callback(self._on_message)
        client.set_last_will(self.status_topic.encode(), will.encode(), retain=True, qos=1)
        try:
            _as_oserror(client.connect)
            _as_oserror(client.subscribe, self.ack_topic.encode(), 1)
            _as_oserror(client.publish, self.status_topic.encode(), status.encode(), True, 1)
        except OSError:
            self._close(client)
            if len(self.brokers) > 1:
                self.broker = (self.broker + 1) % len(self.brokers)
                self.switches += 1
            raise
        self.client = client
        self._sent()

    def send_reading(self, payload: str) -> None:
        if self.client is None:
            raise OSError("link down")
        _as_oserror(self.client.publish, self.reading_topic.encode(), payload.encode(), False, 1)
        self._sent()

    def send_status(self, payload: str) -> None:
        if self.client is None:
            raise OSError("link down")
        _as_oserror(self.client.publish, self.status_topic.encode(), payload.encode(), True, 1)
        self._sent()

    def poll(self, max_messages: int = 8):
        """The ack payloads received since the last call. umqtt.simple's ``check_msg`` handles one message
        per call and returns None when there is none; a bounded number per poll keeps the loop responsive."""
        if self.client is not None:
            if self.ping_after_ms and self.clock.ticks_diff(self.clock.ticks_ms(), self._last_out) >= self.ping_after_ms:
                _as_oserror(self.client.ping)
                self.pings += 1
                self._sent()
            for _ in range(max_messages):
                if _as_oserror(self.client.check_msg) is None:
                    break
        inbox, self._inbox = self._inbox, []
        return inbox

    @staticmethod
    def _close(client) -> None:
        try:
            client.disconnect()
        except Exception:  # closing a broken socket may fail in any way; there is nothing left to do
            pass

    def close(self) -> None:
        if self.client is not None:
            self._close(self.client)
            self.client = None


class SerialLink:
    """Protocol v1 frames over a UART-like object (``write(bytes)``, ``read()`` returning bytes or None).

    Console text and broken frames from the gateway are ignored; only ``!A`` frames are acks."""

    def __init__(self, uart, max_line: int = 256) -> None:
        self.uart = uart
        self.max_line = max_line
        self._buf = b""

    def connect(self, will: str, status: str) -> None:
        self.send_status(status)

    def send_reading(self, payload: str) -> None:
        self.uart.write((frame("R", payload) + "\n").encode())

    def send_status(self, payload: str) -> None:
        self.uart.write((frame("S", payload) + "\n").encode())

    def poll(self):
        data = self.uart.read()
        if data:
            self._buf += data
        acks = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.max_line:  # a line that never ends is noise: drop it
                    self._buf = b""
                return acks
            line, self._buf = self._buf[:nl], self._buf[nl + 1:]
            try:
                parsed = parse_line(line)
            except (FrameError, UnicodeError):
                continue
            if parsed is not None and parsed[0] == "A":
                acks.append(parsed[1].encode())

    def close(self) -> None:
        pass
