"""The collector's main loop, one ``step()`` at a time, over injected clock, RTC, sensor, cache and link.

Each step: (re)connect when the supervisor says so; take a sample when due (only while the node's role
is active or single); handle acks (trim the cache, set a lost RTC from the ack's clock); resend after
an ack timeout; send what is pending, oldest first, a bounded batch per step so the loop stays responsive.

Resends follow protocol section 10 (``resend.py``): a jittered wait that backs off exponentially while no
ack makes progress, and each expiry or reconnect resends only a window of the oldest unacknowledged records;
records never sent still go out.

Every reading is appended to the cache before it is sent and leaves it only when an end-to-end ack covers
it. A reading sent the moment it is sampled has ``"cached":false``; anything sent from the backlog (after
an outage, a reconnect, a restart or an ack timeout) has ``"cached":true``. Identity and ``ts`` never change.
"""

from iotcollector.cachelog import Record
from iotcollector.heartbeat import Periodic
from iotcollector.protocol import EncodeError, encode_reading, encode_status, encode_will, parse_ack, to_milli
from iotcollector.resend import ResendTimer


class CollectorConfig:
    """What a node is and how it paces itself (see ``config.py`` for the board-side file)."""

    def __init__(self, dev: str, node: str, site: str = "site-1", prefix: str = "iot", unit: str = "C",
                 sample_ms: int = 1000, ack_timeout_ms: int = 5000, send_batch: int = 10,
                 status_ms: int = 60000, resend_window: int = 8, resend_cap_ms: int = 60000) -> None:
        self.dev = dev
        self.node = node
        self.site = site
        self.prefix = prefix
        self.unit = unit
        self.sample_ms = sample_ms
        self.ack_timeout_ms = ack_timeout_ms
        self.send_batch = send_batch
        self.status_ms = status_ms  # periodic status (protocol section 6); 0: only at start and on changes
        self.resend_window = resend_window  # records resent per expiry or reconnect (protocol section 10)
        self.resend_cap_ms = resend_cap_ms  # the back-off cap of the resend timeout


