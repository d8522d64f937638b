"""A real-time tick clock for running the port's logic on a PC (CPython), with MicroPython's semantics.

``period`` is the wrap period (default 2**30 like most ports); pass a small one to see wraparound happen
in a demo or a test run.
"""

import time

from iotcollector.ticks import TICKS_PERIOD, ticks_add, ticks_diff


class HostTicks:
    def __init__(self, period: int = TICKS_PERIOD, offset_ms: int = 0) -> None:
        self.period = period
        self._t0 = time.monotonic_ns() // 1000000 - offset_ms

    def ticks_ms(self) -> int:
        return (time.monotonic_ns() // 1000000 - self._t0) & (self.period - 1)

    def ticks_diff(self, a: int, b: int) -> int:
        return ticks_diff(a, b, self.period)

    def ticks_add(self, t: int, delta: int) -> int:
        return ticks_add(t, delta, self.period)

    def sleep_ms(self, ms: int) -> None:
        time.sleep(ms / 1000)
