"""Versioned migrations of the readings schema (`iotgw db init`); the result equals shared/schema.sql."""

from __future__ import annotations

from collections.abc import Callable

# (version, description, statements). Append new versions; never edit an applied one.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "readings table keyed on the reading identity", [
        """CREATE TABLE IF NOT EXISTS readings (
  device       VARCHAR(32)  NOT NULL,
  node         VARCHAR(16)  NOT NULL,
  boot         INT UNSIGNED NOT NULL,
  seq          INT UNSIGNED NOT NULL,
  site         VARCHAR(32)  NOT NULL,
  sampled_at   DATETIME(3)  NULL,
  clock_source VARCHAR(4)   NOT NULL,
  clock        VARCHAR(6)   NOT NULL,
  value        DOUBLE       NOT NULL,
  unit         VARCHAR(16)  NOT NULL,
  cached       BOOLEAN      NOT NULL,
  received_at  DATETIME(3)  NOT NULL,
  PRIMARY KEY (device, node, boot, seq),
  KEY readings_sampled (sampled_at)
) ENGINE=InnoDB""",
    ]),
    (2, "index for per-site queries", [
        "ALTER TABLE readings ADD KEY readings_site_device (site, device, sampled_at)",
    ]),
    (3, "latest status per collector node", [
        """CREATE TABLE IF NOT EXISTS device_status (
  site         VARCHAR(32)  NOT NULL,
  device       VARCHAR(32)  NOT NULL,
  node         VARCHAR(16)  NOT NULL,
  boot         INT UNSIGNED NULL,
  state        VARCHAR(8)   NOT NULL,
  role         VARCHAR(8)   NULL,
  cached       INT UNSIGNED NULL,
  cap          INT UNSIGNED NULL,
  dropped      INT UNSIGNED NULL,
  reset_cause  VARCHAR(8)   NULL,
  store_err    INT UNSIGNED NULL,
  clock        VARCHAR(5)   NULL,
  period_ms    INT UNSIGNED NULL,
  received_at  DATETIME(3)  NOT NULL,
  PRIMARY KEY (site, device, node)
) ENGINE=InnoDB""",
    ]),
]

STATUS_COLUMNS = ("site, device, node, boot, state, role, cached, cap, dropped, reset_cause, store_err, clock, "
                  "period_ms, received_at")

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS iotgw_schema (
  version     INT UNSIGNED NOT NULL PRIMARY KEY,
  applied_at  DATETIME(3)  NOT NULL,
  description VARCHAR(200) NOT NULL
) ENGINE=InnoDB"""

LATEST = MIGRATIONS[-1][0]


def migrate(execute: Callable[[str, tuple], list[tuple]], *, now_sql: str = "NOW(3)",
            progress: Callable[[str], None] | None = None,
            already_done: Callable[[Exception], bool] = lambda _exc: False) -> list[int]:
    """Apply the migrations not yet applied, in order. `execute(sql, params) -> rows` runs one statement.

    DDL is not transactional: a process killed between a statement and its version row leaves the statement
    applied but unrecorded. `already_done(exc)` recognises the error a repeated statement raises (duplicate
    key name, table exists), so the next start records the version instead of failing forever.
    Returns the versions applied. Works for MySQL/MariaDB (`now_sql` NOW(3)) and SQLite (a text timestamp).
    """
    execute(VERSION_TABLE, ())
    done = {row[0] for row in execute("SELECT version FROM iotgw_schema", ())}
    applied = []
    for version, description, statements in MIGRATIONS:
        if version in done:
            continue
        for sql in statements:
            try:
                execute(sql, ())
            except Exception as exc:
                if not already_done(exc):
                    raise
        execute(f"INSERT INTO iotgw_schema (version, applied_at, description) VALUES (%s, {now_sql}, %s)",
                (version, description))
        applied.append(version)
        if progress:
            progress(f"schema version {version}: {description}")
    return applied
