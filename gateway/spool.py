"""The durable spool: SQLite in WAL mode with synchronous=FULL, filled by group commits.

A reading is acknowledged (MQTT PUBACK, end-to-end ack) only after the group commit that holds it.
The spool also keeps, per (device, node, boot), the contiguous watermark `upto` that end-to-end acks carry,
so duplicates are recognised (and re-acked) across restarts. Rows leave the spool when the sink has them:
at once for a plain sink, or when a replica has confirmed the batch (replicated writer).

Threading: one writer thread (`SpoolWriter`) does every ingest commit; the drain worker uses its own
connection. SQLite's WAL lets both proceed; `busy_timeout` covers the short write overlaps.

Disk writes per reading (an SD card wears out): every commit writes whole 4 KB pages to the WAL and fsyncs
it, so the spool commits as rarely as the guarantees allow. Ingest commits are grouped by time
(`group_commit_ms`, which bounds the ack latency); a batch handed to the sink is remembered in memory only
(a restart writes unconfirmed batches again, which the sinks' idempotent inserts make harmless), so rows are
written twice per life (insert, delete) and never updated; there is no secondary index to maintain.
"""

from __future__ import annotations

import collections
import functools
import logging
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from gateway import crashpoints
from gateway.protocol import Ack, Reading, Rejected

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL, node TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    site TEXT NOT NULL, ts INTEGER, src TEXT NOT NULL, clock TEXT NOT NULL,
    value REAL NOT NULL, unit TEXT NOT NULL, cached INTEGER NOT NULL, received_ms INTEGER NOT NULL,
    token TEXT  -- unused since written batches are tracked in memory; kept so older spool files still open
);
CREATE TABLE IF NOT EXISTS progress (
    device TEXT NOT NULL, node TEXT NOT NULL, boot INTEGER NOT NULL, site TEXT NOT NULL, upto INTEGER NOT NULL,
    PRIMARY KEY (device, node, boot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held (  -- sequences held above a stream's contiguous watermark (out of order)
    device TEXT NOT NULL, node TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (device, node, boot, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, source TEXT NOT NULL, topic TEXT NOT NULL,
    site TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL, field TEXT, detail TEXT NOT NULL, raw BLOB NOT NULL,
    raw_len INTEGER  -- the message's length before `raw` was cut to QUARANTINE_RAW_MAX bytes
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""



class StoredReading(NamedTuple):
    """A reading as the spool stores it and the sinks write it: one spool row, its fields in column order.

    A named tuple, so `executemany` takes it as it is. The drain reads rows back as plain tuples in the same
    order (`ReadingRow`, see `Taken`).
    """

    device: str
    node: str
    boot: int
    seq: int
    site: str
    ts: int | None  # sampled at, ms since 1970 (UTC); None when the collector had no clock
    src: str  # where the timestamp came from (rtc, ntp, none, ...)
    clock: str
    value: float
    unit: str
    cached: int  # 1 if the collector sent it from its cache (stored as an integer in both databases)
    received_ms: int  # when the gateway received it, ms since 1970 (UTC)

    @classmethod
    def of(cls, r: Reading) -> StoredReading:
        """The spool row of a validated reading."""
        return cls(r.device, r.node, r.boot, r.seq, r.site, r.ts, r.src, r.clock, r.value, r.unit, int(r.cached),
                   r.received_ms)


# The spool's reading columns, in the order of StoredReading's fields (the one place that order is written).
READING_COLUMNS = ", ".join(StoredReading._fields)
# The drain's batch: spool ids above the first parameter, oldest first, at most the second parameter of them.
TAKE_SQL = f"SELECT id, {READING_COLUMNS} FROM spool WHERE id > ? ORDER BY id LIMIT ?"

# A spool row as the drain reads it: StoredReading's fields in order, without the names (a plain tuple, as
# SQLite returns it). Every sink takes these and StoredReadings alike: they read rows by position.
ReadingRow = tuple[str, str, int, int, str, int | None, str, str, float, str, int, int]


@dataclass(frozen=True)
class Taken:
    """A batch taken from the spool: its spool ids and its rows, in the same order.

    The rows stay the plain tuples SQLite returns: making a named tuple of each (and the garbage collector
    passes those allocations caused) cost about a fifth of preparing a batch (measured)."""

    ids: list[int]
    rows: list[ReadingRow]
    # The batch's MySQL INSERT text, when the native reader rendered it (`take(values=...)`); `rows` is then empty.
    values_sql: str | None = None

    def __len__(self) -> int:
        return len(self.ids)


# Rows per multi-row statement at most (a reading has 12 variables: far below SQLite's 32,766): a full default
# group (`spool.group_max`, 500) is one statement.
ROWS_PER_STATEMENT = 500
_PROGRESS_UPSERT = ("INSERT INTO progress (device, node, boot, site, upto) VALUES {} "
                    "ON CONFLICT (device, node, boot) DO UPDATE SET upto = excluded.upto")


@functools.lru_cache(maxsize=64)
def _rows_sql(template: str, width: int, rows: int) -> str:
    return template.format(",".join(["(" + ",".join("?" * width) + ")"] * rows))


def execute_rows(conn: sqlite3.Connection, template: str, rows: Sequence[Sequence[object]]) -> None:
    """Run `template` (an INSERT whose `{}` stands for its VALUES list) for every row, a few rows per statement.

    Not `executemany`: Python's sqlite3 releases the GIL around every statement step, and `executemany` steps
    once per row. In a burst the ingest thread holds the GIL, and each time the spool writer wants it back it
    waits up to the interpreter's switch interval: a 500-reading group commit took 50-90 ms that way, against
    2-3 ms alone. Full chunks of ROWS_PER_STATEMENT rows (a burst's full groups: one statement each), the rest
    in power-of-two chunks: SQLite keeps every distinct statement prepared, about 1 KB per row of its VALUES list,
    and groups of every size between 200 and 330 rows (as at 1,000 readings/s) held 38 MB that way; with powers
    of two there are at most ten statement sizes."""
    if not rows:
        return
    width = len(rows[0])
    i, n = 0, len(rows)
    while i < n:
        left = n - i
        size = ROWS_PER_STATEMENT if left >= ROWS_PER_STATEMENT else 1 << (left.bit_length() - 1)
        conn.execute(_rows_sql(template, width, size), [v for row in rows[i:i + size] for v in row])
        i += size


@functools.lru_cache(maxsize=4)
def _insert_template(columns: tuple[str, ...]) -> str:
    return f"INSERT INTO spool ({', '.join(columns)}) VALUES {{}}"


def insert_readings(conn: sqlite3.Connection, rows: Sequence[Reading] | Sequence[StoredReading]) -> None:
    """Insert readings into the spool table (see execute_rows).

    The rows are all validated `Reading`s or all `StoredReading`s: both are named tuples whose field names are
    the spool's columns (in their own orders), so a group commit inserts the readings as they came, without a
    copy per reading (`cached` goes in as 0/1: SQLite binds a bool as an integer)."""
    if rows:
        execute_rows(conn, _insert_template(rows[0]._fields), rows)


def open_db(path: str | Path) -> sqlite3.Connection:
    """Open (and create) a spool database with the durability settings every connection must use."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(SCHEMA)
    if "raw_len" not in {row[1] for row in conn.execute("PRAGMA table_info(quarantine)")}:
        try:  # a spool made before raw_len existed
            conn.execute("ALTER TABLE quarantine ADD COLUMN raw_len INTEGER")
        except sqlite3.OperationalError as exc:  # another connection added it just now
            if "duplicate column" not in str(exc):
                raise
    return conn


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A rejected message, kept with its reason and its raw bytes."""

    source: str
    topic: str
    site: str
    reason: str
    field: str | None
    detail: str
    raw: bytes
    received_ms: int
    ident: tuple[str, str, int, int] | None = None  # identity, when the payload has a valid one
    raw_len: int | None = None  # the original length when `raw` was cut (see quarantined())


QUARANTINE_RAW_MAX = 1024  # bytes of a rejected message kept: enough to see what it was, bounded per entry
QUARANTINE_TEXT_MAX = 256  # topic and detail are cut too (an MQTT topic may be 64 KiB)


def quarantined(source: str, topic: str, site: str, rej: Rejected, raw: bytes, received_ms: int,
                ident: tuple[str, str, int, int] | None = None) -> Quarantined:
    """A quarantine entry with everything from the message cut to a bounded size (raw to 1 KiB, its length kept),
    so a flood of large hostile messages costs the writer queue and the spool little memory and disk."""
    raw = bytes(raw)
    return Quarantined(source, topic[:QUARANTINE_TEXT_MAX], site[:64], rej.reason, rej.field,
                       rej.detail[:QUARANTINE_TEXT_MAX], raw[:QUARANTINE_RAW_MAX], received_ms, ident, len(raw))


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def printable(raw: bytes | str, limit: int = 120) -> str:
    """Untrusted bytes for a terminal: invalid UTF-8 and control characters (escape sequences) as \\xNN."""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    text = text[:limit].translate(_CONTROL)
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


class Source(Protocol):
    """Where an entry came from; told once per group commit which of its entries are durable."""

    def committed(self, refs: list[object], acks: list[tuple[str, Ack]]) -> None:
        """`refs`: the source's own handles (e.g. MQTT mids); `acks`: (site, ack) per touched stream."""


@dataclass(slots=True)
class Entry:
    item: Reading | Quarantined
    source: Source | None = None
    ref: object = None


@dataclass
class SpoolStats:
    pending: int
    unconfirmed: int
    quarantined: int
    quarantine_evicted: int
    streams: int
    oldest_received_ms: int | None
    file_bytes: int
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return self.pending + self.unconfirmed


@dataclass
class CommitResult:
    """After a group commit: per touched stream (site, upto), and the entries refused for lack of room."""

    marks: dict[tuple[str, str, int], tuple[str, int]]
    refused: list[Entry]


class Watermarks:
    """The per-stream contiguous watermark and the out-of-order sequences above it (in memory + spool)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.upto: dict[tuple[str, str, int], int] = {}
        self.held: dict[tuple[str, str, int], set[int]] = defaultdict(set)
        for dev, node, boot, upto in conn.execute("SELECT device, node, boot, upto FROM progress"):
            self.upto[(dev, node, boot)] = upto
        for dev, node, boot, seq in conn.execute("SELECT device, node, boot, seq FROM held"):
            self.held[(dev, node, boot)].add(seq)

    def add(self, key: tuple[str, str, int], seq: int) -> None:
        upto = self.upto.get(key, -1)
        if seq == upto + 1:
            upto += 1
            above = self.held.get(key)
            while above and upto + 1 in above:
                upto += 1
                above.discard(upto)
            self.upto[key] = upto
        else:
            self.held[key].add(seq)

    def current(self, key: tuple[str, str, int]) -> int:
        return self.upto.get(key, -1)

    def raise_to(self, key: tuple[str, str, int], upto: int) -> None:
        """Everything of `key` up to `upto` is held elsewhere (in the database): the watermark moves there."""
        if upto <= self.upto.get(key, -1):
            return
        above = self.held.get(key)
        if above:
            above.difference_update([s for s in above if s <= upto])
            while upto + 1 in above:
                upto += 1
                above.discard(upto)
        self.upto[key] = upto


class Spool:
    """The spool database: ingest commits (through SpoolWriter), drain access, inspection."""

    def __init__(self, path: str | Path, *, max_readings: int = 1_000_000, quarantine_max: int = 10_000,
                 quarantine_max_bytes: int = 16 * 1024 * 1024, resume_fraction: float = 0.9,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_readings = max_readings
        self.quarantine_max = quarantine_max
        self.quarantine_max_bytes = quarantine_max_bytes
        self.resume_fraction = resume_fraction
        self.clock = clock
        self.conn = open_db(self.path)  # the ingest (writer thread) connection
        self.marks = Watermarks(self.conn)
        self._depth = self._count_depth(self.conn)
        self._depth_lock = threading.Lock()
        self._full = self._depth >= max_readings
        self.full_changed = threading.Condition()
        self.last_stored = 0  # readings newly stored by the last group commit (duplicates excluded)
        # The index that once served token lookups costs page writes on every insert and delete.
        # Rows an older version marked as written-unconfirmed are simply written again (idempotent).
        self.conn.execute("UPDATE spool SET token = NULL WHERE token IS NOT NULL")
        self.conn.execute("DROP INDEX IF EXISTS spool_token")
        # Batches the sink has and that wait for confirmation (token -> spool ids), drain thread only.
        self._unconfirmed: dict[str, list[int]] = {}
        self.new_rows = threading.Event()  # set after a commit stored readings: wakes the drain
        self.closing = False  # set when ingest has stopped: the drain then writes without lingering
        # Watermarks raised from outside (ack modes database/replica: what the database holds), applied in the
        # next group commit's transaction so only the writer thread touches the marks.
        self._raises: dict[tuple[str, str, int], tuple[str, int]] = {}
        self._raises_lock = threading.Lock()

    # --- capacity -------------------------------------------------------------------------------
    @staticmethod
    def _count_depth(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT count(*) FROM spool").fetchone()[0]

    @property
    def depth(self) -> int:
        """Readings held in the spool (waiting to be written or waiting for confirmation)."""
        return self._depth

    @property
    def full(self) -> bool:
        """True while ingest must stop taking messages (backpressure); clears below resume_fraction."""
        return self._full

    def _adjust_depth(self, delta: int) -> None:
        with self._depth_lock:
            self._depth += delta
            was = self._full
            if self._depth >= self.max_readings:
                self._full = True
            elif self._depth <= self.max_readings * self.resume_fraction:
                self._full = False
            changed = was != self._full
        if changed:
            log.warning("spool %s: %d readings held (limit %d)", "FULL, pausing ingest" if self._full
                        else "has room again, resuming ingest", self._depth, self.max_readings)
            with self.full_changed:
                self.full_changed.notify_all()

    # --- ingest commit (called only from the writer thread) -------------------------------------
    def commit_group(self, entries: Sequence[Entry]) -> CommitResult:
        """Durably store a group of entries in one transaction.

        Returns the touched streams with (site, upto) after the commit (the end-to-end acks to send) and the
        entries refused because the spool is full: those are neither stored nor acknowledged, so the broker
        or the collector keeps them. The spool therefore never holds more than `max_readings`.
        Duplicates (already held) are not stored again but still touch their stream, so they are re-acked.
        """
        rows: list[Reading] = []
        quarantine: list[Quarantined] = []
        refused: list[Entry] = []
        touched: dict[tuple[str, str, int], str] = {}
        before: dict[tuple[str, str, int], int] = {}  # each touched stream's watermark before this group
        had_held: set[tuple[str, str, int]] = set()  # touched streams with sequences held before this group
        added = 0
        room = self.max_readings - self._depth
        marks = self.marks
        upto_of, held_of = marks.upto, marks.held
        # The watermarks move as the group is read, so a duplicate within the group is caught like any other
        # (and only refused entries leave them where they were). If the transaction fails they are reloaded
        # from the spool.
        for e in entries:
            item = e.item
            if type(item) is Quarantined:
                # Always kept (a collector stops resending it once the ack below covers it); with a valid
                # identity it is durably held, so it also advances its stream's ack.
                quarantine.append(item)
                if item.ident is None:
                    continue
                key, seq = item.ident[:3], item.ident[3]
            else:
                key, seq = (item.device, item.node, item.boot), item.seq
            upto = upto_of.get(key, -1)
            if key not in touched:
                before[key] = upto
                if held_of.get(key):
                    had_held.add(key)
            touched[key] = item.site
            if seq <= upto or seq in held_of.get(key, ()):
                continue  # a duplicate: not stored again, but its stream is re-acked
            if type(item) is not Quarantined:
                if len(rows) >= room:
                    refused.append(e)
                    continue
                rows.append(item)
            marks.add(key, seq)
            added += 1
        if not added and not quarantine:
            # Only duplicates: answered with the current acks, without a transaction (no page, no fsync).
            self.last_stored = 0
            return CommitResult({key: (site, upto_of.get(key, -1)) for key, site in touched.items()}, refused)
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._apply_raises(conn)
            insert_readings(conn, rows)
            # The held table mirrors marks.held: only a stream that has rows there needs its DELETE (in order,
            # the usual case, none has), and the watermarks go in one statement (fewer calls per commit).
            progress = []
            for key, site in touched.items():
                upto = upto_of.get(key, -1)
                above = held_of.get(key)
                if upto != before[key]:
                    progress.append((*key, site, upto))
                    if key in had_held:
                        conn.execute("DELETE FROM held WHERE device=? AND node=? AND boot=? AND seq<=?", (*key, upto))
                if above:
                    conn.executemany("INSERT OR IGNORE INTO held (device, node, boot, seq) VALUES (?,?,?,?)",
                                     [(*key, s) for s in above if s > upto])
            if progress:
                execute_rows(conn, _PROGRESS_UPSERT, progress)
            if quarantine:
                self._quarantine(conn, quarantine)
            crashpoints.hit("spool.before_commit")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # The in-memory marks have advanced for rows that are not stored: reload them.
            self.marks = Watermarks(conn)
            raise
        crashpoints.hit("spool.after_commit")
        self.last_stored = len(rows)
        if rows:
            self._adjust_depth(len(rows))
            self.new_rows.set()
        return CommitResult({key: (site, self.marks.current(key)) for key, site in touched.items()}, refused)

    def raise_marks(self, marks: dict[tuple[str, str, int], tuple[str, int]]) -> None:
        """(Any thread) streams whose readings up to `upto` the database holds: (site, upto) per stream.

        Several gateways in a shared subscription group each see only part of a stream, so the spool's own
        contiguous watermark would stall at the first reading another gateway took and every later seq would
        pile up in `held`; the database's watermark moves it on. Applied with the next group commit."""
        with self._raises_lock:
            for key, (site, upto) in marks.items():
                if upto > self._raises.get(key, ("", -1))[1]:
                    self._raises[key] = (site, upto)

    def _apply_raises(self, conn: sqlite3.Connection) -> None:
        with self._raises_lock:
            raises, self._raises = self._raises, {}
        for key, (site, upto) in raises.items():
            if upto <= self.marks.current(key):
                continue
            self.marks.raise_to(key, upto)
            conn.execute("INSERT INTO progress (device, node, boot, site, upto) VALUES (?,?,?,?,?) "
                         "ON CONFLICT (device, node, boot) DO UPDATE SET upto = excluded.upto",
                         (*key, site, self.marks.current(key)))
            conn.execute("DELETE FROM held WHERE device=? AND node=? AND boot=? AND seq<=?",
                         (*key, self.marks.current(key)))

    def insert_replayed(self, rows: Sequence[StoredReading], quarantine_ids: Sequence[int]) -> None:
        """Move quarantined readings that now validate into the spool (one transaction).

        No duplicate check against the watermarks: a quarantined identity was never stored, and the sinks
        keep one row per identity anyway.
        """
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            insert_readings(conn, rows)
            conn.executemany("DELETE FROM quarantine WHERE id = ?", [(i,) for i in quarantine_ids])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._adjust_depth(len(rows))
        self.new_rows.set()

    def _quarantine(self, conn: sqlite3.Connection, items: Sequence[Quarantined]) -> None:
        """Insert quarantine entries, then evict the oldest until both bounds (rows and bytes) hold again."""
        conn.executemany(
            "INSERT INTO quarantine (received_ms, source, topic, site, reason, field, detail, raw, raw_len) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            [(q.received_ms, q.source, q.topic, q.site, q.reason, q.field, q.detail, q.raw[:QUARANTINE_RAW_MAX],
              q.raw_len if q.raw_len is not None else len(q.raw)) for q in items])
        total, size = conn.execute(
            "SELECT count(*), coalesce(sum(length(raw) + length(topic) + length(detail)), 0) FROM quarantine").fetchone()
        if total <= self.quarantine_max and size <= self.quarantine_max_bytes:
            return
        evict = max(0, total - self.quarantine_max)
        excess = size - self.quarantine_max_bytes
        if excess > 0:  # walk the oldest entries until enough bytes are freed
            freed, n = 0, 0
            for (entry_size,) in conn.execute(
                    "SELECT length(raw) + length(topic) + length(detail) FROM quarantine ORDER BY id"):
                if freed >= excess:
                    break
                freed, n = freed + entry_size, n + 1
            evict = max(evict, n)
        conn.execute("DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT ?)", (evict,))
        conn.execute("INSERT INTO counters (name, value) VALUES ('quarantine_evicted', ?) "
                     "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (evict,))

    # --- small persistent counters (outside the reading path) -----------------------------------
    def read_counter(self, name: str) -> int | None:
        """A value kept in the spool's counters table (own short-lived connection: any thread)."""
        conn = open_db(self.path)
        try:
            row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        finally:
            conn.close()
        return row[0] if row else None

    def write_counter(self, name: str, value: int) -> None:
        """Set a value in the counters table (own short-lived connection: any thread)."""
        conn = open_db(self.path)
        try:
            conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))
        finally:
            conn.close()

    # --- drain side (own connection, called from the drain thread) ------------------------------
    def drain_connection(self) -> sqlite3.Connection:
        return open_db(self.path)

    def take(self, conn: sqlite3.Connection, limit: int, after: int = -1, values=None) -> Taken:  # noqa: ANN001
        """The oldest readings waiting to be written, at most `limit`, with their spool ids.

        Skips the batches written and waiting for confirmation, and everything up to `after` (a batch the
        caller has taken and not yet reported as written). With `values` (a reader from
        `gateway.native.values_reader` over TAKE_SQL), the batch comes as its INSERT text when every row is in
        the reader's plain domain, and as rows otherwise.
        """
        floor = max(after, self._unconfirmed_floor())
        if values is not None:
            rendered = values.take(floor, limit)
            if rendered is not None:
                ids, sql = rendered
                return Taken(ids, [], sql)
        found = conn.execute(TAKE_SQL, (floor, limit)).fetchall()
        return Taken([r[0] for r in found], [r[1:] for r in found])

    def _unconfirmed_floor(self) -> int:
        """The highest id of any batch waiting for confirmation (-1: none).

        Batches are taken in id order above this floor, so everything above it is waiting to be written.
        New rows always get ids above every row still held, so they land above the floor too.
        """
        return max((ids[-1] for ids in self._unconfirmed.values() if ids), default=-1)

    def pending_count(self) -> int:
        """Readings held and not in a batch waiting for confirmation."""
        return self._depth - sum(len(ids) for ids in self._unconfirmed.values())

    def written(self, conn: sqlite3.Connection, ids: Sequence[int], token: str | None) -> None:
        """The sink has these rows: delete them (token None) or keep them as unconfirmed under `token`.

        Unconfirmed batches are kept in memory only: no page is written for them. After a restart their
        rows are simply written again (the sinks insert idempotently on the reading identity).
        """
        if token is None:
            self._delete(conn, [sorted(ids)])
        else:
            self._unconfirmed.setdefault(token, []).extend(sorted(ids))

    def _delete(self, conn: sqlite3.Connection, batches: Sequence[Sequence[int]]) -> int:
        """Delete sorted id lists in one transaction: a contiguous list as one range (fewer B-tree walks)."""
        n = sum(len(ids) for ids in batches)
        if not n:
            return 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ids in batches:
                if not ids:
                    continue
                if ids[-1] - ids[0] + 1 == len(ids):  # exactly the ids of the range, nothing else in between
                    conn.execute("DELETE FROM spool WHERE id BETWEEN ? AND ?", (ids[0], ids[-1]))
                else:
                    conn.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._adjust_depth(-n)
        return n

    def unconfirmed_tokens(self, conn: sqlite3.Connection) -> list[str]:
        """Tokens of the batches written and waiting for confirmation, oldest first."""
        return list(self._unconfirmed)

    def confirmed(self, conn: sqlite3.Connection, tokens: Sequence[str]) -> int:
        """A replica has these batches: they leave the spool (one transaction)."""
        batches = [self._unconfirmed[t] for t in dict.fromkeys(tokens) if t in self._unconfirmed]
        n = self._delete(conn, batches)
        for t in tokens:
            self._unconfirmed.pop(t, None)
        return n

    def requeue_unconfirmed(self, conn: sqlite3.Connection) -> int:
        """After a primary change: every unconfirmed batch is written again (idempotent)."""
        n = sum(len(ids) for ids in self._unconfirmed.values())
        self._unconfirmed.clear()
        return n

    # --- inspection ----------------------------------------------------------------------------
    def stats(self) -> SpoolStats:
        """Status from the file, with the batches this process knows are written and waiting for confirmation
        (kept in memory only, so another process reading the file sees them as pending)."""
        st = read_stats(self.path)
        waiting = min(st.pending, sum(len(ids) for ids in list(self._unconfirmed.values())))
        st.pending -= waiting
        st.unconfirmed += waiting
        return st

    def close(self) -> None:
        self.conn.close()


def read_stats(path: str | Path) -> SpoolStats:
    """Spool status from its file (also usable while a gateway is running)."""
    conn = open_db(path)
    try:
        pending = conn.execute("SELECT count(*) FROM spool WHERE token IS NULL").fetchone()[0]
        unconfirmed = conn.execute("SELECT count(*) FROM spool WHERE token IS NOT NULL").fetchone()[0]
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        counters = dict(conn.execute("SELECT name, value FROM counters"))
        streams = conn.execute("SELECT count(*) FROM progress").fetchone()[0]
        oldest = conn.execute("SELECT min(received_ms) FROM spool").fetchone()[0]
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in Path(path).parent.glob(Path(path).name + "*") if p.exists())
    return SpoolStats(pending, unconfirmed, quarantined, counters.get("quarantine_evicted", 0), streams, oldest,
                      size, counters)


