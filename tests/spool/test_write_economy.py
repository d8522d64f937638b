"""The spool's write economy keeps its guarantees: a group of duplicates writes nothing, batches waiting for
confirmation live in memory (and are written again after a restart), out-of-order confirmations never hide
new rows, and the pipelined drain loses and duplicates nothing when the sink fails mid-stream."""

from __future__ import annotations

import sqlite3
import time

from gateway.drain import DrainWorker
from gateway.protocol import Reading
from gateway.sandbox.launch import wait_for
from gateway.sinks.base import SinkUnavailable, WriteOutcome
from gateway.sinks.sqlite import SQLiteSink
from gateway.spool import Entry, Spool
from tests.helpers import drain_until_empty


def reading(seq: int, device: str = "d1") -> Reading:
    return Reading(device, "a", 1, seq, "s", 1700000000000 + seq, "rtc", 1.0, "C", False, "ok", 1700000000000)


def spool_holding(path, readings: int, group: int, **kwargs) -> Spool:  # noqa: ANN001 - a path
    """A spool at `path` holding readings 0..readings-1 of d1, committed in groups of `group`."""
    spool = Spool(path, **kwargs)
    for start in range(0, readings, group):
        spool.commit_group([Entry(reading(s)) for s in range(start, min(readings, start + group))])
    return spool


def test_a_group_of_duplicates_writes_nothing_and_is_still_acknowledged(tmp_path):
    spool = Spool(tmp_path / "s.db")
    spool.commit_group([Entry(reading(s)) for s in range(5)])
    changes, wal = spool.conn.total_changes, (tmp_path / "s.db-wal").stat().st_size
    result = spool.commit_group([Entry(reading(s)) for s in (1, 3, 4)])
    assert result.marks[("d1", "a", 1)] == ("s", 4)
    assert spool.conn.total_changes == changes and (tmp_path / "s.db-wal").stat().st_size == wal
    assert spool.depth == 5


def test_unconfirmed_batches_are_in_memory_and_written_again_after_a_restart(tmp_path):
    spool = Spool(tmp_path / "s.db")
    spool.commit_group([Entry(reading(s)) for s in range(10)])
    conn = spool.drain_connection()
    spool.written(conn, spool.take(conn, 4).ids, "e1/1/0-1-4")
    assert spool.stats().unconfirmed == 4 and spool.stats().pending == 6
    spool.close()
    again = Spool(tmp_path / "s.db")
    conn = again.drain_connection()
    assert again.unconfirmed_tokens(conn) == [] and len(again.take(conn, 100)) == 10


def test_new_rows_after_an_out_of_order_confirmation_are_taken(tmp_path):
    spool = Spool(tmp_path / "s.db")
    spool.commit_group([Entry(reading(s)) for s in range(8)])
    conn = spool.drain_connection()
    first = spool.take(conn, 4).ids
    spool.written(conn, first, "A")
    second = spool.take(conn, 4).ids
    spool.written(conn, second, "B")
    assert spool.confirmed(conn, ["B"]) == 4  # the newest rows go first: SQLite may reuse their ids
    spool.commit_group([Entry(reading(s)) for s in range(8, 11)])
    taken = spool.take(conn, 100)
    assert sorted(r[3] for r in taken.rows) == [8, 9, 10] and not set(first) & set(taken.ids)
    assert spool.confirmed(conn, ["A"]) == 4 and spool.depth == 3


