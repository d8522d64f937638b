"""The drain's native reader (gateway.native): on generated spool contents, hostile types and text included, it
renders exactly what the Python path (Spool.take + build_values_sql) renders, under either escaping rule, or
declines the batch; it declines only rows outside its plain domain; and a drain through it into a real MariaDB
stores every reading exactly."""

from __future__ import annotations

import math
import sqlite3
import struct

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway import native
from gateway.drain import DrainWorker
from gateway.sinks.mysql import INSERT_PREFIX, build_values_sql
from gateway.sinks.replicated import ReplicatedSink
from gateway.sinks.sqlite import SQLiteSink
from gateway.spool import READING_COLUMNS, TAKE_SQL, Spool
from tests.helpers import WRITER, drain_until_empty

LAST_MS = 253402300799999  # 9999-12-31 23:59:59.999


def test_the_native_reader_is_built_here() -> None:
    """The bootstrap installs its build dependencies (gcc, python3-dev, libsqlite3-dev): a missing one must not
    silently leave every run on the Python path."""
    assert native.AVAILABLE, native.WHY_NOT


pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason=f"native reader {native.WHY_NOT}")

plain_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="'\"\\"),
                     min_size=1, max_size=12)
any_text = st.one_of(plain_text, st.text(max_size=12), st.sampled_from(["'", "\\", '"', "a\x00b", "\n", "é", "\x1a"]))
plain_ms = st.integers(min_value=0, max_value=LAST_MS)
plain_value = st.floats(allow_nan=False, allow_infinity=False)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def plain_row(draw) -> tuple:  # noqa: ANN001
    return (draw(plain_text), draw(plain_text), draw(int64), draw(int64), draw(plain_text),
            draw(st.one_of(st.none(), plain_ms)), draw(plain_text), draw(plain_text), draw(plain_value),
            draw(plain_text), draw(int64), draw(plain_ms))


# What SQLite may hold in a column that is not STRICT: the declared kind, or anything else.
anything = st.one_of(st.none(), int64, st.floats(), any_text, st.binary(max_size=6))


@st.composite
def hostile_row(draw) -> tuple:  # noqa: ANN001
    """A plain row with one to three fields replaced: other texts, other types, out-of-range times, non-finite."""
    row = list(draw(plain_row()))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        col = draw(st.integers(min_value=0, max_value=11))
        value = draw(st.one_of(anything, any_text, st.integers(min_value=-(2**40), max_value=-1),
                               st.integers(min_value=LAST_MS + 1, max_value=2**62),
                               st.sampled_from([math.inf, -math.inf, math.nan, -0.0, 5e-324])))
        is_null = value is None or (isinstance(value, float) and math.isnan(value))  # SQLite stores NaN as NULL
        if not is_null or col == 5:  # only the sampling time may be NULL (the spool's schema)
            row[col] = value
    return tuple(row)


def is_plain(row: tuple) -> bool:
    """The reader's domain, said independently of its code."""
    def text(v) -> bool:  # noqa: ANN001
        return isinstance(v, str) and all(0x20 <= ord(c) <= 0x7E and c not in "'\"\\" for c in v)

    def ms(v) -> bool:  # noqa: ANN001
        return type(v) is int and 0 <= v <= LAST_MS

    device, node, boot, seq, site, ts, src, clock, value, unit, cached, received = row
    return (all(text(t) for t in (device, node, site, src, clock, unit)) and type(boot) is int and type(seq) is int
            and (ts is None or ms(ts)) and type(value) is float and math.isfinite(value) and type(cached) is int
            and ms(received))


def spool_with(tmp_path, rows: list[tuple]) -> Spool:  # noqa: ANN001
    """A spool holding exactly these rows (written with SQL: the types are whatever the row has)."""
    path = tmp_path / "spool.db"
    path.unlink(missing_ok=True)
    spool = Spool(path)
    spool.conn.execute("BEGIN")
    spool.conn.executemany(f"INSERT INTO spool ({READING_COLUMNS}) VALUES ({', '.join('?' * 12)})", rows)
    spool.conn.execute("COMMIT")
    spool.close()
    return Spool(path)  # opened again: it counts what it holds when it opens


def python_way(spool: Spool, conn: sqlite3.Connection, after: int, limit: int) -> tuple[list[int], list[tuple]]:
    taken = spool.take(conn, limit, after)
    return taken.ids, taken.rows


def check_agrees(tmp_path, rows: list[tuple], after: int = -1, limit: int = 10_000) -> object:  # noqa: ANN001
    spool = spool_with(tmp_path, rows)
    conn = spool.drain_connection()
    reader = native.values_reader(spool.path, TAKE_SQL, INSERT_PREFIX)
    try:
        got = reader.take(after, limit)
        ids, stored = python_way(spool, conn, after, limit)
        if got is None:
            assert not all(is_plain(r) for r in stored), "declined a batch of plain rows"
            return None
        assert all(is_plain(r) for r in stored), "rendered a row outside the plain domain"
        assert got[0] == ids
        if ids:
            assert got[1] == build_values_sql(stored, no_backslash_escapes=False)
            assert got[1] == build_values_sql(stored, no_backslash_escapes=True)
        return got
    finally:
        reader.close()
        conn.close()
        spool.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(plain_row(), min_size=1, max_size=20))
