"""The one retry pacing (gateway.backoff): steps double up to the cap, jitter stays in range, reset starts over."""

from __future__ import annotations

import random

from gateway.backoff import Backoff, reconnect_backoff


def test_steps_double_up_to_the_cap_with_full_jitter() -> None:
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    runs = [[b.next_delay() for _ in ceilings] for b in (Backoff(1.0, base=0.05, rng=random.Random(i)) for i in range(300))]
    for step, ceiling in enumerate(ceilings):
        seen = [run[step] for run in runs]
        assert all(0.0 <= d <= ceiling for d in seen)
        assert max(seen) > 0.9 * ceiling and min(seen) < 0.1 * ceiling  # the whole range is used: full jitter


def test_floor_keeps_part_of_each_step_and_reset_starts_over() -> None:
    b = Backoff(2.0, base=0.1, floor=0.5, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(6)]
    assert 0.1 <= delays[0] <= 0.2 and 1.0 <= delays[-1] <= 2.0
    b.reset()
    assert 0.1 <= b.next_delay() <= 0.2


def test_reconnect_pacing_first_try_soon_then_at_most_five_seconds() -> None:
    b = reconnect_backoff()
    first = b.next_delay()
    assert first <= 0.2
    assert max(b.next_delay() for _ in range(40)) <= 5.0