class Collector:
    """One node of a device. ``role`` is ``single`` for a lone collector, else ``active``/``standby``
    (set by the pair's role machine through ``set_role``)."""

    def __init__(self, cfg: CollectorConfig, clock, rtc, sensor, cache, link, supervisor, boot: int,
                 role: str = "single", log=None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.rtc = rtc
        self.sensor = sensor  # callable returning the value (int or float, in cfg.unit)
        self.cache = cache
        self.link = link
        self.supervisor = supervisor
        self.boot = boot
        self.role = role
        self.log = log or (lambda msg: None)
        self.seq = 0
        self.acked = {}  # boot -> highest upto seen
        self.cursor = 0  # cache index of the next record to send
        self.sent_upto = 0  # cache records [0, sent_upto) were sent at least once
        self.resend_left = 0  # records of the current resend window still to send
        self.ack_deadline = None
        # the boot number (random on a fresh board) seeds the jitter, as in the C++ core
        self.timer = ResendTimer(cfg.ack_timeout_ms, cfg.resend_cap_ms, cfg.resend_window, boot)
        self.schedule = Periodic(clock, cfg.sample_ms)
        self.status_dirty = False
        self.status_timer = Periodic(clock, cfg.status_ms) if cfg.status_ms else None
        # called between two sends of a backlog: a pair node keeps its heartbeat going during long replays
        self.on_idle = None
        # counters, reported in the status and read by tests
        self.dropped = 0
        self.store_err = 0  # cache writes (append, compaction) that raised: flash full, card gone
        self.reset_reason = "unknown"  # set by the board glue (machine.reset_cause())
        self.bad_samples = 0
        self.sent = 0
        self.resent = 0
        self.rtc_sets = 0

    # -- role ---------------------------------------------------------------------------------------
    def is_active(self) -> bool:
        return self.role != "standby"

    def set_role(self, role: str) -> None:
        """Change role; a node that becomes active samples at once (that bounds the takeover gap)."""
        if role == self.role:
            return
        self.log("[%s] role: %s -> %s" % (self.cfg.node, self.role, role))
        self.role = role
        if self.is_active():
            self.schedule.restart(self.clock.ticks_ms())
        self.status_dirty = True

    # -- payloads -----------------------------------------------------------------------------------
    def status_payload(self) -> str:
        return encode_status(self.cfg.dev, self.cfg.node, self.boot, self.role, min(self.cache.count, 65535),
                             min(self.cache.capacity, 65535), self.dropped, self.reset_reason, self.store_err,
                             self.rtc.state(), self.cfg.sample_ms)

    def will_payload(self) -> str:
        return encode_will(self.cfg.dev, self.cfg.node)

    def _payload(self, rec: Record, cached: bool) -> str:
        return encode_reading(self.cfg.dev, self.cfg.node, rec.boot, rec.seq, rec.ts, rec.src, rec.milli,
                              self.cfg.unit, cached)

    # -- the loop -----------------------------------------------------------------------------------
    def step(self) -> None:
        now = self.clock.ticks_ms()
        self._maintain_link(now)
        if self.is_active() and self.schedule.due(now):
            self.sample(now)
        if self.supervisor.up:
            self._handle_acks(now)
        if self.supervisor.up:
            self._check_ack_timeout(now)
            self._pump(now)
        if self.status_timer is not None and self.status_timer.due(now):
            self.status_dirty = True
        if self.supervisor.up and self.status_dirty:
            self._send(self.link.send_status, self.status_payload(), now, False)
            if self.supervisor.up:
                self.status_dirty = False

    def sample(self, now: int) -> None:
        """Read the sensor and the clock, record the reading, and send it at once if nothing is pending."""
        ts, src = self.rtc.now_ms()
        try:
            milli = to_milli(self.sensor())
        except (EncodeError, OSError) as exc:
            self.bad_samples += 1
            self.log("[%s] bad sample: %s" % (self.cfg.node, exc))
            return
        rec = Record(self.boot, self.seq, ts, src, milli)
        try:
            recorded = self.cache.append(rec)
        except OSError as exc:  # flash full, card removed: counted, and the loop goes on
            self.store_err += 1
            self.log("[%s] cache write error: %s" % (self.cfg.node, exc))
            recorded = False
        if not recorded:
            if self.dropped == 0:
                self.status_dirty = True
            self.dropped += 1  # not recorded, so no seq is used (protocol section 1)
            return
        self.seq += 1
        if self.supervisor.up and self.cursor == self.cache.count - 1:
            if self._send(self.link.send_reading, self._payload(rec, False), now):
                self.cursor += 1
                self.sent_upto = max(self.sent_upto, self.cursor)
                self.sent += 1

    def _maintain_link(self, now: int) -> None:
        if not self.supervisor.should_try(now):
            return
        try:
            self.link.connect(self.will_payload(), self.status_payload())
        except OSError as exc:
            delay = self.supervisor.failed(now)
            self.log("[%s] connect failed (%s), next try in %d ms" % (self.cfg.node, exc, delay))
            return
        self.supervisor.connected()
        self.status_dirty = False
        # acks may have been lost with the broker: one window is resent at once, oldest first
        self._start_window()
        self.ack_deadline = self.clock.ticks_add(now, self.timer.arm()) if self.sent_upto else None
        self.log("[%s] link up, %d cached" % (self.cfg.node, self.cache.count))

    def _send(self, send, payload: str, now: int, reading: bool = True) -> bool:
        """``send(payload)``; on OSError close the link and let the supervisor schedule the reconnect. The
        first reading sent while none waits for an ack arms the resend timer (a status never does)."""
        try:
            send(payload)
        except OSError as exc:
            self.link.close()
            delay = self.supervisor.lost(now)
            self.log("[%s] link lost (%s), next try in %d ms" % (self.cfg.node, exc, delay))
            return False
        if reading and self.ack_deadline is None:
            self.ack_deadline = self.clock.ticks_add(now, self.timer.arm())
        return True

    def _start_window(self) -> None:
        self.cursor = 0
        self.resend_left = self.timer.window

    def _pump(self, now: int) -> None:
        n = 0
        while self.supervisor.up and self.cursor < self.cache.count and n < self.cfg.send_batch:
            resend = self.cursor < self.sent_upto
            if resend and not self.resend_left:
                self.cursor = self.sent_upto  # the window is out: only records never sent go on
                continue
            rec = self.cache.get(self.cursor)
            if not self._send(self.link.send_reading, self._payload(rec, True), now):
                return
            self.cursor += 1
            self.sent_upto = max(self.sent_upto, self.cursor)
            if resend:
                self.resend_left -= 1
            self.resent += 1
            n += 1
            if self.on_idle is not None:
                self.on_idle()

    def _handle_acks(self, now: int) -> None:
        try:
            payloads = self.link.poll()
        except OSError as exc:
            self.link.close()
            self.supervisor.lost(now)
            self.log("[%s] link lost while polling (%s)" % (self.cfg.node, exc))
            return
        progress = False
        for payload in payloads:
            ack = parse_ack(payload)
            if ack is None or ack.dev != self.cfg.dev or ack.node != self.cfg.node:
                continue  # the partner's acks share our topic
            if ack.upto > self.acked.get(ack.boot, -1):
                self.acked[ack.boot] = ack.upto
                progress = True
            if ack.t is not None and self.rtc.lost() and self.rtc.set_ms(ack.t):
                self.rtc_sets += 1
                self.log("[%s] RTC set from the gateway's clock" % self.cfg.node)
        if progress:
            before = self.cache.count
            try:
                self.cursor = self.cache.trim(self.acked, self.cursor)
            except OSError as exc:  # a failed compaction keeps the old file: records are replayed, not lost
                self.store_err += 1
                self.log("[%s] cache trim error: %s" % (self.cfg.node, exc))
            # Trimmed records leave from the head (rarely from behind an older boot's: then this errs low,
            # and a sent record counts as never sent: sent again, never lost).
            self.sent_upto = min(max(0, self.sent_upto - (before - self.cache.count)), self.cache.count)
            self.timer.progress()  # back to the base timeout (protocol section 10)
            self.ack_deadline = self.clock.ticks_add(now, self.timer.wait_ms) if self.sent_upto else None

    def _check_ack_timeout(self, now: int) -> None:
        if self.ack_deadline is None or self.clock.ticks_diff(now, self.ack_deadline) < 0:
            return
        self.ack_deadline = None
        if self.sent_upto and self.cache.count:
            self.log("[%s] ack timeout: resending %d of %d" % (self.cfg.node, min(self.timer.window, self.sent_upto),
                                                              self.cache.count))
            self._start_window()
            self.ack_deadline = self.clock.ticks_add(now, self.timer.expire())
