"""The ingest loop's read pacing: a steady trickle is read once per READ_GAP_S, a burst is never held back."""

from __future__ import annotations

from gateway.ingest.mqtt import BURST_MIN_READ, PACED_BELOW, READ_GAP_S, ReadPacer


def trickle(pacer: ReadPacer, per_s: float, reads: int, start: float = 100.0) -> float:
    """One message a read at `per_s`; returns the time of the last read."""
    t = start
    for _ in range(reads):
        t += 1 / per_s
        pacer.read(1, t)
    return t


def test_a_steady_trickle_is_read_once_per_gap():
    pacer = ReadPacer()
    t = trickle(pacer, 300, 10)
    assert abs(pacer.wait_s(t) - READ_GAP_S) < 1e-9
    assert abs(pacer.wait_s(t + 0.04) - (READ_GAP_S - 0.04)) < 1e-9
    # After the paced read (30 messages in 100 ms: still a trickle) the next one waits again.
    pacer.read(30, t + READ_GAP_S)
    assert pacer.wait_s(t + READ_GAP_S) > 0


def test_slow_rates_and_large_reads_are_read_at_once():
    pacer = ReadPacer()
    t = trickle(pacer, 20, 10)  # 20 readings/s: pacing them saves nothing
    assert pacer.wait_s(t) == 0
    pacer.read(PACED_BELOW, t + 0.001)  # a large read: a burst
    assert pacer.wait_s(t + 0.001) == 0


def test_the_small_reads_that_start_a_burst_are_not_paced():
    # As seen at the start of a 20,000-reading burst: a few reads of 14-31 messages 0.4 ms apart, then the
    # broker paused and a read brought 2 messages after 1.6 ms (1,250/s, a trickle by its own rate).
    pacer = ReadPacer()
    t = trickle(pacer, 300, 10)
    for n in (23, 21, 31, 24, 14):
        t += 0.0004
        pacer.read(n, t)
    t += 0.0016
    pacer.read(2, t)
    assert pacer.wait_s(t) == 0
    # Once the burst has been over for READ_GAP_S, a trickle is paced again.
    t = trickle(pacer, 300, 40, start=t)
    assert pacer.wait_s(t) > 0


def test_a_few_quick_messages_of_a_trickle_do_not_count_as_a_burst():
    pacer = ReadPacer()
    t = trickle(pacer, 300, 10)
    pacer.read(BURST_MIN_READ - 1, t + 0.0001)  # several messages at once, yet fewer than a burst's read
    assert pacer.wait_s(t + 0.0001) > 0
