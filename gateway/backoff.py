"""Exponential backoff with jitter: the one retry pacing for reconnects and failed writes.

Jitter keeps many gateways (or collectors) that lost the same server from coming back in step.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays `base·2, base·4, …` up to `cap` seconds, each drawn from [floor·ceiling, ceiling].

    `floor` 0 is full jitter (the default); 0.5 keeps at least half of each step, for callers that must not
    retry almost at once. `reset()` after a success starts again from the smallest step.
    """

    def __init__(self, cap: float, base: float = 0.05, *, floor: float = 0.0,
                 rng: random.Random | None = None) -> None:
        self.cap, self.base, self.floor, self.attempt = cap, base, floor, 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        """The next delay in seconds (the step grows with every call until `reset`)."""
        self.attempt += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        return self.rng.uniform(self.floor * ceiling, ceiling)

    def reset(self) -> None:
        """Start again from the smallest step."""
        self.attempt = 0


def reconnect_backoff() -> Backoff:
    """The pacing of every ingest reconnect (broker or serial port): first try within 0.2 s, then doubling up to
    5 s between attempts, so a long outage costs little and a short one is bridged quickly."""
    return Backoff(5.0, base=0.1)
