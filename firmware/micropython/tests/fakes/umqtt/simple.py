"""Fake ``umqtt.simple`` for tests: the same MQTTClient API, talking to an in-memory broker.

``BROKER`` is the module's broker; tests reset it with ``reset()``, take it down with ``BROKER.down()``
(every client's next call raises OSError, wills are published), and read what was published from
``BROKER.log``. Delivery to subscribers happens in ``check_msg()``, as umqtt.simple does it.
"""


class MQTTException(Exception):
    pass


def _text(value):
    return bytes(value).decode() if isinstance(value, (bytes, bytearray)) else value


def _matches(pattern, topic):
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


class Broker:
    def __init__(self):
        self.up = True
        self.clients = []
        self.log = []  # (topic, payload str, qos, retain) in publish order
        self.retained = {}
        self.drop_next = 0  # lose this many of the next publishes after acknowledging them (a broker crash)
        # keepalive, as Mosquitto enforces it: with ``clock`` set (a callable giving ms), a client that sent
        # nothing for 1.5 x its keepalive is dropped and its will published
        self.clock = None
        self.pings = []  # (client_id, ms)
        self.connects = 0

    def expire(self):
        if self.clock is None:
            return
        now = self.clock()
        for c in list(self.clients):
            if c.keepalive and now - c.last_in > 1.5 * c.keepalive * 1000:
                self.clients.remove(c)
                c.broken = True
                if c.will is not None:
                    self.publish(c.will[0], c.will[1], c.will[3], c.will[2])

    def down(self):
        self.up = False
        for c in self.clients:
            if c.will is not None:
                self.publish(c.will[0], c.will[1], c.will[3], c.will[2])
            c.broken = True
        self.clients = []

    def restart(self):
        self.up = True

    def publish(self, topic, payload, qos=0, retain=False):
        if self.drop_next:
            self.drop_next -= 1
            return
        self.log.append((topic, payload, qos, retain))
        if retain:
            self.retained[topic] = payload
        for c in self.clients:
            for pattern, _ in c.subs:
                if _matches(pattern, topic):
                    c.inbox.append((topic, payload))
                    break

    def published(self, kind):
        """Payloads published on topics ending with ``/kind``."""
        return [p for (t, p, q, r) in self.log if t.endswith("/" + kind)]


BROKER = Broker()
BROKERS = {}  # more brokers by server name (add_broker); any other name reaches BROKER


def reset():
    global BROKER
    BROKER = Broker()
    BROKERS.clear()
    return BROKER


def add_broker(server):
    """Another independent broker, reached by clients made with ``server`` as their host."""
    BROKERS[server] = Broker()
    return BROKERS[server]


class FakeSocket:
    """Records the socket settings umqtt.simple changes (blocking, timeout)."""

    def __init__(self):
        self.timeout = None  # None: blocking without timeout; 0: non-blocking

    def settimeout(self, value):
        self.timeout = value

    def setblocking(self, flag):
        self.timeout = None if flag else 0


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.ssl = ssl
        self.keepalive = keepalive
        self.cb = None
        self.will = None
        self.subs = []
        self.inbox = []
        self.broken = False
        self.connected = False
        self.broker = None
        self.sock = None

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.will = (_text(topic), _text(msg), retain, qos)

    def _check(self):
        if self.broker is not None:
            self.broker.expire()
        if self.broken or not self.connected or not self.broker.up:
            raise OSError(104)  # ECONNRESET, what a dead socket gives

    def _packet_in(self):
        """The broker got a packet from this client: its keepalive starts again."""
        if self.broker.clock is not None:
            self.last_in = self.broker.clock()

    def connect(self, clean_session=True, timeout=None):
        self.broker = BROKERS.get(self.server, BROKER)
        if not self.broker.up:
            raise OSError(111)  # ECONNREFUSED
        self.connected = True
        self.broken = False
        self.sock = FakeSocket()
        self.broker.clients.append(self)
        self.broker.connects += 1
        self.last_in = 0
        self._packet_in()
        return 0

    def disconnect(self):
        if self.broker is not None and self in self.broker.clients:
            self.broker.clients.remove(self)  # a clean disconnect: no will
        self.connected = False

    def subscribe(self, topic, qos=0):
        self._check()
        self._packet_in()
        self.subs.append((_text(topic), qos))

    def publish(self, topic, msg, retain=False, qos=0):
        self._check()
        self._packet_in()
        self.broker.publish(_text(topic), _text(msg), qos, retain)

    def check_msg(self):
        self._check()
        self.sock.setblocking(False)
        return self.wait_msg()

    def wait_msg(self):
        """One message per call, like umqtt.simple (which also leaves the socket blocking afterwards)."""
        self._check()
        self.sock.setblocking(True)
        if not self.inbox:
            return None
        topic, payload = self.inbox.pop(0)
        self.cb(topic.encode(), payload.encode())
        return 0x30

    def ping(self):
        self._check()
        self._packet_in()
        self.broker.pings.append((self.client_id, self.broker.clock() if self.broker.clock else None))
