"""Role state machines of a redundant pair (one ``device``, two nodes, each its own boot and seq), as
protocol section 9 specifies them for both firmware ports (``shared/vectors/heartbeat.json``).

The *primary* sends a heartbeat every ``period_ms``; the *secondary* takes over when no beat saying
``active`` has come for ``timeout_ms`` and hands back when the primary returns:

- Primary: after every start it *claims*. Beat number k says active once k >= ``handback_beats``, or
  once a read-back after an earlier beat said the partner is standby (it does not record meanwhile).
- Secondary, standby: takes over exactly when no *active* beat has come for the timeout (claiming beats
  do not hold it back: a primary that keeps restarting before it turns active never records).
- Secondary, active: goes standby on an active beat that completes a run of ``handback_beats``
  consecutive beats (each less than the timeout after the previous one): a restarted primary's first
  active beat, so both switch on the same beat; one stray beat from a flapping primary does not move
  the role (hysteresis).
"""

from iotcollector.heartbeat import (
    ACTIVE,
    JOINING,
    REPLY_ACTIVE,
    REPLY_STANDBY,
    HeartbeatMonitor,
    Periodic,
    encode_beat,
)

ROLE_ACTIVE = "active"
ROLE_STANDBY = "standby"


class PrimaryRole:
    """The node that normally leads: sends beats, claims for ``handback_beats - 1`` beats after a start."""

    def __init__(self, clock, period_ms: int, handback_beats: int = 3) -> None:
        self.clock = clock
        self.schedule = Periodic(clock, period_ms)
        self.handback_beats = handback_beats
        self.role = ROLE_STANDBY
        self.counter = 0
        self.sent = 0

    def beat_due(self, now: int) -> bool:
        return self.schedule.due(now)

    def frame(self) -> bytes:
        """The next heartbeat frame to send; the beat that completes the claim already says active."""
        self.sent += 1
        if self.sent >= self.handback_beats:
            self.role = ROLE_ACTIVE
        self.counter = (self.counter + 1) & 0xFF
        return encode_beat(ACTIVE if self.role == ROLE_ACTIVE else JOINING, self.counter)

    def beat_result(self, delivered: bool, reply: int) -> str:
        """Record how the beat just sent went; a partner read back as standby ends the claim at once (it
        does not record, so nothing overlaps). Returns the (possibly new) role."""
        if delivered and reply == REPLY_STANDBY:
            self.role = ROLE_ACTIVE
        return self.role


class SecondaryRole:
    """The standby node: watches the primary's heartbeat."""

    def __init__(self, clock, timeout_ms: int, handback_beats: int = 3) -> None:
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.monitor = HeartbeatMonitor(clock, timeout_ms)  # since the last *active* beat (or the start)
        self.handback_beats = handback_beats
        self.role = ROLE_STANDBY
        self.last_beat = None
        self.streak = 0

    def on_beat(self, now: int, state: int) -> str:
        """A heartbeat frame arrived with the primary's ``state``."""
        consecutive = self.last_beat is not None and 0 <= self.clock.ticks_diff(now, self.last_beat) < self.timeout_ms
        self.streak = self.streak + 1 if consecutive else 1
        self.last_beat = now
        if state == ACTIVE:
            self.monitor.beat(now)
            if self.role == ROLE_ACTIVE and self.streak >= self.handback_beats:
                self.role = ROLE_STANDBY
        return self.role

    def poll(self, now: int) -> str:
        """Call every loop: takes over when no active beat has come for the timeout."""
        if self.role == ROLE_STANDBY and self.monitor.expired(now):
            self.role = ROLE_ACTIVE
        return self.role

    def reply(self) -> int:
        """What the primary reads back from us (register 3)."""
        return REPLY_ACTIVE if self.role == ROLE_ACTIVE else REPLY_STANDBY
