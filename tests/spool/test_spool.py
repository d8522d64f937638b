"""The spool on its own: watermarks (shared vectors), duplicates, backpressure, quarantine bounds, restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import Reading
from gateway.spool import READING_COLUMNS, Entry, Quarantined, Spool, StoredReading, read_stats

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def reading(seq: int, device: str = "d1", boot: int = 1) -> Reading:
    return Reading(device, "a", boot, seq, "s", 1700000000000 + seq, "rtc", 1.0, "C", False, "ok", 1700000000000)


def commit(spool: Spool, *items) -> dict:
    return spool.commit_group([Entry(i) for i in items]).marks


@pytest.mark.parametrize("vec", json.loads((VECTORS / "ack_watermark.json").read_text()), ids=lambda v: v["name"])
def test_watermark_vectors(tmp_path, vec):
    spool = Spool(tmp_path / "s.db")
    for seq, expected in zip(vec["arrivals"], vec["upto_after_each"], strict=True):
        _site, upto = commit(spool, reading(seq))[("d1", "a", 1)]
        assert (upto if upto >= 0 else None) == expected


def test_taken_rows_are_in_the_stored_reading_field_order(tmp_path):
    spool = Spool(tmp_path / "s.db")
    cached = Reading("d2", "b", 7, 3, "s", None, "none", -2.5, "V", True, "unset", 1700000000999)
    commit(spool, reading(0), cached)
    conn = spool.drain_connection()
    columns = [r[1] for r in conn.execute("PRAGMA table_info(spool)")]
    assert READING_COLUMNS.split(", ") == [c for c in columns if c not in ("id", "token")]
    taken = spool.take(conn, 10)
    assert len(taken) == 2 and taken.ids == sorted(taken.ids)
    assert taken.rows == [StoredReading.of(reading(0)), StoredReading.of(cached)]  # StoredReading's field order
    second = StoredReading(*taken.rows[1])
    assert (second.device, second.ts, second.value, second.cached, second.clock) == ("d2", None, -2.5, 1, "unset")


def test_watermarks_and_duplicates_survive_a_restart(tmp_path):
    spool = Spool(tmp_path / "s.db")
    commit(spool, reading(0), reading(1), reading(3))
    assert spool.depth == 3
    spool.close()
    again = Spool(tmp_path / "s.db")
    marks = commit(again, reading(1), reading(3))  # duplicates: re-acked, not stored
    assert marks[("d1", "a", 1)] == ("s", 1) and again.depth == 3
    assert commit(again, reading(2))[("d1", "a", 1)] == ("s", 3)
    assert again.depth == 4


def test_full_spool_refuses_new_readings_but_keeps_quarantine_and_duplicates(tmp_path):
    spool = Spool(tmp_path / "s.db", max_readings=5, resume_fraction=0.5)
    result = spool.commit_group([Entry(reading(s)) for s in range(8)])
    assert [e.item.seq for e in result.refused] == [5, 6, 7]
    assert spool.depth == 5 and spool.full
    assert result.marks[("d1", "a", 1)] == ("s", 4)  # refused readings are not acknowledged
    bad = Quarantined("mqtt", "t", "s", "not_json", None, "not_json", b"x", 0)
    result = spool.commit_group([Entry(bad), Entry(reading(1))])
    assert result.refused == [] and read_stats(tmp_path / "s.db").quarantined == 1
    conn = spool.drain_connection()
    spool.written(conn, spool.take(conn, 2).ids, None)
    assert spool.full  # 3 left: above resume_fraction * max_readings = 2.5, still paused (hysteresis)
    spool.written(conn, spool.take(conn, 1).ids, None)
    assert not spool.full


def test_quarantine_is_bounded_and_counts_evictions(tmp_path):
    spool = Spool(tmp_path / "s.db", quarantine_max=10)
    for i in range(25):
        spool.commit_group([Entry(Quarantined("mqtt", "t", "s", "not_json", None, "x", str(i).encode(), i))])
    st = read_stats(tmp_path / "s.db")
    assert st.quarantined == 10 and st.quarantine_evicted == 15


def test_unconfirmed_batches_are_requeued(tmp_path):
    spool = Spool(tmp_path / "s.db")
    commit(spool, *(reading(s) for s in range(10)))
    conn = spool.drain_connection()
    batch = spool.take(conn, 4)
    spool.written(conn, batch.ids, "0-1-5@db1")
    assert spool.unconfirmed_tokens(conn) == ["0-1-5@db1"] and len(spool.take(conn, 100)) == 6
    assert spool.requeue_unconfirmed(conn) == 4
    assert len(spool.take(conn, 100)) == 10
    spool.written(conn, spool.take(conn, 4).ids, "0-2-9@db2")
    assert spool.confirmed(conn, ["0-2-9@db2"]) == 4 and spool.depth == 6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), max_size=60), st.integers(min_value=1, max_value=7))
def test_watermark_is_the_contiguous_prefix_whatever_the_order(tmp_path_factory, arrivals, group):
    """Any arrival order, with duplicates, in any group sizes: the ack is the longest contiguous run from 0,
    every identity is stored once, and a restart (reload from the spool file) gives the same watermark."""
    path = tmp_path_factory.mktemp("wm") / "s.db"
    spool = Spool(path)
    for i in range(0, len(arrivals), group):
        spool.commit_group([Entry(reading(s)) for s in arrivals[i:i + group]])
    expected = -1
    while expected + 1 in set(arrivals):
        expected += 1
    assert spool.marks.current(("d1", "a", 1)) == expected
    assert spool.depth == len(set(arrivals))
    spool.close()
    assert Spool(path).marks.current(("d1", "a", 1)) == expected


STREAMS = [("d1", "a", 1), ("d1", "b", 1), ("d2", "a", 5)]
events = st.lists(st.one_of(
    # a group: readings (or quarantined ones with their identity) of any stream, any order, with duplicates
    st.lists(st.tuples(st.sampled_from(range(len(STREAMS))), st.integers(0, 12), st.booleans()), max_size=8),
    st.tuples(st.just("raise"), st.sampled_from(range(len(STREAMS))), st.integers(-1, 12)),  # the database's mark
), max_size=12)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(min_value=3, max_value=40))
def test_group_commits_against_a_model_of_the_watermarks(tmp_path_factory, script, max_readings):
    """Several streams, duplicates within and across groups, quarantined readings with an identity, the
    database's marks raised between groups, a spool that fills up: each stream's ack is the contiguous prefix of
    what is held (stored, quarantined or raised), a refused reading moves nothing, nothing is stored twice, and a
    restart reloads the same watermarks and held sequences."""
    path = tmp_path_factory.mktemp("model") / "s.db"
    spool = Spool(path, max_readings=max_readings)
    held: dict[tuple, set[int]] = {key: set() for key in STREAMS}  # the model: identities held per stream
    floor = {key: -1 for key in STREAMS}  # raised marks (everything up to them is held elsewhere)
    pending_raise: dict[tuple, int] = {}
    stored = 0
    for step in script:
        if step and step[0] == "raise":
            key, upto = STREAMS[step[1]], step[2]
            spool.raise_marks({key: ("s", upto)})
            pending_raise[key] = max(upto, pending_raise.get(key, -1))
            continue
        entries, expect_refused = [], []
        room = max_readings - spool.depth
        in_group: set[tuple] = set()
        new_rows = 0
        for index, seq, bad in step:
            key = STREAMS[index]
            if bad:
                item = Quarantined("mqtt", "t", "s", "bad_type", "val", "bad_type: val", b"{}", 1, (*key, seq))
            else:
                item = Reading(*key[:2], key[2], seq, "s", 1, "rtc", 1.0, "C", False, "ok", 1)
            entries.append(Entry(item))
            duplicate = seq <= floor[key] or seq in held[key] or (key, seq) in in_group
            if duplicate:
                continue
            if not bad and new_rows >= room:
                expect_refused.append(entries[-1])
                continue
            in_group.add((key, seq))
            new_rows += not bad
        result = spool.commit_group(entries)
        if in_group or any(bad for _, _, bad in step):  # a transaction ran: the raises went in first
            for key, upto in pending_raise.items():
                floor[key] = max(floor[key], upto)
            pending_raise.clear()
        for key, seq in in_group:
            held[key].add(seq)
        stored += new_rows
        assert [id(e) for e in result.refused] == [id(e) for e in expect_refused]
        for key in STREAMS:
            upto = floor[key]
            while upto + 1 in held[key]:
                upto += 1
            assert spool.marks.current(key) == upto
            if key in result.marks:
                assert result.marks[key] == ("s", upto)
        assert spool.depth == stored
    current = {key: spool.marks.current(key) for key in STREAMS}
    above = {key: {s for s in spool.marks.held.get(key, ()) if s > current[key]} for key in STREAMS}
    spool.close()
    again = Spool(path)
    assert {key: again.marks.current(key) for key in STREAMS} == current
    assert {key: {s for s in again.marks.held.get(key, ()) if s > current[key]} for key in STREAMS} == above


def test_quarantine_is_bounded_in_bytes_and_cuts_raw_to_1_kib(tmp_path):
    from gateway.protocol import Rejected
    from gateway.spool import QUARANTINE_RAW_MAX, Entry, Spool, quarantined, read_stats

    spool = Spool(tmp_path / "spool.db", quarantine_max=1000, quarantine_max_bytes=20_000)
    for i in range(60):
        spool.commit_group([Entry(quarantined("mqtt", "t/s/d/reading", "s", Rejected("too_large"),
                                              bytes([65 + i % 26]) * 100_000, i))])
    rows = spool.conn.execute("SELECT length(raw), raw_len, received_ms FROM quarantine ORDER BY id").fetchall()
    size = spool.conn.execute("SELECT sum(length(raw) + length(topic) + length(detail)) FROM quarantine").fetchone()[0]
    spool.close()
    assert size <= 20_000 and len(rows) < 60 and rows[-1][2] == 59  # the newest kept, the oldest evicted
    assert all(r[0] == QUARANTINE_RAW_MAX and r[1] == 100_000 for r in rows)
    assert read_stats(tmp_path / "spool.db").quarantine_evicted == 60 - len(rows)
