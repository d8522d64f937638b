"""Tick wraparound, the heartbeat monitor's exact timeout, drift-free schedules, the link supervisor."""

from iotcollector.heartbeat import HeartbeatMonitor, Periodic
from iotcollector.linksup import LinkSupervisor
from iotcollector.ticks import TICKS_PERIOD, ManualTicks, ticks_add, ticks_diff

SMALL = 1 << 16  # a tick period small enough to wrap within a test


def test_ticks_diff_across_wraparound():
    for period in (SMALL, TICKS_PERIOD):
        before = period - 5
        after = ticks_add(before, 10, period)
        assert after == 5
        assert ticks_diff(after, before, period) == 10
        assert ticks_diff(before, after, period) == -10
        half = period // 2
        assert ticks_diff(ticks_add(0, half - 1, period), 0, period) == half - 1
        assert ticks_diff(ticks_add(0, half, period), 0, period) == -half  # beyond half: reads negative


def test_manual_ticks_wraps_and_counts_true_time():
    clock = ManualTicks(SMALL - 3, SMALL)
    clock.advance(5)
    assert clock.ticks_ms() == 2
    assert clock.elapsed_ms == 5
    try:
        ManualTicks(0, 1000)
        raise AssertionError("a period that is not a power of two must be refused")
    except ValueError:
        pass


def _takeover_ms(start, timeout=3000):
    clock = ManualTicks(start, SMALL)
    mon = HeartbeatMonitor(clock, timeout)
    clock.advance(700)
    mon.beat(clock.ticks_ms())
    waited = 0
    while not mon.expired(clock.ticks_ms()):
        clock.advance(1)
        waited += 1
        assert waited <= timeout, "never expired"
    return waited


def test_takeover_exactly_after_timeout_not_earlier():
    for start in (0, 1234, SMALL - 800, SMALL - 2000, SMALL - 3700):  # several cross the wraparound
        assert _takeover_ms(start) == 3000, start


def test_classic_bug_would_fire_early():
    # The classic pair sketch adds the whole elapsed time on every loop; ticks_diff-based timing does not
    clock = ManualTicks(0, SMALL)
    mon = HeartbeatMonitor(clock, 3000)
    start = clock.ticks_ms()
    classic_elapsed = 0
    fired_classic = None
    for ms in range(1, 3001):
        clock.advance(1)
        classic_elapsed += clock.ticks_diff(clock.ticks_ms(), start)
        if fired_classic is None and classic_elapsed >= 3000:
            fired_classic = ms
        assert mon.expired(clock.ticks_ms()) == (ms >= 3000), ms
    assert fired_classic < 100


def test_expired_latches_past_half_period():
    clock = ManualTicks(0, SMALL)
    mon = HeartbeatMonitor(clock, 1000)
    clock.advance(1000)
    assert mon.expired(clock.ticks_ms())
    clock.advance(SMALL // 2)  # the raw difference now wraps to a small value: the latch keeps it expired
    assert mon.expired(clock.ticks_ms())
    mon.beat(clock.ticks_ms())
    assert not mon.expired(clock.ticks_ms())
    fresh = HeartbeatMonitor(clock, 1000)
    clock.advance(SMALL // 2 + 10)  # never polled, more than half a period later: negative means expired
    assert fresh.expired(clock.ticks_ms())


def test_periodic_is_drift_free_across_wrap():
    clock = ManualTicks(SMALL - 2500, SMALL)
    sched = Periodic(clock, 1000)
    fired = []
    for _ in range(10000):
        if sched.due(clock.ticks_ms()):
            fired.append(clock.elapsed_ms)
        clock.advance(7)  # a loop period that does not divide the schedule
    assert len(fired) == 70
    for i in range(1, len(fired)):
        assert fired[i] - fired[i - 1] in (994, 1001), fired[i] - fired[i - 1]
    assert fired[-1] - fired[0] <= 69 * 1000 + 7  # no accumulated drift


def test_link_supervisor_backoff_with_jitter():
    clock = ManualTicks(SMALL - 100, SMALL)
    values = [0.0, 0.999, 0.5]
    idx = [0]

    def rand():
        idx[0] += 1
        return values[(idx[0] - 1) % 3]

    sup = LinkSupervisor(clock, rand, base_ms=1000, max_ms=8000, jitter=0.5)
    assert sup.should_try(clock.ticks_ms())
    delays = [sup.failed(clock.ticks_ms()) for _ in range(6)]
    nominal = [1000, 2000, 4000, 8000, 8000, 8000]
    for d, n in zip(delays, nominal):
        assert n // 2 <= d <= n, (d, n)
    assert delays[0] == 1000 and delays[1] == 1001 and delays[3] == 8000
    assert not sup.should_try(clock.ticks_ms())
    clock.advance(delays[-1] - 1)
    assert not sup.should_try(clock.ticks_ms())
    clock.advance(1)
    assert sup.should_try(clock.ticks_ms())
    sup.connected()
    assert not sup.should_try(clock.ticks_ms()) and sup.failures == 0
    assert sup.failed(clock.ticks_ms()) <= 1000  # a success resets the backoff


def test_link_supervisor_never_a_tight_loop():
    # an outage of 10 minutes polled every 20 ms: attempts stay few, and never closer than base*(1-jitter)
    clock = ManualTicks(0, SMALL)
    sup = LinkSupervisor(clock, lambda: 0.999, base_ms=1000, max_ms=30000, jitter=0.5)
    last = None
    gaps = []
    for _ in range(600000 // 20):
        now = clock.ticks_ms()
        if sup.should_try(now):
            if last is not None:
                gaps.append(clock.elapsed_ms - last)
            last = clock.elapsed_ms
            sup.failed(now)
        clock.advance(20)
    assert min(gaps) >= 500
    assert len(gaps) + 1 <= 45, len(gaps)
