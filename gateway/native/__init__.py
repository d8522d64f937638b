"""Native (C) fast paths of Python code that stays the authority.

- `_values` reads a batch from the spool file and renders the MySQL multi-row INSERT for it, exactly as
  `gateway.sinks.mysql.build_values_sql` would, for the rows in a plain domain; any other batch goes the Python way.
- `_reading` reads the canonical reading payload exactly as `gateway.protocol._parse_canonical` does (None for
  anything else: the general JSON path decides).
- `_packets` splits what the broker sends into packets exactly as `gateway.ingest.wire._split` does.

Both are tested for equality with their Python versions on generated input. They are built when the package is
installed on a machine with a C compiler and the Python and SQLite headers (Debian: gcc, python3-dev,
libsqlite3-dev); without them everything works, the gateway only spends more CPU per reading.

`_values` opens its own read-only connection to the spool, so it must call the very SQLite library Python's
sqlite3 module calls: two copies of SQLite in one process would not see each other's file locks. Both link the
system's shared library on Debian; a differing version means they do not, and that fast path is then not used.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Each module is optional: a missing one leaves its reason here and the Python path in use.
try:
    from gateway.native import _values
except ImportError as exc:
    _values, WHY_NOT = None, f"not built ({exc})"
else:
    WHY_NOT = ""
    if _values.sqlite_version() != sqlite3.sqlite_version:
        WHY_NOT = (f"built against SQLite {_values.sqlite_version()}, Python's sqlite3 runs {sqlite3.sqlite_version}: "
                   "not the same library")
        _values = None
try:
    from gateway.native import _reading
except ImportError as exc:
    _reading, READING_WHY_NOT = None, f"not built ({exc})"
else:
    READING_WHY_NOT = ""
try:
    from gateway.native import _packets
except ImportError as exc:
    _packets, PACKETS_WHY_NOT = None, f"not built ({exc})"
else:
    PACKETS_WHY_NOT = ""

AVAILABLE = _values is not None  # the drain's values reader
ReaderError: type[Exception] = _values.ReaderError if _values is not None else RuntimeError


def values_reader(path: str | Path, select_sql: str, prefix: str):  # noqa: ANN201 - _values.ValuesReader | None
    """A reader of spool batches as INSERT text (`take(after, limit) -> (ids, sql) | None`), or None when the
    native module is not there (WHY_NOT says why).

    `select_sql` selects `id` and then StoredReading's fields in order, with two parameters (ids above, limit);
    `prefix` is the statement's text before the first row's tuple."""
    if _values is None:
        return None
    return _values.ValuesReader(str(path), select_sql, prefix)


def reading_parser(reading_type: type, max_payload: int, u32_max: int, ts_max: int, clock_valid_from_ms: int,
                   clock_future_slack_ms: int):  # noqa: ANN201 - the C function or None
    """`parse_canonical(payload, site, received_ms, topic_device) -> Reading | None`, with gateway.protocol's
    Reading type and limits; None when the module is not built (READING_WHY_NOT says why)."""
    if _reading is None:
        return None
    _reading.configure(reading_type, max_payload, u32_max, ts_max, clock_valid_from_ms, clock_future_slack_ms)
    return _reading.parse_canonical


def packet_splitter(message_type: type, packet_type: type, malformed: type[Exception]):  # noqa: ANN201
    """`split(data, limit) -> (packets, rest)` with gateway.ingest.wire's Message, Packet and MalformedPacket; None
    when the module is not built (PACKETS_WHY_NOT says why)."""
    if _packets is None:
        return None
    _packets.configure(message_type, packet_type, malformed)
    return _packets.split
