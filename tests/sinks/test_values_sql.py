"""The drain's hand-built INSERT (gateway.sinks.mysql.build_values_sql): hostile text lands verbatim in a real
MariaDB under both string-escaping modes, and timestamps are formatted exactly (generated inputs)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sinks.base import ms_to_datetime
from gateway.sinks.mysql import build_values_sql, init_schema
from gateway.spool import StoredReading

EPOCH = dt.datetime(1970, 1, 1)


@given(st.integers(min_value=0, max_value=253402300799999))  # up to 9999-12-31 23:59:59.999
def test_timestamps_are_formatted_exactly(ms: int) -> None:
    expected = (EPOCH + dt.timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M:%S") + f".{ms % 1000:03d}"
    assert ms_to_datetime(ms) == expected


def text(max_size: int) -> st.SearchStrategy[str]:
    """Printable ASCII (all the protocol lets through, and more: it also refuses quotes and backslashes in
    units), weighted towards what breaks hand-made SQL: quotes, backslashes, percent signs."""
    chars = st.one_of(st.sampled_from("'\"\\%_;`"), st.characters(min_codepoint=0x20, max_codepoint=0x7E))
    return st.text(chars, min_size=1, max_size=max_size)


@pytest.mark.servers
@pytest.mark.parametrize("no_backslash_escapes", [False, True])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(text(32), text(16), text(32), text(6), text(16)), min_size=1, max_size=8))
def test_hostile_text_is_stored_verbatim(sandbox, no_backslash_escapes: bool, rows: list[tuple]) -> None:
    readings = [StoredReading(dev, node, 1, seq, site, 1700000000000 + seq, "rtc", clock, 0.5, unit, seq % 2,
                              1700000000500) for seq, (dev, node, site, clock, unit) in enumerate(rows)]
    with sandbox.connect(sandbox.primary_name()) as conn, conn.cursor() as cur:
        init_schema(conn, "values_sql_test")
        mode = "NO_BACKSLASH_ESCAPES" if no_backslash_escapes else ""
        cur.execute(f"SET SESSION sql_mode = '{mode}'")
        cur.execute("DELETE FROM readings")
        cur.execute(build_values_sql(readings, no_backslash_escapes=no_backslash_escapes))
        cur.execute("SELECT device, node, site, clock, unit, cached, sampled_at FROM readings ORDER BY seq")
        stored = cur.fetchall()
    assert [row[:5] for row in stored] == [(r.device, r.node, r.site, r.clock, r.unit) for r in readings]
    assert [row[5] for row in stored] == [r.cached for r in readings]
    assert stored[0][6] == dt.datetime(2023, 11, 14, 22, 13, 20)
