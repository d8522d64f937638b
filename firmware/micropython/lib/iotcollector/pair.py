"""Role state machines of a redundant pair (one ``device``, two nodes, each its own boot and seq).

The *primary* sends a heartbeat every ``period_ms``; the *secondary* takes over when it has heard none
for ``timeout_ms`` and hands back when the primary returns:

- Secondary, standby: takes over exactly when the heartbeat has been silent for the timeout.
- Secondary, active: a beat saying ``active`` makes it standby at once; beats saying ``joining`` are
  counted and after ``handback_beats`` consecutive ones it goes standby (hysteresis: one stray beat from
  a flapping primary does not move the role).
- Primary: starts *joining*. Each beat it sends reports whether it was delivered (the I2C target
  acknowledged it) and the partner's role read back. Partner standby -> active at once. Partner active ->
  active after ``handback_beats`` consecutive delivered beats, the same beat at which the partner goes
  standby, so both report together for less than one heartbeat period. ``absent_beats`` undelivered
  beats in a row -> active (no partner). Without a role read-back (GPIO pulse line) it counts
  ``handback_beats`` beats.
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
    """The node that normally leads: sends beats, joins carefully after a restart."""

    def __init__(self, clock, period_ms: int, handback_beats: int = 3, absent_beats: int = 2) -> None:
        self.clock = clock
        self.schedule = Periodic(clock, period_ms)
        self.handback_beats = handback_beats
        self.absent_beats = absent_beats
        self.role = ROLE_STANDBY
        self.counter = 0
        self._delivered = 0
        self._undelivered = 0

    def beat_due(self, now: int) -> bool:
        return self.schedule.due(now)

    def frame(self) -> bytes:
        """The next heartbeat frame to send."""
        self.counter = (self.counter + 1) & 0xFF
        return encode_beat(ACTIVE if self.role == ROLE_ACTIVE else JOINING, self.counter)

    def beat_result(self, delivered: bool, reply: int) -> str:
        """Record how the beat just sent went; returns the (possibly new) role."""
        if self.role == ROLE_ACTIVE:
            return self.role
        if not delivered:
            self._delivered = 0
            self._undelivered += 1
            if self._undelivered >= self.absent_beats:
                self.role = ROLE_ACTIVE
            return self.role
        self._undelivered = 0
        self._delivered += 1
        if reply == REPLY_STANDBY or self._delivered >= self.handback_beats:
            self.role = ROLE_ACTIVE
        return self.role


class SecondaryRole:
    """The standby node: watches the primary's heartbeat."""

    def __init__(self, clock, timeout_ms: int, handback_beats: int = 3) -> None:
        self.clock = clock
        self.monitor = HeartbeatMonitor(clock, timeout_ms)
        self.handback_beats = handback_beats
        self.role = ROLE_STANDBY
        self._joining = 0

    def on_beat(self, now: int, state: int) -> str:
        """A heartbeat frame arrived with the primary's ``state``."""
        gap = self.monitor.expired(now)  # silent for a timeout before this beat: the count starts again
        self.monitor.beat(now)
        if state == ACTIVE:
            self.role = ROLE_STANDBY
            self._joining = 0
        elif self.role == ROLE_ACTIVE:
            self._joining = 1 if gap else self._joining + 1
            if self._joining >= self.handback_beats:
                self.role = ROLE_STANDBY
                self._joining = 0
        return self.role

    def poll(self, now: int) -> str:
        """Call every loop: takes over when the heartbeat has been silent for the timeout."""
        if self.monitor.expired(now) and self.role == ROLE_STANDBY:
            self.role = ROLE_ACTIVE
            self._joining = 0
        return self.role

    def reply(self) -> int:
        """What the primary reads back from us."""
        return REPLY_ACTIVE if self.role == ROLE_ACTIVE else REPLY_STANDBY
