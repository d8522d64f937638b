"""Link supervisor: when to try (re)connecting, with exponential backoff and jitter, never a tight loop.

After the n-th failure in a row the next attempt waits ``min(max_ms, base_ms * 2**(n-1))`` shortened by
up to ``jitter`` of itself (random), so a fleet of collectors that lost the broker together does not
reconnect in lockstep. The wait is never below ``base_ms * (1 - jitter)``. A success resets the backoff.
"""


class LinkSupervisor:
    def __init__(self, clock, rand, base_ms: int = 1000, max_ms: int = 60000, jitter: float = 0.5) -> None:
        if base_ms <= 0 or max_ms < base_ms or not 0 <= jitter < 1:
            raise ValueError("need 0 < base_ms <= max_ms and 0 <= jitter < 1")
        self.clock = clock
        self.rand = rand  # callable returning a float in [0, 1)
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.jitter = jitter
        self.failures = 0
        self.up = False
        self.attempts = 0
        self._next = clock.ticks_ms()  # the first attempt may happen at once
        self.last_delay_ms = 0

    def should_try(self, now: int) -> bool:
        """True when the link is down and its next attempt is due."""
        return not self.up and self.clock.ticks_diff(now, self._next) >= 0

    def delay_ms(self) -> int:
        """The wait after the current number of failures (before jitter)."""
        delay = self.base_ms
        for _ in range(self.failures - 1):
            delay *= 2
            if delay >= self.max_ms:
                return self.max_ms
        return min(delay, self.max_ms)

    def failed(self, now: int) -> int:
        """An attempt failed or the link broke; returns the wait chosen before the next attempt."""
        self.up = False
        self.attempts += 1
        self.failures += 1
        delay = self.delay_ms()
        delay = int(delay - delay * self.jitter * self.rand())
        self.last_delay_ms = delay
        self._next = self.clock.ticks_add(now, delay)
        return delay

    def connected(self) -> None:
        self.up = True
        self.attempts += 1
        self.failures = 0

    def lost(self, now: int) -> int:
        """The link broke while up: wait at least the base delay before trying again."""
        return self.failed(now)
