"""The spool writer's inbox: groups end early in a burst (also its last, small group), and it says when ingest
outruns the group commits."""

from __future__ import annotations

import threading
import time

from gateway.protocol import Reading
from gateway.spool import BURST_QUIET_S, Entry, GroupQueue


def entries(n: int) -> list[Entry]:
    return [Entry(Reading("d", "a", 1, s, "s", None, "none", 1.0, "C", False, "none", 0)) for s in range(n)]


def test_a_small_group_waits_out_the_window_at_a_low_rate():
    q = GroupQueue(maxsize=100, group_max=10, idle_gap_s=0.02, early_min=5)
    q.put_all(entries(2))
    started = time.monotonic()
    assert len(q.take_group(0.5)) == 2
    assert time.monotonic() - started >= 0.45  # a trickle: the window gathers more into one fsync


def test_the_last_small_group_of_a_burst_is_taken_at_the_first_pause():
    q = GroupQueue(maxsize=100, group_max=10, idle_gap_s=0.02, early_min=5)
    q.put_all(entries(12))
    assert len(q.take_group(5.0)) == 10  # full: taken at once
    started = time.monotonic()
    assert len(q.take_group(5.0)) == 2  # the burst's rest: not held for the 5 s window
    assert time.monotonic() - started < 2.0


def test_bursting_while_groups_fill_up_and_readings_keep_coming():
    q = GroupQueue(maxsize=100, group_max=10, idle_gap_s=0.01, early_min=5)
    assert not q.bursting
    q.put_all(entries(25))
    q.take_group(1.0)
    assert q.bursting  # a full group taken, 15 wait
    q.take_group(1.0)
    assert q.bursting  # full again, 5 wait
    q.take_group(1.0)
    assert not q.bursting  # the burst's last, partial group
    q.put_all(entries(10))
    q.take_group(1.0)
    assert q.bursting  # full, and readings came just now
    time.sleep(BURST_QUIET_S + 0.05)
    assert not q.bursting  # ended on a full group, but arrivals stopped: over


def test_put_all_blocks_while_full_and_keeps_the_order():
    q = GroupQueue(maxsize=10, group_max=10)
    batch = entries(25)
    putter = threading.Thread(target=q.put_all, args=(batch,))
    putter.start()
    taken: list[Entry] = []
    while len(taken) < 25:
        taken += q.take_group(0.05)
    putter.join(5)
    assert [e.item.seq for e in taken] == list(range(25))
