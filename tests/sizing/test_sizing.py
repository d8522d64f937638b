"""gateway.sizing: the cache a collector needs for an outage, checked against counting samples one by one."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import sizing
from gateway.sizing import RECORD_BYTES, bytes_needed, outage_covered, records_needed


def most_samples_in_window(window_ms: int, period_ms: int) -> int:
    """Count, for every phase of the sampling clock, the samples inside a closed window; return the most."""
    best = 0
    for phase in range(period_ms):  # first sample at `phase` ms after the window opens
        best = max(best, sum(1 for t in range(phase, window_ms + 1, period_ms)))
    return best


@given(window_ms=st.integers(0, 3000), period_ms=st.integers(1, 120))
def test_records_needed_is_the_most_samples_any_phase_puts_in_the_window(window_ms: int, period_ms: int) -> None:
    assert records_needed(window_ms / 1000, period_ms / 1000) == most_samples_in_window(window_ms, period_ms)


@given(outage=st.floats(0, 1e6), period=st.floats(0.01, 3600), ack=st.floats(0, 60), catch_up=st.floats(0, 600))
def test_needed_and_covered_agree(outage: float, period: float, ack: float, catch_up: float) -> None:
    needed = records_needed(outage, period, ack_delay_s=ack, catch_up_s=catch_up)
    # The cache sized for an outage rides it out, and one record fewer would not.
    assert outage_covered(needed, period, ack_delay_s=ack, catch_up_s=catch_up) > outage
    rounding = 2e-9 * (period + outage + ack + catch_up)  # records_needed rounds quotients this close upwards
    assert outage_covered(needed - 1, period, ack_delay_s=ack, catch_up_s=catch_up) <= outage + rounding


def test_delays_and_rounding_examples() -> None:
    assert records_needed(0, 10) == 1  # no outage: the one reading waiting for its ack
    assert records_needed(0.3, 0.1) == 4  # 0.3 / 0.1 is 2.999... in floating point: rounded towards more
    assert records_needed(1800, 10, ack_delay_s=2, catch_up_s=60) == 187
    assert bytes_needed(1800, 10) == 181 * RECORD_BYTES
    assert bytes_needed(10, 1, record_bytes=64) == 11 * 64
    assert outage_covered(5, 10, ack_delay_s=30, catch_up_s=30) == 0.0  # the delays alone fill it
    assert outage_covered(0, 10) == 0.0
    assert math.isclose(outage_covered(2600, 5) / 3600, 3.6111, rel_tol=1e-4)  # 64 KB SD card, 5 s: 3.6 h


@pytest.mark.parametrize("call, message", [
    (lambda: records_needed(10, 0), "period_s: must be greater than 0"),
    (lambda: records_needed(-1, 10), "outage_s: must be at least 0"),
    (lambda: records_needed(float("inf"), 10), "outage_s: expected a finite number"),
    (lambda: records_needed(10, 1, ack_delay_s=float("nan")), "ack_delay_s: expected a finite number"),
    (lambda: records_needed("10", 1), "outage_s: expected a finite number"),
    (lambda: records_needed(True, 1), "outage_s: expected a finite number"),
    (lambda: bytes_needed(10, 1, record_bytes=0), "record_bytes: expected a positive whole number"),
    (lambda: outage_covered(-1, 10), "records: expected a whole number"),
    (lambda: outage_covered(2.5, 10), "records: expected a whole number"),
    (lambda: outage_covered(10, 1, catch_up_s=-5), "catch_up_s: must be at least 0"),
])  # fmt: skip
def test_bad_arguments_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(sizing)
    assert result.attempted >= 5 and result.failed == 0