def test_plain_rows_render_exactly_as_the_python_path(tmp_path, rows) -> None:  # noqa: ANN001
    assert check_agrees(tmp_path, rows) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(plain_row(), hostile_row()), min_size=1, max_size=12),
       st.integers(min_value=-1, max_value=12), st.integers(min_value=1, max_value=12))
def test_any_rows_render_as_the_python_path_or_are_declined(tmp_path, rows, after, limit) -> None:  # noqa: ANN001
    event("declined" if check_agrees(tmp_path, rows, after, limit) is None else "rendered")


def test_one_hostile_row_sends_its_whole_batch_the_python_way(tmp_path) -> None:  # noqa: ANN001
    good = ("d1", "a", 1, 1, "s", 1700000000000, "rtc", "ok", 1.5, "C", 0, 1700000000001)
    quoted = ("d'1", *good[1:])
    assert check_agrees(tmp_path, [good, good[:3] + (2,) + good[4:]]) is not None
    assert check_agrees(tmp_path, [good, quoted]) is None
    assert check_agrees(tmp_path, [good, quoted], after=-1, limit=1) is not None  # the batch ends before it


def test_an_empty_spool_gives_an_empty_batch(tmp_path) -> None:  # noqa: ANN001
    assert check_agrees(tmp_path, []) == ([], INSERT_PREFIX)


def test_a_missing_spool_is_a_clear_error(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(native.ReaderError, match="opening the spool"):
        native.values_reader(tmp_path / "nowhere.db", TAKE_SQL, INSERT_PREFIX)


def test_a_select_of_other_columns_is_refused(tmp_path) -> None:  # noqa: ANN001
    spool = spool_with(tmp_path, [])
    try:
        with pytest.raises(native.ReaderError, match="13 columns"):
            native.values_reader(spool.path, "SELECT id FROM spool WHERE id > ? LIMIT ?", INSERT_PREFIX)
    finally:
        spool.close()


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


@pytest.mark.servers
def test_a_drain_through_the_reader_stores_every_reading_exactly(sandbox, tmp_path) -> None:  # noqa: ANN001
    """Plain batches go native, a batch with hostile text goes the Python way; every value arrives bit for bit."""
    values = [0.1, -1.0, 5e-324, 1e300, 123456789.123, 2.0**53 + 2, -1.5e-7, 20.0]
    rows = [(f"nat-{i % 3}", "a", 1, i, "site", None if i % 5 == 0 else 1700000000000 + i * 997, "rtc", "ok",
             values[i % len(values)], "C", i % 2, 1700000000500 + i) for i in range(4000)]
    rows[3000] = ("nat-'q\\", *rows[3000][1:])  # one hostile device name: its batch is rendered in Python
    spool = spool_with(tmp_path, rows)
    sink = ReplicatedSink([sandbox.endpoint("db1")], WRITER, confirm=False)
    native_batches = []
    drain = DrainWorker(spool, sink, batch_size=500, batch_max=500)
    take = spool.take

    def counting_take(conn, limit, after=-1, values=None):  # noqa: ANN001, ANN202
        taken = take(conn, limit, after, values)
        native_batches.append(taken.values_sql is not None)
        return taken

    spool.take = counting_take
    try:
        drain_until_empty(drain, 60, "the spool drained")
    finally:
        spool.close()
    assert native_batches.count(True) >= 5 and native_batches.count(False) >= 1
    with sandbox.connect(sandbox.primary_name()) as conn, conn.cursor() as cur:
        cur.execute("SELECT device, seq, value, sampled_at IS NULL, cached FROM iot.readings "
                    "WHERE device LIKE 'nat-%' ORDER BY seq")
        stored = cur.fetchall()
    assert len(stored) == len(rows)
    for (device, seq, value, no_time, cached), row in zip(stored, rows, strict=True):
        assert (device, seq, no_time, cached) == (row[0], row[3], row[5] is None, row[10])
        assert bits(value) == bits(row[8]), (seq, value, row[8])


def test_a_reader_that_cannot_open_leaves_the_drain_on_the_python_path(tmp_path, monkeypatch, caplog) -> None:  # noqa: ANN001
    """The fast path is optional: if it cannot open the spool, the drain says so and drains the Python way."""
    def refuse(*_args):  # noqa: ANN002, ANN202
        raise native.ReaderError("opening the spool: unable to open database file")

    class MySQLTextSink(SQLiteSink):  # a sink that would take INSERT text, so the drain tries the reader
        values_prefix = INSERT_PREFIX

    monkeypatch.setattr(native, "values_reader", refuse)
    spool = spool_with(tmp_path, [("d1", "a", 1, i, "s", None, "none", "none", 1.0, "C", 0, 1700000000000)
                                  for i in range(50)])
    drain = DrainWorker(spool, MySQLTextSink(tmp_path / "readings.db"))
    try:
        drain_until_empty(drain, 30, "the spool drained the Python way")
    finally:
        spool.close()
    assert drain.error is None and "native reader could not open the spool" in caplog.text
    assert sqlite3.connect(tmp_path / "readings.db").execute("SELECT count(*) FROM readings").fetchone()[0] == 50
