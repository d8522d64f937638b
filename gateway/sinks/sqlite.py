"""The embedded default: a local SQLite database with the same readings table."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from gateway.sinks.base import Sink, SinkUnavailable, WriteOutcome, status_params, to_params
from gateway.sinks.schema import STATUS_COLUMNS, migrate
from gateway.spool import ReadingRow

INSERT_SQL = ("INSERT OR IGNORE INTO readings (device, node, boot, seq, site, sampled_at, clock_source, clock, value, "
              "unit, cached, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")


def _sqlite_sql(sql: str) -> str:
    """The migrations are written for MySQL; this maps the few differences for SQLite."""
    sql = sql.replace("%s", "?").replace(" ENGINE=InnoDB", "").replace("INT UNSIGNED", "INTEGER")
    if sql.startswith("ALTER TABLE readings ADD KEY "):
        name, cols = sql.removeprefix("ALTER TABLE readings ADD KEY ").split(" ", 1)
        return f"CREATE INDEX IF NOT EXISTS {name} ON readings {cols}"
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("KEY ")]
    text = "\n".join(lines)
    return text.replace("PRIMARY KEY (device, node, boot, seq),\n)", "PRIMARY KEY (device, node, boot, seq)\n)")


class SQLiteSink(Sink):
    """Readings in a local SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")

        def execute(sql: str, params: tuple) -> list[tuple]:
            return list(self.conn.execute(_sqlite_sql(sql), params))

        migrate(execute, now_sql="strftime('%Y-%m-%d %H:%M:%f', 'now')")

    def write(self, rows: Sequence[ReadingRow]) -> WriteOutcome:
        params = to_params(rows)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(INSERT_SQL, params)
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # locked or disk full: transient, keep spooling
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise SinkUnavailable(str(exc)) from exc
        return WriteOutcome(None)

    def write_statuses(self, statuses: Sequence) -> None:
        """Upsert the latest status per (site, device, node)."""
        if not statuses:
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(f"INSERT OR REPLACE INTO device_status ({STATUS_COLUMNS}) "
                                  f"VALUES ({','.join('?' * 14)})", status_params(statuses))
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise SinkUnavailable(str(exc)) from exc

    def close(self) -> None:
        self.conn.close()
