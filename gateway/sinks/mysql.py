"""MySQL/MariaDB through PyMySQL: connections, schema migrations, batched idempotent inserts keyed on the
reading identity. The sink that uses them is the replication-aware writer (`gateway.sinks.replicated`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace

import pymysql
from pymysql.constants import SERVER_STATUS
from pymysql.converters import escape_string

from gateway.sinks.base import second_text, status_params
from gateway.sinks.schema import STATUS_COLUMNS, migrate
from gateway.spool import ReadingRow
from gateway.topology.conn import Credentials, open_connection
from gateway.topology.dialect import quote_ident

log = logging.getLogger(__name__)

# The columns a stream repeats in every row come first: a batch renders them once per stream (build_values_sql).
INSERT_PREFIX = ("INSERT IGNORE INTO readings (device, node, site, clock_source, clock, unit, boot, seq, sampled_at, "
                 "value, cached, received_at) VALUES ")


# Every writer session stores and reads timestamps in UTC and speaks full UTF-8.
SESSION_OPTIONS = {"init_command": "SET time_zone = '+00:00'", "charset": "utf8mb4"}


def connect(ep: str, creds: Credentials, *, database: str | None = None, autocommit: bool = False,
            read_timeout: float | None = 30.0) -> pymysql.connections.Connection:
    """Open a writer session to `HOST:PORT` (UTC session time zone, TLS when a CA is given) through
    `open_connection`; `read_timeout` replaces the account's I/O timeout (schema migrations may take long)."""
    return open_connection(ep, replace(creds, io_timeout=read_timeout), database=database, autocommit=autocommit,
                           **SESSION_OPTIONS)


def values_sql(conn: pymysql.connections.Connection, rows: Sequence[ReadingRow]) -> str:
    """One multi-row `INSERT IGNORE … VALUES (…),(…)` for the rows.

    Built here rather than by PyMySQL's generic per-value escaping, which took about 60 % of the drain's time
    (profiled): numbers are formatted directly and every string goes through the connection's own escaping
    rule (backslash escapes, or quote doubling under NO_BACKSLASH_ESCAPES), so nothing reaches the SQL raw.
    """
    return build_values_sql(rows, no_backslash_escapes=no_backslash_escapes(conn))


def no_backslash_escapes(conn: pymysql.connections.Connection) -> bool:
    """True if the session runs with NO_BACKSLASH_ESCAPES (strings then escape quotes by doubling)."""
    return bool(conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES)


def _double_quotes(text: str) -> str:
    """String escaping under NO_BACKSLASH_ESCAPES: a quote is written twice, a backslash is an ordinary byte."""
    return text.replace("'", "''")


def build_values_sql(rows: Sequence[ReadingRow], *, no_backslash_escapes: bool) -> str:
    """`values_sql` without a connection, for a given escaping rule (built ahead of the write).

    The text columns repeat across a batch (a stream's device, node, site, clock source, clock state and unit), so
    each combination is escaped and rendered once per batch, and so is each second of the sampling times and each
    arrival time (a read's readings share one). Each row is unpacked once (StoredReading's fields are in column
    order): attribute reads cost a quarter of the build. Integers go through `:d`, which refuses anything else."""
    quote = _double_quotes if no_backslash_escapes else escape_string
    heads: dict[tuple[str, ...], str] = {}
    seconds: dict[int, str] = {}
    arrivals: dict[int, str] = {}
    isfinite = math.isfinite
    parts: list[str] = []
    append = parts.append
    for device, node, boot, seq, site, ts, src, clock, value, unit, cached, received_ms in rows:
        key = (device, node, site, src, clock, unit)
        head = heads.get(key)
        if head is None:
            head = heads[key] = "('" + "','".join([quote(text) for text in key]) + "',"
        value = float(value)
        if not isfinite(value):
            raise ValueError(f"reading {device}/{node}/{boot}/{seq}: value {value} is not finite")
        if ts is None:
            sampled = "NULL"
        else:
            sec, milli = divmod(int(ts), 1000)
            text = seconds.get(sec) or seconds.setdefault(sec, second_text(sec))
            sampled = f"'{text}.{milli:03d}'"
        received = arrivals.get(received_ms)
        if received is None:
            sec, milli = divmod(int(received_ms), 1000)
            text = seconds.get(sec) or seconds.setdefault(sec, second_text(sec))
            received = arrivals[received_ms] = f"'{text}.{milli:03d}'"
        append(f"{head}{boot:d},{seq:d},{sampled},{value!r},{1 if cached else 0},{received})")
    return INSERT_PREFIX + ",".join(parts)


def insert_rows(conn: pymysql.connections.Connection, rows: Sequence[ReadingRow]) -> None:
    """Insert rows in one transaction, as one multi-row statement.

    `INSERT IGNORE` keyed on the identity makes a re-applied batch harmless. The batch's GTID, where the
    caller needs it, is read afterwards in the same session with the dialect's `last_write_sql()`.
    """
    with conn.cursor() as cur:
        cur.execute(values_sql(conn, rows))
        conn.commit()


def upsert_statuses(conn: pymysql.connections.Connection, statuses: Sequence) -> None:
    """Upsert the latest status per (site, device, node) in one transaction (parameters escaped by PyMySQL)."""
    names = [c.strip() for c in STATUS_COLUMNS.split(",")]
    update = ", ".join(f"{c} = VALUES({c})" for c in names[3:])
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO device_status ({STATUS_COLUMNS}) VALUES ({', '.join(['%s'] * len(names))}) "
                        f"ON DUPLICATE KEY UPDATE {update}", status_params(statuses))
        conn.commit()


# A DDL statement that already took effect: table exists, duplicate column, duplicate key name.
_REPEATED_DDL_ERRORS = (1050, 1060, 1061)


def _repeated_ddl(exc: Exception) -> bool:
    return isinstance(exc, pymysql.MySQLError) and bool(exc.args) and exc.args[0] in _REPEATED_DDL_ERRORS


def init_schema(conn: pymysql.connections.Connection, database: str, progress=None) -> list[int]:
    """Create the database if needed and apply the migrations (`iotgw db init`)."""
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
        cur.execute(f"USE {quote_ident(database)}")

        def execute(sql: str, params: tuple) -> list[tuple]:
            cur.execute(sql, params or None)
            return list(cur.fetchall())

        applied = migrate(execute, progress=progress, already_done=_repeated_ddl)
    conn.commit()
    return applied


def risky_grants(conn: pymysql.connections.Connection) -> list[str]:
    """Grants that let this account write through read_only (ALL or SUPER or READ_ONLY ADMIN on *.*)."""
    with conn.cursor() as cur:
        cur.execute("SHOW GRANTS")
        grants = [r[0] for r in cur.fetchall()]
    return [g for g in grants if " ON *.* " in g and any(k in g for k in ("ALL PRIVILEGES", "SUPER", "READ_ONLY ADMIN"))]
