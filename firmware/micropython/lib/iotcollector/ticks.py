"""Millisecond tick arithmetic with MicroPython's ``time.ticks_*`` semantics.

MicroPython's ``ticks_ms()`` wraps at a port-specific period (2**30 on most ports, 2**29 with
CircuitPython's ``adafruit_ticks``). A difference of two ticks is only meaningful when the real
interval is shorter than half the period: ``ticks_diff`` maps the raw difference into
``[-period/2, period/2)``. The logic modules take a *clock* object with ``ticks_ms()``,
``ticks_diff(a, b)`` and ``ticks_add(t, delta)``: on a board that is the ``time`` module itself; in tests it
is ``ManualTicks`` with a small period so the wraparound happens within a few simulated seconds.
"""

TICKS_PERIOD = 1 << 30  # MicroPython's TICKS_MAX + 1 on most ports


def ticks_diff(a: int, b: int, period: int = TICKS_PERIOD) -> int:
    """Signed ``a - b`` modulo ``period`` (a power of two), as ``time.ticks_diff`` computes it."""
    half = period >> 1
    return ((a - b + half) & (period - 1)) - half


def ticks_add(t: int, delta: int, period: int = TICKS_PERIOD) -> int:
    """``t + delta`` wrapped into ``[0, period)``, as ``time.ticks_add`` computes it."""
    return (t + delta) & (period - 1)


class ManualTicks:
    """A tick source moved by hand (tests and simulations), wrapping at ``period``."""

    def __init__(self, start: int = 0, period: int = TICKS_PERIOD) -> None:
        if period & (period - 1):
            raise ValueError("period must be a power of two")
        self.period = period
        self.now = start & (period - 1)
        self.elapsed_ms = 0  # true time since creation, never wraps: for assertions only

    def ticks_ms(self) -> int:
        return self.now

    def ticks_diff(self, a: int, b: int) -> int:
        return ticks_diff(a, b, self.period)

    def ticks_add(self, t: int, delta: int) -> int:
        return ticks_add(t, delta, self.period)

    def sleep_ms(self, ms: int) -> None:
        """What ``time.sleep_ms`` does to a board's clock."""
        self.advance(ms)

    def advance(self, ms: int) -> None:
        """Let ``ms`` milliseconds pass."""
        self.now = ticks_add(self.now, ms, self.period)
        self.elapsed_ms += ms