class FlakySQLiteSink(SQLiteSink):
    """The real SQLite sink, failing its 2nd and 5th writes (a database that drops out mid-stream)."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.calls = 0

    def write_prepared(self, prepared: object) -> WriteOutcome:
        self.calls += 1
        if self.calls in (2, 5):
            raise SinkUnavailable("injected failure")
        return super().write_prepared(prepared)


def test_pipelined_drain_with_failures_writes_every_reading_once(tmp_path):
    spool = spool_holding(tmp_path / "s.db", 3000, 500)
    sink = FlakySQLiteSink(tmp_path / "readings.db")
    drain = DrainWorker(spool, sink, batch_size=200, retry_max_s=0.05, in_flight=2)
    drain_until_empty(drain, 30, "the spool to drain", join_s=10)
    assert sink.calls > 5 and drain.error is None
    rows = sqlite3.connect(tmp_path / "readings.db").execute("SELECT seq, count(*) FROM readings GROUP BY seq").fetchall()
    assert len(rows) == 3000 and all(n == 1 for _, n in rows)


def test_multi_row_inserts_store_exactly_what_executemany_would(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gateway.spool import ROWS_PER_STATEMENT, execute_rows

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT, c REAL)")
    rows_strategy = st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.text(max_size=20),
                                       st.floats(allow_nan=False)), max_size=3 * ROWS_PER_STATEMENT + 7)

    @settings(max_examples=40, deadline=None)
    @given(rows_strategy)
    def check(rows):
        conn.execute("DELETE FROM t")
        execute_rows(conn, "INSERT INTO t (a, b, c) VALUES {}", rows)
        assert conn.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == rows

    check()


def test_the_drain_yields_to_a_burst_for_a_bounded_time(tmp_path):
    spool = spool_holding(tmp_path / "s.db", 100, 100)
    sink = SQLiteSink(tmp_path / "readings.db")
    drain = DrainWorker(spool, sink, batch_size=50)
    drain.yield_to = lambda: True  # a burst that never ends
    drain.yield_max_s = 1.5
    drain._took_at = time.monotonic()  # as if a batch had just been taken
    drain.start()
    try:
        wait_for(lambda: drain.is_alive(), 5, "the drain to start")
        time.sleep(0.7)
        assert spool.depth == 100  # nothing taken while the burst is on
        wait_for(lambda: spool.depth == 0, 30, "the drain to write anyway once yield_max_s has passed")
    finally:
        drain.stop()
        drain.join(10)
    assert drain.error is None


def test_multi_row_inserts_use_few_statement_sizes(tmp_path):
    # SQLite keeps every distinct statement prepared (about 1 KB per row of its VALUES list): group commits of
    # every size must not each bring their own statement (at 1,000 readings/s that held 38 MB).
    from gateway.spool import _rows_sql, execute_rows

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER)")
    _rows_sql.cache_clear()
    for n in range(1, 1201):
        execute_rows(conn, "INSERT INTO t (a) VALUES {}", [(i,) for i in range(n)])
    assert _rows_sql.cache_info().currsize <= 10
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == sum(range(1, 1201))


class ConfirmingSQLiteSink(SQLiteSink):
    """A sink that confirms every batch at once but, like the replicated writer, needs confirmation; it records
    the size of every batch written."""

    needs_confirmation = True

    def __init__(self, path) -> None:
        super().__init__(path)
        self.sizes: list[int] = []

    def write_prepared(self, prepared: object) -> WriteOutcome:
        self.sizes.append(len(prepared))  # type: ignore[arg-type]
        super().write_prepared(prepared)
        return WriteOutcome(f"t{len(self.sizes)}")


def test_a_confirmed_backlog_ends_in_halving_batches_and_a_trickle_does_not(tmp_path):
    from gateway.drain import TAPER_BELOW

    spool = spool_holding(tmp_path / "s.db", 20_000, 5000, max_readings=100_000)
    sink = ConfirmingSQLiteSink(tmp_path / "readings.db")
    drain = DrainWorker(spool, sink, batch_size=4000, batch_max=4000, in_flight=1)
    drain.start()
    try:
        wait_for(lambda: spool.depth == 0, 30, "the backlog to drain")
        backlog = list(sink.sizes)
        spool.commit_group([Entry(reading(s)) for s in range(20_000, 21_500)])  # a later, smaller arrival
        wait_for(lambda: spool.depth == 0, 30, "the trickle to drain")
    finally:
        drain.stop()
        drain.join(10)
    assert sum(backlog) == 20_000 and drain.error is None
    assert backlog[:3] == [4000, 4000, 4000]  # full batches while the backlog is large
    tail = backlog[3:]
    assert tail == sorted(tail, reverse=True) and tail[-1] <= TAPER_BELOW and len(tail) >= 3  # then halving
    assert sink.sizes[len(backlog):] == [1500]  # not a backlog: taken whole


def test_batch_size_moves_toward_the_target_write_time(tmp_path):
    """Full batches that write fast grow toward what writes in target_write_s (at most fourfold), a partial
    batch never grows it, a slow one halves it; always within batch_min..batch_max."""
    drain = DrainWorker(Spool(tmp_path / "s.db"), SQLiteSink(tmp_path / "r.db"), batch_size=1000,
                        batch_max=10_000, target_write_s=0.25)
    drain._adapt(1000, 0.1)
    assert drain.batch_now == 2500  # 0.1 s of 0.25: grown to what writes in 0.25 s
    drain._adapt(2500, 0.01)
    assert drain.batch_now == 10_000  # far under the target: four times, no more
    drain._adapt(5000, 0.01)
    assert drain.batch_now == 10_000  # a partial batch says nothing about a full one
    drain.batch_now = 2000
    drain._adapt(2000, 0.2)
    assert drain.batch_now == 2500  # 0.2 s of 0.25: grown by a quarter
    drain._adapt(100, 0.001)
    assert drain.batch_now == 2500  # a partial batch says nothing about a full one
    drain._adapt(2500, 0.3)
    assert drain.batch_now == 2500  # over the target, under twice it: kept
    for _ in range(3):
        drain._adapt(drain.batch_now, 0.05)
    assert drain.batch_now == 10_000  # capped
    drain._adapt(10_000, 0.6)
    assert drain.batch_now == 5000  # slow: halved
    for _ in range(20):
        drain._adapt(drain.batch_now, 5.0)
    assert drain.batch_now == drain.batch_min
