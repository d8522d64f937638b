"""Heartbeat between the two nodes of a redundant pair (protocol section 9): the frame, and the monitor
that times it out.

Frame (3 bytes, written by the primary into the partner's I2C target memory at address 0):
``B7 | state (0 claiming, 1 active) | counter (mod 256)``. The partner exposes its own role in
byte 3 of that memory (0 standby, 1 active), which the primary reads back after each beat.
"""

MAGIC = 0xB7
JOINING = 0
ACTIVE = 1
REPLY_STANDBY = 0
REPLY_ACTIVE = 1
REPLY_UNKNOWN = -1  # a transport that cannot read the partner's role (the GPIO pulse line)


def encode_beat(state: int, counter: int) -> bytes:
    return bytes((MAGIC, state, counter & 0xFF))


def decode_beat(data):
    """``(state, counter)`` or None when ``data`` is not a heartbeat frame."""
    if data is None or len(data) < 3 or data[0] != MAGIC or data[1] not in (JOINING, ACTIVE):
        return None
    return data[1], data[2]


class HeartbeatMonitor:
    """Says when the partner's heartbeat has been silent for ``timeout_ms``: exactly then, not earlier.

    Elapsed time is ``ticks_diff(now, last)``, correct across the tick counter's wraparound as long as
    ``expired`` is called at least once per half tick period (every loop does). Once expired it stays
    expired until the next beat; a negative difference can only mean more than half a period passed
    unseen, so it counts as expired too.
    """

    def __init__(self, clock, timeout_ms: int) -> None:
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.last = clock.ticks_ms()  # a fresh monitor gives the partner a full timeout to show up
        self._expired = False

    def beat(self, now: int) -> None:
        self.last = now
        self._expired = False

    def elapsed(self, now: int) -> int:
        return self.clock.ticks_diff(now, self.last)

    def expired(self, now: int) -> bool:
        if not self._expired:
            elapsed = self.elapsed(now)
            if elapsed < 0 or elapsed >= self.timeout_ms:
                self._expired = True
        return self._expired


class Periodic:
    """A drift-free schedule: ``due(now)`` is true once per ``period_ms`` (first at once, or after ``first_ms``)."""

    def __init__(self, clock, period_ms: int, first_ms: int = 0) -> None:
        self.clock = clock
        self.period_ms = period_ms
        self.next = clock.ticks_add(clock.ticks_ms(), first_ms)

    def due(self, now: int) -> bool:
        late = self.clock.ticks_diff(now, self.next)
        if late < 0:
            return False
        if late >= self.period_ms:  # fell behind by whole periods: skip them rather than fire in a burst
            self.next = now
        self.next = self.clock.ticks_add(self.next, self.period_ms)
        return True

    def restart(self, now: int) -> None:
        """Fire at ``now`` and every period from there."""
        self.next = now
