"""MQTT ingest: QoS 1, persistent MQTT 5 session, manual acks after the spool commit, end-to-end acks.

The connection is `gateway.ingest.session.MqttSession` (a lean MQTT 5 subscriber: see there why not paho), driven
by this thread, so backpressure is exact: when the spool is full we disconnect and stay away; the broker keeps
our session's messages until we come back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway import crashpoints
from gateway.backoff import reconnect_backoff
from gateway.device_status import StatusBook, parse_status
from gateway.ingest.session import ConnectionLost, MqttSession
from gateway.ingest.wire import Message
from gateway.mqttconn import BrokerSettings, MqttConnectError
from gateway.protocol import Ack, Rejected, identity_of, parse_reading, parse_topic
from gateway.spool import Entry, Quarantined, Spool, SpoolWriter, quarantined

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"

# With nothing to do the loop still passes this often (to see a stop or a full spool); the connection itself
# sleeps in select() until the broker sends, a commit queues PUBACKs, or the keep-alive is due.
IDLE_PASS_S = 0.25
# At a steady trickle of a few hundred readings/s every reading would wake this thread on its own, and a cold
# wake-up costs several times the reading's own work: reads are paced then (see ReadPacer).
READ_GAP_S = 0.1
PACE_ABOVE_PER_S = 100
PACED_BELOW = 64
BURST_ABOVE_PER_S = 5000
BURST_MIN_READ = 8
# End-to-end acks awaiting the broker's PUBACK. Those PUBACKs reach us behind every reading the broker has already
# pushed into our socket (up to the receive maximum, 65535 by default): under a backlog each takes as long as we
# need to read that far, seconds. The window must cover the acks sent meanwhile (a stream's newest ack every
# ack interval), or acks queue behind it and reach the collectors late, whose resend timers then expire. The
# broker answers each at once (its receive quota for our publishes is not held by our unread PUBACKs), and it
# stays far below the 65,535 packet ids.
ACK_WINDOW = 10_000


def subscription_topics(prefix: str, share_group: str = "") -> list[str]:
    """The reading and status filters; in an MQTT 5 shared subscription group (`$share/<group>/...`) when
    several gateways split a broker's messages between them (each message goes to one member)."""
    topics = [f"{prefix}/+/+/reading", f"{prefix}/+/+/status"]
    return [f"$share/{share_group}/{t}" for t in topics] if share_group else topics

log = logging.getLogger(__name__)


class ReadPacer:
    """When the ingest loop should read next: at once, or READ_GAP_S after the last read (a trickle).

    When a read brought only a few messages (under PACED_BELOW) but at more than PACE_ABOVE_PER_S (counted over
    the time since the read before), the next read waits until READ_GAP_S after it, so one wake-up takes what
    arrived meanwhile (about 30 readings at 300/s; at 300/s 100 ms saved ~0.1 CPU-s per 10,000 readings over
    50 ms). That adds at most READ_GAP_S to a reading's ack latency, far inside a collector's ack timeout.
    Slower rates are read at once (pacing them saves little CPU and made the group commits there write more),
    and so is a burst: reads of PACED_BELOW messages or more, and for READ_GAP_S after any read of at least
    BURST_MIN_READ messages at more than BURST_ABOVE_PER_S. A burst begins with a few small reads in quick
    succession while the broker starts writing into our socket, and the broker pauses now and then; pacing
    such a read held the whole burst back by READ_GAP_S. A large read counts as a burst too."""

    def __init__(self) -> None:
        self.last_read = self.read_before = 0.0
        self.last_count = 0
        self.burst_at = float("-inf")

    def read(self, count: int, now: float) -> None:
        """A read brought `count` messages (0: nothing) at time `now` (monotonic seconds)."""
        self.last_count = count
        if not count:
            return
        if count >= PACED_BELOW or (count >= BURST_MIN_READ and count > BURST_ABOVE_PER_S * (now - self.last_read)):
            self.burst_at = now
        self.read_before, self.last_read = self.last_read, now

    def wait_s(self, now: float) -> float:
        """Seconds to wait before the next read (0: read now)."""
        n = self.last_count
        if not 0 < n < PACED_BELOW or n <= PACE_ABOVE_PER_S * (self.last_read - self.read_before):
            return 0.0
        if now - self.burst_at <= READ_GAP_S:
            return 0.0
        return max(0.0, READ_GAP_S - (now - self.last_read))


