"""The collector resend timer of shared/protocol.md section 10 (the simulator's `ResendTimer`)."""

from __future__ import annotations

import random

from gateway.simulator import ResendTimer

W = 10


def pending(*seqs: int) -> dict[int, list]:
    return {s: [b"", 0.0] for s in seqs}


def test_progress_keeps_a_slow_gateway_from_triggering_resends():
    t = ResendTimer(5.0, 60.0, random.Random(1))
    p = pending(*range(100))
    assert t.check(0.0, p, False, W) == 0  # armed
    for step in range(1, 50):  # an ack every 4 s: never 5 s without progress
        now = step * 4.0
        assert t.progress(now, step, pending(*range(step + 1, 100))) == 0
        assert t.check(now + 0.1, p, False, W) == 0


def test_expiry_resends_one_window_and_backs_off_with_jitter_up_to_the_cap():
    t = ResendTimer(5.0, 60.0, random.Random(2))
    p = pending(*range(1000))
    t.check(0.0, p, False, W)
    now, fired, gaps = 0.0, [], []
    while now < 400:
        now += 0.1
        n = t.check(now, p, False, W)
        if n:
            fired.append(now)
            assert n == W
    gaps = [b - a for a, b in zip(fired, fired[1:], strict=False)]
    assert len(fired) <= 12  # 400 s without progress: a handful of windows, not a storm
    assert all(g <= 60.1 for g in gaps) and max(gaps) > 30  # doubling, capped at 60 s
    unjittered = [min(60, 5 * 2 ** (i + 1)) for i in range(len(gaps))]
    assert any(abs(a - b) > 0.5 for a, b in zip(gaps, unjittered, strict=True))  # jitter


def test_recovery_is_ack_clocked_and_ends_when_the_gateway_is_ahead():
    t = ResendTimer(5.0, 60.0, random.Random(3))
    p = pending(*range(50))
    assert t.check(0.0, p, True, W) == W  # after a reconnect: one window at once
    t.window_top = 9
    assert t.progress(1.0, 9, pending(*range(10, 50))) == W  # ack stopped at the window's top: the next window
    t.window_top = 19
    assert t.progress(2.0, 14, pending(*range(15, 50))) == 0  # partial: wait for the rest of the window
    assert t.progress(3.0, 30, pending(*range(31, 50))) == 0  # beyond the window: originals arrive, recovery ends
    assert t.progress(4.0, 39, pending(*range(40, 50))) == 0
