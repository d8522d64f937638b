"""Native (C) fast paths of Python code that stays the authority.

`_values` reads a batch from the spool file and renders the MySQL multi-row INSERT for it, exactly as
`gateway.sinks.mysql.build_values_sql` would (tested for equality on generated rows), for the rows in a plain
domain; any other batch goes the Python way. It is built when the package is installed on a machine with a C
compiler and the Python and SQLite headers (Debian: gcc, python3-dev, libsqlite3-dev); without it everything works,
the drain only spends more CPU per row.

It opens its own read-only connection to the spool, so it must call the very SQLite library Python's sqlite3 module
calls: two copies of SQLite in one process would not see each other's file locks. Both link the system's shared
library on Debian; a differing version means they do not, and the fast path is then not used.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _load():  # noqa: ANN202 - the module or None
    try:
        from gateway.native import _values
    except ImportError as exc:
        return None, f"not built ({exc})"
    if _values.sqlite_version() != sqlite3.sqlite_version:
        return None, (f"built against SQLite {_values.sqlite_version()}, Python's sqlite3 runs "
                      f"{sqlite3.sqlite_version}: not the same library")
    return _values, ""


_module, WHY_NOT = _load()
AVAILABLE = _module is not None
ReaderError: type[Exception] = _module.ReaderError if _module is not None else RuntimeError


def values_reader(path: str | Path, select_sql: str, prefix: str):  # noqa: ANN201 - _values.ValuesReader | None
    """A reader of spool batches as INSERT text (`take(after, limit) -> (ids, sql) | None`), or None when the
    native module is not there (WHY_NOT says why).

    `select_sql` selects `id` and then StoredReading's fields in order, with two parameters (ids above, limit);
    `prefix` is the statement's text before the first row's tuple."""
    if _module is None:
        return None
    return _module.ValuesReader(str(path), select_sql, prefix)
