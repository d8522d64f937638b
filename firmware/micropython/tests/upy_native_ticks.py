"""MicroPython only (mp_runner.py runs it, pytest does not collect it): our tick model against the
interpreter's own ``time.ticks_add``/``ticks_diff``, at the interpreter's own wrap period."""

import time

from iotcollector.ticks import ticks_add, ticks_diff


def test_model_matches_native_ticks():
    period = time.ticks_add(0, -1) + 1  # TICKS_MAX + 1 of this port
    assert period & (period - 1) == 0, period
    half = period // 2
    points = (0, 1, 5, half - 1, half, half + 1, period - 5, period - 1)
    deltas = (0, 1, -1, 10, -10, half - 1, -(half - 1), 1000, -1000)  # ticks_add refuses |delta| >= half
    for a in points:
        for d in deltas:
            assert ticks_add(a, d, period) == time.ticks_add(a, d), (a, d)
        for b in points:
            assert ticks_diff(a, b, period) == time.ticks_diff(a, b), (a, b)


def test_native_clock_runs_forward():
    start = time.ticks_ms()
    time.sleep_ms(5)
    assert time.ticks_diff(time.ticks_ms(), start) >= 4
