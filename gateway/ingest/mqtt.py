"""MQTT ingest: QoS 1, persistent MQTT 5 session, manual acks after the spool commit, end-to-end acks.

The network loop is driven here (not by paho's loop_start) so that backpressure is exact: when the spool is
full we disconnect and stay away; the broker keeps our session's messages until we come back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gateway import crashpoints
from gateway.backoff import reconnect_backoff
from gateway.device_status import StatusBook, parse_status
from gateway.mqttconn import BrokerSettings, MqttConnectError, connect_blocking, make_client
from gateway.protocol import Ack, Rejected, identity_of, parse_reading, parse_topic
from gateway.spool import Entry, Quarantined, Spool, SpoolWriter, quarantined

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"

# End-to-end acks awaiting the broker's PUBACK. Those PUBACKs reach us behind every reading the broker has already
# pushed into our socket (up to the receive maximum, 65535 by default): under a backlog each takes as long as we
# need to read that far, seconds. The window must cover the acks sent meanwhile (a stream's newest ack every
# ack interval), or acks queue behind it and reach the collectors late, whose resend timers then expire. The
# broker answers each at once (its receive quota for our publishes is not held by our unread PUBACKs), and it
# stays far below paho's 65,535 message ids.
ACK_WINDOW = 10_000


def subscription_topics(prefix: str, share_group: str = "") -> list[str]:
    """The reading and status filters; in an MQTT 5 shared subscription group (`$share/<group>/...`) when
    several gateways split a broker's messages between them (each message goes to one member)."""
    topics = [f"{prefix}/+/+/reading", f"{prefix}/+/+/status"]
    return [f"$share/{share_group}/{t}" for t in topics] if share_group else topics

log = logging.getLogger(__name__)


