"""The resend timer of protocol section 10, as the firmware ports keep it (pure logic, no hardware).

``T`` starts at the base ack timeout; every wait is drawn uniformly in ``[T/2, T]`` so collectors that lost
the gateway together do not resend together; each expiry doubles ``T`` up to a cap, and every ack that raises
``upto`` resets it to the base. An expiry or a reconnect resends only a window of the ``window`` oldest
unacknowledged records. The jitter comes from the same 16-bit xorshift, seeded the same way, as the C++ core
(firmware/arduino/lib/iotgw_core/src/collector.h), so both ports replay shared/vectors/resend_timer.json.
"""


class ResendTimer:
    """One stream's back-off and jitter; the collector owns the deadline and the replay cursor."""

    def __init__(self, base_ms: int, cap_ms: int = 60000, window: int = 8, seed: int = 1) -> None:
        if window < 1:
            raise ValueError("resend window must be at least 1 record, got %d" % window)
        if base_ms < 1 or cap_ms < base_ms or cap_ms > 131070:
            raise ValueError("resend timeout: need 1 <= base (%d) <= cap (%d) <= 131070 ms" % (base_ms, cap_ms))
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.window = window
        self.timeout_ms = base_ms  # T
        self.wait_ms = 0  # the last jittered wait drawn
        self.rng = 1
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Start the xorshift16 from the high half of ``seed * 2654435761`` (consecutive boot numbers give
        unrelated waits); a zero state is taken as 1."""
        self.rng = ((seed * 2654435761) & 0xFFFFFFFF) >> 16
        if not self.rng:
            self.rng = 1

    def _draw(self) -> int:
        x = self.rng
        x ^= (x << 7) & 0xFFFF
        x ^= x >> 9
        x ^= (x << 8) & 0xFFFF
        self.rng = x
        return x

    def arm(self) -> int:
        """Draw this round's wait in ``[T/2, T]`` (ms)."""
        half = self.timeout_ms // 2
        self.wait_ms = half + ((half * self._draw()) >> 16)
        return self.wait_ms

    def expire(self) -> int:
        """The timer ran out: double ``T`` (up to the cap) and draw the next wait."""
        self.timeout_ms = self.cap_ms if self.timeout_ms >= self.cap_ms // 2 else self.timeout_ms * 2
        return self.arm()

    def progress(self) -> int:
        """An ack raised ``upto``: back to the base ``T``, and draw the next wait."""
        self.timeout_ms = self.base_ms
        return self.arm()
