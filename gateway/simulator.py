"""Simulated collectors: protocol-correct readings over MQTT that honour end-to-end acks like real firmware.

Each simulated node keeps every reading until an ack covers it and resends by the congestion-control rules of
shared/protocol.md ("Resend timer and window"): a per-stream resend timer that backs off exponentially with
jitter and is reset by progress, resending a bounded window of the oldest unacknowledged readings (and, while
recovering, the next window as soon as an ack covers the previous one). Faults can be injected: duplicates,
malformed and oversized messages, out-of-order replays.

All simulated collectors share one MQTT connection, so publishing waits while the client holds `publish_buffer`
publishes the broker has not yet acknowledged (PUBACK), as a collector's send waits for its link. Without that
wait a burst at full speed piles up in paho's queue: past 65,535 queued messages its 16-bit message ids are all
in use and `publish()` refuses the message (`MQTT_ERR_QUEUE_SIZE`); readings counted as sent never left, every
stream stalled at the same point and only resend timers recovered them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gateway.mqttconn import BrokerSettings, MqttConnectError, connect_blocking, make_client
from gateway.protocol import encode_reading, parse_ack

log = logging.getLogger(__name__)

MALFORMED = [
    b"temperature=21.5",
    b'{"v":1,"dev":"x"}',
    b'{"v":2,"dev":"sim","node":"a","boot":1,"seq":1,"ts":null,"src":"none","val":1,"unit":"C"}',
    b"[1,2,3]",
    b"\xff\xfe\xfd",
]


@dataclass
class SimOptions:
    """What to simulate."""

    devices: int = 20
    count: int = 500  # readings per device
    rate: float = 2000.0  # readings per second over all devices (0: as fast as possible)
    site: str = "sim"
    prefix: str = "iot"
    device_prefix: str = "sim"
    node: str = "a"
    boot: int | None = None  # None: derived from the clock, like a fresh boot counter
    ack_timeout: float = 5.0  # the resend timer's base (no progress for this long: resend a window)
    ack_timeout_max: float = 60.0  # the backed-off timer never exceeds this
    resend_window: int = 100  # readings resent per timer expiry (and per ack while recovering)
    publish_buffer: int = 1000  # publishes awaiting the broker's PUBACK before publishing waits (while connected)
    duplicate_rate: float = 0.0
    malformed: int = 0
    oversized: int = 0
    out_of_order: bool = False
    seed: int = 1


@dataclass
class SimReport:
    """What was sent and what came back acknowledged."""

    sent: int = 0
    published: int = 0
    resent: int = 0
    duplicates_sent: int = 0
    malformed_sent: int = 0
    refused: int = 0  # publishes the MQTT client would not queue (not sent; resent like a lost message)
    acked: int = 0
    unacked: int = 0
    reconnects: int = 0  # reconnections after the first connection
    broker_switches: int = 0  # moves to the next broker of the list after the current one failed
    seconds: float = 0.0
    readings: dict[tuple[str, str, int, int], tuple[int, float]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "readings"}


class Simulator:
    """A set of simulated collectors publishing through one MQTT connection.

    `settings` may be a list of brokers: the collectors use one at a time and, when it fails, move to the next
    (wrapping around) with exponential backoff and jitter between attempts, as the firmware does."""

    def __init__(self, settings: BrokerSettings | list[BrokerSettings], options: SimOptions,
                 client_id: str | None = None, clock: Callable[[], float] = time.time,
                 backoff_s: tuple[float, float] = (0.2, 2.0)) -> None:
        self.brokers = list(settings) if isinstance(settings, list | tuple) else [settings]
        if not self.brokers:
            raise ValueError("Simulator needs at least one broker")
        settings = self.brokers[0]
        self.broker_index = 0
        self.backoff_s = backoff_s
        # (monotonic time, broker url) of every connection made; the broker-failover tests read it.
        self.connections: list[tuple[float, str]] = []
        self._lost = threading.Event()
        self._lost_client: mqtt.Client | None = None  # the connection `_lost` was set for
        self._supervisor: threading.Thread | None = None
        self.settings, self.opt, self.clock = settings, options, clock
        self.rng = random.Random(options.seed)
        self.boot = options.boot if options.boot is not None else int(clock()) % 1_000_000
        self.devices = [f"{options.device_prefix}-{i + 1:03d}" for i in range(options.devices)]
        self.client_id = client_id or f"iotgw-sim-{self.boot}-{self.rng.randrange(1 << 30)}"
        self.client = self._make_client(settings)
        self.lock = threading.Lock()
        # per device: seq -> (payload, last_sent_monotonic); the collector's "cache" of unacked readings
        self.unacked: dict[str, dict[int, list]] = {d: {} for d in self.devices}
        self.upto: dict[str, int] = dict.fromkeys(self.devices, -1)
        self.timers = {d: ResendTimer(options.ack_timeout, options.ack_timeout_max, self.rng) for d in self.devices}
        self.report = SimReport()
        # Publishes handed to the current client and not yet answered by the broker's PUBACK (see the module doc).
        self._room = threading.Condition()
        self._unconfirmed = 0
        self._reconnected = threading.Event()
        self._halt = threading.Event()

    # --- connection -----------------------------------------------------------------------------
    def _make_client(self, settings: BrokerSettings) -> mqtt.Client:
        client = make_client(settings, self.client_id)
        client.on_message = self._on_ack
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.reconnect_delay_set(0.1, 2.0)
        return client

    def connect(self) -> None:
        """Connect to the first broker that answers (in list order); with several, watch for failures."""
        if len(self.brokers) == 1:
            connect_blocking(self.client, self.settings, clean_start=True)
            self._subscribe()
            self.connections.append((time.monotonic(), self.settings.url))
            self.client.loop_start()
            return
        error: MqttConnectError | None = None
        for _ in range(len(self.brokers)):
            try:
                self._open(self.brokers[self.broker_index])
                break
            except MqttConnectError as exc:
                error = exc
                self.broker_index = (self.broker_index + 1) % len(self.brokers)
        else:
            assert error is not None
            raise error
        self._supervisor = threading.Thread(target=self._supervise, name="sim-broker-failover", daemon=True)
        self._supervisor.start()

    def _open(self, settings: BrokerSettings) -> None:
        """Drop the current connection and connect to `settings` (raises MqttConnectError)."""
        old = self.client
        old.on_disconnect = None  # our own disconnect is not a failure
        old.loop_stop()
        try:
            old.disconnect()
        except Exception:  # already down
            pass
        client = self._make_client(settings)
        connect_blocking(client, settings, clean_start=True)
        with self._room:  # what the old client held is abandoned (resent from the cache like any lost record)
            self.client, self.settings, self._unconfirmed = client, settings, 0
            self._room.notify_all()
        self._subscribe()
        self.connections.append((time.monotonic(), settings.url))
        client.loop_start()

    def _on_disconnect(self, client, _u, _flags, _reason_code, _props=None) -> None:
        if len(self.brokers) > 1 and client is self.client:
            self._lost_client = client
            self._lost.set()

    def _supervise(self) -> None:
        """With several brokers: when the connection is lost, move to the next broker with backoff."""
        low, high = self.backoff_s
        while not self._halt.is_set():
            if not self._lost.wait(0.2):
                continue
            self._lost.clear()
            if self._lost_client is not self.client:
                # A late second signal from a connection already replaced (paho may report one loss twice, the
                # second while the move away from it is under way): moving again would leave a good broker.
                continue
            delay = low
            while not self._halt.is_set():
                self.broker_index = (self.broker_index + 1) % len(self.brokers)
                try:
                    self._open(self.brokers[self.broker_index])
                except MqttConnectError as exc:
                    log.info("simulator: %s; next broker in a moment", exc)
                    self._halt.wait(self.rng.uniform(delay / 2, delay))
                    delay = min(delay * 2, high)
                    continue
                self.report.broker_switches += 1
                log.info("simulator: moved to %s", self.settings.url)
                self._reconnected.set()  # resend everything unacknowledged at once
                break

    def _on_publish(self, client, _userdata, _mid, _reason_code, _props=None) -> None:
        """The broker answered one of our publishes (PUBACK, whatever its reason code): room for another."""
        with self._room:
            if client is self.client:
                self._unconfirmed -= 1
                self._room.notify_all()

    def _wait_for_room(self) -> None:
        """Wait while the client holds `publish_buffer` publishes the broker has not acknowledged. Not while
        disconnected (paho keeps those for the reconnect) nor once stopped: the wait is for a slow link only."""
        with self._room:
            while (self._unconfirmed >= self.opt.publish_buffer and self.client.is_connected()
                   and not self._halt.is_set()):
                self._room.wait(0.1)

    def _subscribe(self) -> None:
        self.client.subscribe(f"{self.opt.prefix}/{self.opt.site}/+/ack", qos=1)

    def _on_connect(self, _c, _u, _flags, reason_code, _props=None) -> None:
        if reason_code.is_failure:
            log.error("simulator: broker refused: %s", reason_code)
            return
        self._subscribe()
        self.report.reconnects += 1
        self._reconnected.set()

    def _on_ack(self, _client, _userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = parse_ack(msg.payload)
        except (ValueError, KeyError):
            log.warning("simulator: unreadable ack %r", msg.payload[:80])
            return
        if ack.node != self.opt.node or ack.boot != self.boot or ack.device not in self.unacked:
            return
        with self.lock:
            if ack.upto <= self.upto[ack.device]:
                if ack.upto == self.upto[ack.device]:
                    self.timers[ack.device].duplicate(ack.upto)
                return
            previous, self.upto[ack.device] = self.upto[ack.device], ack.upto
            pending = self.unacked[ack.device]
            newest = pending.get(ack.upto)
            now = time.monotonic()
            if newest is not None and not newest[2]:  # a round-trip sample (never from a resent record)
                self.timers[ack.device].sample(now - newest[1])
            for seq in range(previous + 1, ack.upto + 1):  # cumulative: exactly the newly covered sequences
                if pending.pop(seq, None) is not None:
                    self.report.acked += 1
            due = self._window(ack.device, self.timers[ack.device].progress(now, ack.upto, pending))
        self._resend(due, wait=False)  # on the network thread, which the wait would need to see PUBACKs

    def _window(self, device: str, take: int) -> list[tuple[str, bytes]]:
        """The `take` oldest unacknowledged readings of a device, stamped as sent now (under the lock)."""
        if not take:
            return []
        pending = self.unacked[device]
        now = time.monotonic()
        out = []
        oldest = sorted(pending)[:take]
        for seq in oldest:
            entry = pending[seq]
            entry[1], entry[2] = now, True
            out.append((device, entry[0]))
        if oldest:
            self.timers[device].window_top = oldest[-1]
        return out

    def _resend(self, due: list[tuple[str, bytes]], wait: bool = True) -> None:
        if self.opt.out_of_order:
            self.rng.shuffle(due)
        for device, payload in due:
            if wait:
                self._wait_for_room()
            self._publish(device, payload)
        with self.lock:
            self.report.resent += len(due)

    # --- sending --------------------------------------------------------------------------------
    def _publish(self, device: str, payload: bytes) -> None:
        client = self.client
        try:
            info = client.publish(f"{self.opt.prefix}/{self.opt.site}/{device}/reading", payload, qos=1)
        except OSError:
            # The broker went away under us (paho writes from the caller and the socket was reset): the record
            # stays unacknowledged and goes out again after the reconnect, like any lost message.
            if len(self.brokers) > 1:
                self._lost.set()
            return
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            # Not queued (every message id in use): not sent. The record stays in the cache for its resend timer.
            self.report.refused += 1
            return
        with self._room:
            if client is self.client:
                self._unconfirmed += 1  # its PUBACK may already have come: the count is balanced, not ordered
        self.report.published += 1

    def _new_reading(self, device: str, seq: int) -> None:
        self._wait_for_room()  # before the send time is stamped: the resend timer measures the link, not our queue
        ts = int(self.clock() * 1000)
        value = round(self.rng.uniform(-20, 40), 3)
        payload = encode_reading(device, self.opt.node, self.boot, seq, ts, "rtc", value, "C").encode()
        with self.lock:
            self.unacked[device][seq] = [payload, time.monotonic(), False]  # payload, last sent, resent
            self.report.readings[(device, self.opt.node, self.boot, seq)] = (ts, value)
            self.report.sent += 1
        self._publish(device, payload)
        if self.opt.duplicate_rate and self.rng.random() < self.opt.duplicate_rate:
            self._publish(device, payload)
            self.report.duplicates_sent += 1

    def _inject_bad(self) -> None:
        device = self.devices[0]
        for i in range(self.opt.malformed):
            self._wait_for_room()
            self._publish(device, MALFORMED[i % len(MALFORMED)])
            self.report.malformed_sent += 1
        for _ in range(self.opt.oversized):
            self._wait_for_room()
            self._publish(device, b'{"v":1,"pad":"' + b"x" * 300 + b'"}')
            self.report.malformed_sent += 1

    def resend_due(self, force: bool = False) -> int:
        """Resend a window of each stream whose resend timer expired (of every stream after a reconnect)."""
        now = time.monotonic()
        due = []
        with self.lock:
            for device, pending in self.unacked.items():
                take = self.timers[device].check(now, pending, force, self.opt.resend_window)
                due += self._window(device, take)
        self._resend(due)
        return len(due)

    def outstanding(self) -> int:
        with self.lock:
            return sum(len(p) for p in self.unacked.values())

    def stop(self) -> None:
        self._halt.set()

    def run(self, *, deadline_s: float = 600.0, progress: Callable[[SimReport], None] | None = None,
            wait_acks: bool = True) -> SimReport:
        """Publish everything, then wait (resending) until all is acknowledged or the deadline passes."""
        started = time.monotonic()
        end = started + deadline_s
        order = [(d, s) for s in range(self.opt.count) for d in self.devices]
        if self.opt.out_of_order:  # shuffle within windows of 50 so replays arrive out of order
            for i in range(0, len(order), 50):
                window = order[i:i + 50]
                self.rng.shuffle(window)
                order[i:i + 50] = window
        next_seq = dict.fromkeys(self.devices, 0)
        self._reconnected.clear()
        self._inject_bad()
        interval = 1.0 / self.opt.rate if self.opt.rate else 0.0
        last_check = time.monotonic()
        for i, (device, _s) in enumerate(order):
            if self._halt.is_set() or time.monotonic() > end:
                break
            seq = next_seq[device] if not self.opt.out_of_order else _s
            next_seq[device] += 1
            self._new_reading(device, seq)
            if interval:
                target = started + (i + 1) * interval
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            now = time.monotonic()
            if now - last_check > 0.2:
                last_check = now
                self.resend_due(force=self._take_reconnect())
                if progress:
                    progress(self._snapshot(started))
        while wait_acks and self.outstanding() and time.monotonic() < end and not self._halt.is_set():
            self.resend_due(force=self._take_reconnect())
            if progress:
                progress(self._snapshot(started))
            time.sleep(0.1)
        return self._snapshot(started)

    def _take_reconnect(self) -> bool:
        """True once after each reconnection: then everything unacknowledged is resent at once."""
        if self._reconnected.is_set():
            self._reconnected.clear()
            return True
        return False

    def _snapshot(self, started: float) -> SimReport:
        self.report.unacked = self.outstanding()
        self.report.seconds = round(time.monotonic() - started, 3)
        return self.report

    def close(self) -> None:
        self._halt.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)
        self.client.on_disconnect = None
        self.client.loop_stop()
        self.client.disconnect()


class ResendTimer:
    """One stream's resend timer (shared/protocol.md section 10, "Resend timer and window").

    No progress (no ack raising `upto`) for the timeout while readings are unacknowledged: resend the oldest
    window, double the timeout (up to `cap`) and recover. While recovering, an ack exactly at the top of the
    resent window that the gateway then repeats (it answered our resent duplicates and holds nothing beyond
    them) means the records after it were probably lost too: the next
    expiry resends a window twice as large without backing off (slow start), so a long loss is recovered in a
    few timeouts. An ack beyond the resent window ends the recovery (the gateway has the originals: it was
    only slow). Progress resets the timeout to the base, or to the smoothed ack round trip plus four times its
    variation if that is longer (samples from records sent once only), so a gateway that is merely far behind
    is not mistaken for a lost one. Every wait is jittered so collectors that lost the gateway together do not
    resend together.
    """

    def __init__(self, base: float, cap: float, rng: random.Random, window_cap: int = 1600) -> None:
        self.base, self.cap, self.rng = base, max(cap, base), rng
        self.timeout = base
        self.deadline: float | None = None
        self.recover_upto = -1  # while recovering: the highest seq sent before the recovery began
        self.window_top = -1  # the highest seq of the last resent window
        self.scale = 1  # window multiplier while recovering (doubles per window acked up to its top)
        self.window_cap = window_cap
        self.probing = False  # recovering and acked exactly up to the window's top
        self.srtt: float | None = None  # smoothed ack round trip and its variation (as TCP estimates them)
        self.rttvar = 0.0

    def sample(self, rtt: float) -> None:
        """A round trip: from a record's only send to the ack that first covered it."""
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar += (abs(self.srtt - rtt) - self.rttvar) / 4
            self.srtt += (rtt - self.srtt) / 8

    def rest_timeout(self) -> float:
        """The timeout after progress: the base, or longer when acks are known to take longer."""
        if self.srtt is None:
            return self.base
        return min(self.cap, max(self.base, self.srtt + 4 * self.rttvar))

    def _arm(self, now: float) -> None:
        self.deadline = now + self.rng.uniform(self.timeout / 2, self.timeout)

    def check(self, now: float, pending: dict[int, list], force: bool, window: int) -> int:
        """How many of the oldest readings to resend now (0: none); `force` after a reconnect."""
        if not pending:
            self.deadline, self.recover_upto, self.probing, self.scale = None, -1, False, 1
            return 0
        if force:
            self.recover_upto = max(self.recover_upto, max(pending))
            self.probing = False
            self._arm(now)
            return window * self.scale
        if self.deadline is None:
            self._arm(now)
            return 0
        if now < self.deadline:
            return 0
        if self.probing:  # the last window was acked to its top, then silence: a larger one, no backoff
            self.probing = False
            self.scale = min(self.scale * 2, max(1, self.window_cap // max(1, window)))
        else:
            self.timeout = min(self.cap, self.timeout * 2)
            self.recover_upto = max(self.recover_upto, max(pending))
        self._arm(now)
        return window * self.scale

    def progress(self, now: float, upto: int, pending: dict[int, list]) -> int:
        """An ack raised `upto`: reset the timeout and re-arm; track the recovery. Returns the readings to
        resend at once (always 0: resends happen on expiry, found by `check`)."""
        self.timeout = self.rest_timeout()
        self.probing = False
        if self.recover_upto >= 0:
            if not pending or upto >= self.recover_upto or upto > self.window_top:
                self.recover_upto, self.scale = -1, 1  # all acknowledged, or the gateway holds more than we resent
        self._arm(now)
        return 0

    def duplicate(self, upto: int) -> None:
        """An ack that repeats `upto` (the gateway answering a duplicate). Repeated exactly at the top of the
        resent window while recovering: the gateway had our window and nothing beyond it."""
        if self.recover_upto >= 0 and upto == self.window_top:
            self.probing = True


def simulate(settings: BrokerSettings | list[BrokerSettings], options: SimOptions, *, deadline_s: float = 600.0,
             progress: Callable[[SimReport], None] | None = None) -> SimReport:
    """Connect, run and close: the simple form the CLI and tests use. Raises MqttConnectError."""
    sim = Simulator(settings, options)
    sim.connect()
    try:
        return sim.run(deadline_s=deadline_s, progress=progress)
    finally:
        sim.close()


__all__ = ["MqttConnectError", "SimOptions", "SimReport", "Simulator", "simulate"]