class MqttIngest(threading.Thread):
    """Subscribes to `<prefix>/+/+/reading` and `…/status`, feeds the spool writer, publishes acks."""

    def __init__(self, settings: BrokerSettings, *, client_id: str, prefix: str, spool: Spool,
                 writer: SpoolWriter, on_message: Callable[[str, str | None], None] | None = None,
                 clock: Callable[[], float] = time.time, ack_interval_s: float = 0.05,
                 statuses: StatusBook | None = None,
                 on_broker_dropped: Callable[[int], None] | None = None) -> None:
        super().__init__(name="mqtt-ingest", daemon=True)
        self.settings, self.prefix = settings, prefix
        self.spool, self.writer = spool, writer
        self.on_message_hook = on_message
        self.clock = clock
        self.client = make_client(settings, client_id, manual_ack=True)
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_ack_published
        self.client.max_inflight_messages_set(ACK_WINDOW)
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
        # one ack per group commit per stream under load.
        self.ack_interval_s = ack_interval_s
        self._acks: dict[tuple[str, str, str, int], Ack] = {}
        self._acks_lock = threading.Lock()
        self._acks_due = 0.0
        # Acks handed to paho and not yet PUBACKed, at most its in-flight window (ACK_WINDOW). Acks beyond the
        # window would wait in paho's FIFO and go out stale; they wait here instead, where a newer ack replaces
        # an older one for the same stream, so every ack that goes out carries its stream's newest `upto`.
        self._acks_unconfirmed = 0
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

    def _run(self) -> None:
        while not self._halt.is_set():
            crashpoints.fault("mqtt.loop")
            if self.spool.full:
                self._pause_for_backpressure()
                continue
            if not self.connected:
                try:
                    connect_blocking(self.client, self.settings, clean_start=bool(self.share_group))
                except MqttConnectError as exc:
                    if str(exc) != self.last_error:
                        log.error("MQTT: %s", exc)
                    self.last_error = str(exc)
                    self._halt.wait(self.reconnect.next_delay())
                    continue
                self.reconnect.reset()
                self.connected, self.last_error = True, ""
                with self._acks_lock:  # paho sends again what was in flight; a count stuck high would stop acks
                    self._acks_unconfirmed = 0
                topics = [(t, 1) for t in subscription_topics(self.prefix, self.share_group)]
                self.client.subscribe([*topics, (DROPPED_TOPIC, 0)])
                log.info("MQTT: connected to %s, subscribed to %s", self.settings.url, ", ".join(t for t, _ in topics))
            rc = self.client.loop(0.05)
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                self._lost(mqtt.error_string(rc))
            if self._acks and time.monotonic() >= self._acks_due:
                self._publish_acks()
        if self.connected:
            self.client.disconnect()
            self.client.loop(0.2)

    def _pause_for_backpressure(self) -> None:
        if self.connected:
            log.warning("MQTT: spool full, disconnecting; the broker keeps our session's messages")
            self.client.disconnect()
            self.client.loop(0.2)
            self.connected = False
        with self.spool.full_changed:
            self.spool.full_changed.wait_for(lambda: not self.spool.full or self._halt.is_set(), timeout=1.0)

    def _lost(self, why: str) -> None:
        if self.connected:
            log.warning("MQTT: connection lost (%s); reconnecting", why)
        self.connected = False
        try:
            self.client.disconnect()
        except Exception:  # already down; the next connect starts clean
            pass

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props=None) -> None:
        self.connected = False

    def stop(self) -> None:
        self._halt.set()

    # --- messages -------------------------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, _userdata, msg: mqtt.MQTTMessage) -> None:
        """Every message ends stored, quarantined or refused: nothing raised here may reach paho's loop."""
        try:
            if msg.topic == DROPPED_TOPIC:
                self._broker_dropped(msg.payload)
                return
            self._handle(client, msg)
        except Exception as exc:  # a bug met by one message: quarantine it, never stop ingest
            self._internal_error(client, msg, exc)

    def _handle(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        crashpoints.fault("mqtt.message")
        received_ms = int(self.clock() * 1000)
        ref = (msg.mid, msg.qos)
        device = None
        try:
            site, device, kind = parse_topic(msg.topic, self.prefix)
            if kind == "status" and not msg.payload:
                # An empty retained message is how MQTT clears a retained status (a device taken out of
                # service): nothing to record and nothing wrong.
                client.ack(msg.mid, msg.qos)
                return
            if kind == "status":
                status = parse_status(msg.payload, site=site, received_ms=received_ms, topic_device=device)
                if self.statuses.update(status):
                    log.info("status %s/%s/%s: %s", site, device, status.node, status.state)
                client.ack(msg.mid, msg.qos)
                return
            if kind != "reading":
                raise Rejected("bad_topic", detail=f"bad_topic: {msg.topic[:200]!r}")
            item = parse_reading(msg.payload, site=site, received_ms=received_ms, topic_device=device)
            reason = None
        except Rejected as rej:
            site = msg.topic.split("/")[-3] if msg.topic.count("/") >= 3 else ""
            # The identity moves the ack only when the topic's device is the payload's dev (checked inside).
            ident = None if rej.reason in ("topic_mismatch", "bad_topic") or device is None \
                else identity_of(msg.payload, topic_device=device)
            item = quarantined("mqtt", msg.topic, site, rej, msg.payload, received_ms, ident)
            reason = rej.reason
        if self.on_message_hook:
            self.on_message_hook("mqtt", reason)
        if self.ack_gate is not None:
            self._note_wanted(ref, item)
        self.writer.submit(Entry(item, self, ref))

    def _internal_error(self, client: mqtt.Client, msg: mqtt.MQTTMessage, exc: Exception) -> None:
        kind = type(exc).__name__
        if kind not in self._internal_errors_logged:  # once per kind of failure: a flood must not flood the log
            self._internal_errors_logged.add(kind)
            log.exception("MQTT: internal error on a message on %r; quarantined as internal_error", msg.topic[:200])
        try:
            rej = Rejected("internal_error", detail=f"internal_error: {kind}: {str(exc)[:120]}")
            item = quarantined("mqtt", msg.topic, "", rej, msg.payload, int(self.clock() * 1000))
            if self.on_message_hook:
                self.on_message_hook("mqtt", "internal_error")
            self.writer.submit(Entry(item, self, (msg.mid, msg.qos)))
        except Exception:  # not even quarantinable: acknowledge it so the broker does not hand it over forever
            log.exception("MQTT: could not quarantine a message on %r; acknowledged and dropped", msg.topic[:200])
            client.ack(msg.mid, msg.qos)

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

    def committed(self, refs: list[object], acks: list[tuple[str, Ack]]) -> None:
        """Called by the spool writer after the group commit: PUBACK, then the end-to-end acks."""
        for mid, qos in refs:  # type: ignore[misc]
            self.client.ack(mid, qos)
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
        if time.monotonic() >= self._acks_due:
            self._publish_acks()

    def _publish_acks(self) -> None:
        with self._acks_lock:
            window = self.client.max_inflight_messages  # 0: paho has no window
            room = window - self._acks_unconfirmed if window else len(self._acks)
            if room <= 0:
                return  # the window is full: keep coalescing until PUBACKs make room
            if len(self._acks) <= room:
                pending, self._acks = self._acks, {}
            else:  # the streams waiting longest first (a stream keeps its place in the dict when updated)
                pending = {key: self._acks.pop(key) for key in list(self._acks)[:room]}
            self._acks_unconfirmed += len(pending)
            self._acks_due = time.monotonic() + self.ack_interval_s
        for (site, device, _node, _boot), ack in pending.items():
            self.client.publish(f"{self.prefix}/{site}/{device}/ack", ack.payload(), qos=1)

    def _on_ack_published(self, _client, _userdata, _mid, _reason_code, _props=None) -> None:
        """The broker PUBACKed one of our acks: room for another."""
        with self._acks_lock:
            self._acks_unconfirmed = max(0, self._acks_unconfirmed - 1)