# Arrivals paused this long after a full group: the burst is over.
BURST_QUIET_S = 0.1


class GroupQueue:
    """The writer's inbox: wakes the writer only for a group's first entry, a full group or a stop.

    A plain queue wakes the consumer thread on every entry: at a steady few hundred readings per second that is
    a thread switch per reading. Bounded: `put` blocks when full.

    A group also ends early when arrivals pause (`idle_gap_s`) after at least `early_min` entries: in a burst the
    broker stops sending until our acks (its receive maximum), so waiting out the window would only delay every
    ack; at low and steady rates arrivals keep coming (or the group stays small) and the window runs its course.
    Right after a full group (a burst) any pause ends the group, however small: the last few readings of a
    burst would otherwise wait out the whole window.
    """

    def __init__(self, maxsize: int, group_max: int, idle_gap_s: float = 0.02, early_min: int = 100) -> None:
        self.maxsize, self.group_max = maxsize, group_max
        self.idle_gap_s, self.early_min = idle_gap_s, early_min
        self._last_put = 0.0
        self._after_full = False  # the last group taken was full: a burst is on
        self._items: collections.deque[Entry] = collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self.closed = False

    def put_all(self, entries: Sequence[Entry]) -> None:
        """Queue entries in order under one lock (a read's worth at once); blocks while the queue is full."""
        i = 0
        with self._lock:
            while i < len(entries):
                while len(self._items) >= self.maxsize:
                    self._room.wait()
                was = len(self._items)
                take = entries[i:i + self.maxsize - was]
                self._items.extend(take)
                i += len(take)
                self._last_put = time.monotonic()
                if was == 0 or len(self._items) >= self.group_max:
                    self._ready.notify()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._ready.notify()

    @property
    def bursting(self) -> bool:
        """A burst is on: the last group taken was full, and readings still wait or came in the last
        BURST_QUIET_S (a burst that ended on a full group is over once arrivals stop)."""
        return self._after_full and (bool(self._items) or time.monotonic() - self._last_put < BURST_QUIET_S)

    def qsize(self) -> int:
        return len(self._items)

    def take_group(self, window_s: float) -> list[Entry]:
        """Wait for a first entry, then up to `window_s` or a full group; [] once closed and empty."""
        with self._lock:
            while not self._items and not self.closed:
                self._ready.wait()
            deadline = time.monotonic() + window_s
            while len(self._items) < self.group_max and not self.closed:
                now = time.monotonic()
                left = deadline - now
                if left <= 0:
                    break
                early = self._after_full or len(self._items) >= self.early_min
                if early and now - self._last_put >= self.idle_gap_s:
                    break  # a large group (or a burst's last) and the sources have paused: they wait for our acks
                self._ready.wait(min(left, self.idle_gap_s) if early else left)
            n = min(len(self._items), self.group_max)
            self._after_full = n == self.group_max
            group = [self._items.popleft() for _ in range(n)]
            self._room.notify_all()
            return group