class MqttIngest(threading.Thread):
    """Subscribes to `<prefix>/+/+/reading` and `…/status`, feeds the spool writer, publishes acks."""

    def __init__(self, settings: BrokerSettings, *, client_id: str, prefix: str, spool: Spool,
                 writer: SpoolWriter, on_received: Callable[[str, int, list[str]], None] | None = None,
                 clock: Callable[[], float] = time.time, ack_interval_s: float = 0.05,
                 statuses: StatusBook | None = None,
                 on_broker_dropped: Callable[[int], None] | None = None) -> None:
        super().__init__(name="mqtt-ingest", daemon=True)
        self.settings, self.prefix = settings, prefix
        self.client_id = client_id
        self.spool, self.writer = spool, writer
        # on_received(source, count, reasons): `count` messages handed to the spool writer, `reasons` those of
        # the quarantined ones among them (once per read: the metrics are not touched per message).
        self.on_received = on_received
        self.clock = clock
        self.session: MqttSession | None = None  # the open connection (None while disconnected)
        self._halt = threading.Event()
        self.reconnect = reconnect_backoff()
        self.connected = False
        self.last_error = ""
        self.statuses = statuses if statuses is not None else StatusBook()
        # `$SYS/broker/publish/messages/dropped`: the broker's count of messages it threw away (queue limits);
        # on_broker_dropped(value) is told every value (see gateway.service for what follows).
        self.on_broker_dropped = on_broker_dropped
        self.error: BaseException | None = None  # set when the thread died of an unexpected exception
        self._internal_errors_logged: set[str] = set()
        # End-to-end acks are cumulative, so per stream only the newest matters: they are sent at most every
        # ack_interval_s (far below a collector's ack timeout), which spares the broker and the collectors
        # one ack per group commit per stream under load. Acks queued while disconnected go out after the
        # reconnect.
        self.ack_interval_s = ack_interval_s
        self._acks: dict[tuple[str, str, str, int], Ack] = {}
        self._acks_lock = threading.Lock()
        self._acks_due = 0.0
        # Acks handed to the session and not yet PUBACKed: at most ack_window (ACK_WINDOW) and the broker's
        # Receive Maximum. Acks beyond the window would wait in a FIFO and go out stale; they wait here instead,
        # where a newer ack replaces an older one for the same stream, so every ack that goes out carries its
        # stream's newest `upto`.
        self.ack_window = ACK_WINDOW
        # With `[ack] after` = database/replica (gateway.acks.AckGate) the end-to-end acks wait for the database:
        # each message's stream and seq are noted here until its spool commit, then handed to the gate.
        self.ack_gate = None
        self._wanted: dict[object, tuple[str, tuple[str, str, int], int, bool]] = {}
        # `mqtt.share_group`: subscribe in a shared group. Members start clean, with the session expiry the
        # service gives them (0): Mosquitto keeps queueing a member's share for as long as its session lasts,
        # even while that member is dead, so a persistent session would hold a dead gateway's share of the
        # readings until it expired. Without a session the broker gives everything to the live members; what
        # was in flight to a dead one and not PUBACKed is resent by the collectors (no end-to-end ack came).
        self.share_group = ""

    # --- network loop ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the service's watchdog sees the dead thread and this reason
            log.exception("MQTT ingest failed")
            self.error = exc
            raise
        finally:
            if self.session is not None:
                self.session.close(graceful=not self.error)
                self.session = None

    def _run(self) -> None:
        pacer = ReadPacer()
        while not self._halt.is_set():
            crashpoints.fault("mqtt.loop")
            if self.spool.full:
                self._pause_for_backpressure()
                continue
            session = self.session
            if session is None:
                session = self._connect()
                if session is None:
                    continue
            gap = pacer.wait_s(time.monotonic())
            if gap > 0:
                self._halt.wait(gap)
            with self._acks_lock:
                # Acks waiting for window room are sent after the PUBACKs that make room (pump returns on them).
                ready = self._acks and session.publish_room() > 0 and session.in_flight() < self.ack_window
                wait = max(0.0, self._acks_due - time.monotonic()) if ready else IDLE_PASS_S
            try:
                messages = session.pump(wait)
            except ConnectionLost as exc:
                self._lost(str(exc))
                continue
            pacer.read(len(messages), time.monotonic())
            if messages:
                self._take(session, messages)
            if self._acks and time.monotonic() >= self._acks_due:
                self._publish_acks()

    def _connect(self) -> MqttSession | None:
        session = MqttSession(self.settings, self.client_id, clean_start=bool(self.share_group),
                              inflight_limit=self.ack_window)
        try:
            session.open()
        except MqttConnectError as exc:
            if str(exc) != self.last_error:
                log.error("MQTT: %s", exc)
            self.last_error = str(exc)
            self._halt.wait(self.reconnect.next_delay())
            return None
        self.reconnect.reset()
        self.session = session
        self.connected, self.last_error = True, ""
        topics = [(t, 1) for t in subscription_topics(self.prefix, self.share_group)]
        session.subscribe([*topics, (DROPPED_TOPIC, 0)])
        log.info("MQTT: connected to %s, subscribed to %s", self.settings.url, ", ".join(t for t, _ in topics))
        return session

    def _pause_for_backpressure(self) -> None:
        if self.session is not None:
            log.warning("MQTT: spool full, disconnecting; the broker keeps our session's messages")
            self.session.close()
            self.session = None
            self.connected = False
        with self.spool.full_changed:
            self.spool.full_changed.wait_for(lambda: not self.spool.full or self._halt.is_set(), timeout=1.0)

    def _lost(self, why: str) -> None:
        if self.connected:
            log.warning("MQTT: connection lost (%s); reconnecting", why)
        self.connected = False
        self.last_error = why
        if self.session is not None:
            self.session.close(graceful=False)
            self.session = None

    def stop(self) -> None:
        self._halt.set()
        session = self.session
        if session is not None:
            session.wake()

    # --- messages -------------------------------------------------------------------------------
    def _take(self, session: MqttSession, messages: list[Message]) -> None:
        """Hand one read's messages to the spool writer in one call, in order.

        Every message ends stored, quarantined or refused: nothing raised by one message may stop the network
        loop or the messages behind it."""
        received_ms = int(self.clock() * 1000)  # one read: the same arrival time for all of its messages
        entries: list[Entry] = []
        reasons: list[str] = []
        for msg in messages:
            try:
                if msg.topic == DROPPED_TOPIC:
                    self._broker_dropped(msg.payload)
                    continue
                entry = self._entry(session, msg, received_ms)
            except Exception as exc:  # a bug met by one message: quarantine it, never stop ingest
                entry = self._internal_error(session, msg, exc)
            if entry is None:
                continue
            if type(entry.item) is Quarantined:
                reasons.append(entry.item.reason)
            entries.append(entry)
        if self.on_received and entries:
            self.on_received("mqtt", len(entries), reasons)
        self.writer.submit_all(entries)

    def _entry(self, session: MqttSession, msg: Message, received_ms: int) -> Entry | None:
        """The spool entry for one message (None for a status: recorded and PUBACKed here)."""
        crashpoints.fault("mqtt.message")
        # The PUBACK goes on the connection the message came in on, or nowhere: a packet id means nothing to
        # a later connection (the broker redelivers what this one did not acknowledge).
        ref = (session, msg.mid, msg.qos)
        device = None
        try:
            site, device, kind = parse_topic(msg.topic, self.prefix)
            if kind == "status" and not msg.payload:
                # An empty retained message is how MQTT clears a retained status (a device taken out of
                # service): nothing to record and nothing wrong.
                if msg.qos:
                    session.ack([msg.mid])
                return None
            if kind == "status":
                status = parse_status(msg.payload, site=site, received_ms=received_ms, topic_device=device)
                if self.statuses.update(status):
                    log.info("status %s/%s/%s: %s", site, device, status.node, status.state)
                if msg.qos:
                    session.ack([msg.mid])
                return None
            if kind != "reading":
                raise Rejected("bad_topic", detail=f"bad_topic: {msg.topic[:200]!r}")
            item = parse_reading(msg.payload, site=site, received_ms=received_ms, topic_device=device)
        except Rejected as rej:
            site = msg.topic.split("/")[-3] if msg.topic.count("/") >= 3 else ""
            # The identity moves the ack only when the topic's device is the payload's dev (checked inside).
            ident = None if rej.reason in ("topic_mismatch", "bad_topic") or device is None \
                else identity_of(msg.payload, topic_device=device)
            item = quarantined("mqtt", msg.topic, site, rej, msg.payload, received_ms, ident)
        if self.ack_gate is not None:
            self._note_wanted(ref, item)
        return Entry(item, self, ref)

    def _internal_error(self, session: MqttSession, msg: Message, exc: Exception) -> Entry | None:
        """A quarantine entry for a message that met a bug; None if even that fails (then PUBACKed, dropped)."""
        kind = type(exc).__name__
        if kind not in self._internal_errors_logged:  # once per kind of failure: a flood must not flood the log
            self._internal_errors_logged.add(kind)
            log.exception("MQTT: internal error on a message on %r; quarantined as internal_error", msg.topic[:200])
        try:
            rej = Rejected("internal_error", detail=f"internal_error: {kind}: {str(exc)[:120]}")
            item = quarantined("mqtt", msg.topic, "", rej, msg.payload, int(self.clock() * 1000))
            return Entry(item, self, (session, msg.mid, msg.qos))
        except Exception:  # not even quarantinable: acknowledge it so the broker does not hand it over forever
            log.exception("MQTT: could not quarantine a message on %r; acknowledged and dropped", msg.topic[:200])
            if msg.qos:
                session.ack([msg.mid])
            return None

    def _broker_dropped(self, payload: bytes) -> None:
        text = payload[:32].decode("ascii", "replace").strip()
        if text.isdigit() and self.on_broker_dropped:
            self.on_broker_dropped(int(text))

    def _note_wanted(self, ref: object, item: object) -> None:
        """Remember which stream and seq a message carries until its spool commit (ack gate modes)."""
        if len(self._wanted) > 200_000:  # entries of messages refused by a full spool: redelivered later
            self._wanted.clear()
        if isinstance(item, Quarantined):
            if item.ident is not None:
                self._wanted[ref] = (item.site, item.ident[:3], item.ident[3], True)
        else:
            self._wanted[ref] = (item.site, item.stream, item.seq, False)  # type: ignore[attr-defined]

    def queue_ack(self, site: str, ack: Ack) -> None:
        """Publish an end-to-end ack on this connection at the next ack interval (thread-safe, coalesced)."""
        with self._acks_lock:
            self._acks[(site, ack.device, ack.node, ack.boot)] = ack
        session = self.session
        if session is not None:  # the loop may sleep up to IDLE_PASS_S: it sends this when due
            session.wake()

    def committed(self, refs: list[object], acks: list[tuple[str, Ack]]) -> None:
        """Called by the spool writer after the group commit: PUBACK (one write per connection), then the
        end-to-end acks."""
        by_session: dict[MqttSession, list[int]] = {}
        for session, mid, qos in refs:  # type: ignore[misc]
            if qos:
                by_session.setdefault(session, []).append(mid)
        for session, mids in by_session.items():
            session.ack(mids)  # dropped if that connection has closed since: the broker redelivers
        crashpoints.hit("mqtt.after_ack")
        if self.ack_gate is not None:  # the gate acks once the database has the readings
            for ref in refs:
                wanted = self._wanted.pop(ref, None)
                if wanted is not None:
                    site, key, seq, local = wanted
                    (self.ack_gate.held_locally if local else self.ack_gate.want)(site, key, seq, self.queue_ack)
            return
        with self._acks_lock:
            for site, ack in acks:
                self._acks[(site, ack.device, ack.node, ack.boot)] = ack
        # Coalesced per ack interval while commits follow each other; once the writer has nothing more queued
        # (a burst's last commit, or any commit at a low rate) waiting would save nothing and only delay them.
        if time.monotonic() >= self._acks_due or not self.writer.queued():
            self._publish_acks()

    def _publish_acks(self) -> None:
        session = self.session
        if session is None:  # kept until the reconnect
            return
        with self._acks_lock:
            room = min(self.ack_window - session.in_flight(), session.publish_room())
            if room <= 0:
                return  # the window is full: keep coalescing until PUBACKs make room
            if len(self._acks) <= room:
                pending, self._acks = self._acks, {}
            else:  # the streams waiting longest first (a stream keeps its place in the dict when updated)
                pending = {key: self._acks.pop(key) for key in list(self._acks)[:room]}
            self._acks_due = time.monotonic() + self.ack_interval_s
        for (site, device, _node, _boot), ack in pending.items():
            session.publish(f"{self.prefix}/{site}/{device}/ack", ack.payload())