class SpoolWriter(threading.Thread):
    """The one thread that commits ingest entries in groups and then tells each source what is durable."""

    def __init__(self, spool: Spool, *, group_commit_ms: int = 250, group_max: int = 500,
                 queue_max: int = 20_000, ack_clock: Callable[[], int] | None = None,
                 on_commit: Callable[[int, int, float], None] | None = None) -> None:
        super().__init__(name="spool-writer", daemon=True)
        self.spool = spool
        self.group_s = group_commit_ms / 1000
        self.group_max = group_max
        self.queue = GroupQueue(queue_max, group_max)
        self.ack_clock = ack_clock or (lambda: int(time.time() * 1000))
        self.on_commit = on_commit
        self._stop_requested = False
        self.error: BaseException | None = None

    def submit(self, entry: Entry) -> None:
        """Queue an entry; blocks when the queue is full (bounded memory: the caller's ack is held back)."""
        self.queue.put_all((entry,))

    def submit_all(self, entries: Sequence[Entry]) -> None:
        """Queue entries in order, as `submit` does one (one lock and at most one wake-up for all of them)."""
        if entries:
            self.queue.put_all(entries)

    def queued(self) -> int:
        """Entries submitted and not yet taken into a group commit."""
        return self.queue.qsize()

    def bursting(self) -> bool:
        """True while a burst is on: groups fill up (see GroupQueue.bursting)."""
        return self.queue.bursting

    def stop(self) -> None:
        """Commit what is queued, then end."""
        self._stop_requested = True
        self.spool.closing = True
        self.spool.new_rows.set()
        self.queue.close()

    def run(self) -> None:
        try:
            while True:
                group = self.queue.take_group(self.group_s)
                if not group:
                    return  # stopped, everything queued before the stop is committed
                self._commit(group)
        except BaseException as exc:  # a spool that cannot commit must stop the gateway, loudly
            log.exception("spool writer failed")
            self.error = exc

    def _commit(self, group: list[Entry]) -> None:
        crashpoints.fault("writer.commit")
        started = time.monotonic()
        result = self.spool.commit_group(group)
        marks = result.marks
        refused = {id(e) for e in result.refused}
        now = self.ack_clock()
        by_source: dict[int, tuple[Source, list[object], set]] = {}
        last, slot = None, None
        for e in group:  # per entry, so kept lean: a group's entries nearly always share one source
            source = e.source
            if source is None or (refused and id(e) in refused):
                continue
            if source is not last:
                last, slot = source, by_source.setdefault(id(source), (source, [], set()))
            slot[1].append(e.ref)  # type: ignore[index]
            item = e.item
            if type(item) is Reading:
                slot[2].add((item.device, item.node, item.boot))  # type: ignore[index]
        for source, refs, streams in by_source.values():
            acks = []
            for key in streams:
                site, upto = marks[key]
                if upto >= 0:
                    acks.append((site, Ack(key[0], key[1], key[2], upto, now)))
            try:
                source.committed(refs, acks)
            except Exception:
                log.exception("source %r failed to handle a commit (its messages will be redelivered)", source)
        if self.on_commit:
            self.on_commit(len(group), sum(isinstance(e.item, Quarantined) for e in group), time.monotonic() - started)
