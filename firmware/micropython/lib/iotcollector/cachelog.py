"""The collector's cache: an append-only log of reading records that survives power cuts (protocol section 8).

Record: ``A5 | len | body | CRC-16/CCITT-FALSE(len + body), big-endian``; body (21 bytes, little-endian):
boot u32, seq u32, ts i64 (-1 = none), src u8 (0 none, 1 rtc, 2 ntp), val i32 thousandths.

Every reading is appended before it is sent and stays until an end-to-end ack covers it. A power cut
during an append leaves a torn last record; opening the log scans it, keeps every whole record before
the first broken one, and cuts the torn tail off (otherwise the next append would sit behind garbage and
be unreadable). Trimming rewrites the log without the acknowledged records through the storage's atomic
``replace``, so an acknowledged record is not replayed after a restart.

Storage objects have ``size()``, ``read(offset, n)``, ``append(data)`` and ``replace(data)``:
``MemoryStorage`` (tests; can simulate a power cut after any byte) and ``FileStorage`` (flash or SD card).
"""

import struct

from iotcollector.crc16 import crc16

MAGIC = 0xA5
BODY_LEN = 21
RECORD_LEN = BODY_LEN + 4
SRC_CODES = {"none": 0, "rtc": 1, "ntp": 2}
SRC_NAMES = ("none", "rtc", "ntp")
CHUNK_RECORDS = 32  # records read per storage access when scanning or trimming
_BODY = "<IIqBi"


class Record:
    """One cached reading: its identity within the device (boot, seq), clock, and value in thousandths."""

    def __init__(self, boot: int, seq: int, ts, src: str, milli: int) -> None:
        self.boot = boot
        self.seq = seq
        self.ts = ts
        self.src = src
        self.milli = milli

    def __eq__(self, other) -> bool:
        return (isinstance(other, Record) and self.boot == other.boot and self.seq == other.seq
                and self.ts == other.ts and self.src == other.src and self.milli == other.milli)

    def __repr__(self) -> str:
        return "Record(%d,%d,%s,%s,%d)" % (self.boot, self.seq, self.ts, self.src, self.milli)


def encode_record(rec: Record) -> bytes:
    """The record's bytes as section 8 lays them out."""
    body = struct.pack(_BODY, rec.boot, rec.seq, -1 if rec.ts is None else rec.ts, SRC_CODES[rec.src], rec.milli)
    head = bytes((BODY_LEN,))
    crc = crc16(body, crc16(head))
    return bytes((MAGIC,)) + head + body + struct.pack(">H", crc)


def decode_record(data):
    """The Record in ``data`` (exactly one whole record), or None if it is torn, corrupt or unknown."""
    if len(data) != RECORD_LEN or data[0] != MAGIC or data[1] != BODY_LEN:
        return None
    if crc16(data[1:2 + BODY_LEN]) != struct.unpack(">H", data[2 + BODY_LEN:])[0]:
        return None
    boot, seq, ts, src, milli = struct.unpack(_BODY, data[2:2 + BODY_LEN])
    if src >= len(SRC_NAMES):
        return None
    return Record(boot, seq, None if ts == -1 else ts, SRC_NAMES[src], milli)


class PowerCut(Exception):
    """Raised by MemoryStorage when a simulated power cut interrupts a write."""


class MemoryStorage:
    """Storage in RAM. ``cut_after`` (bytes) makes the next append write only that many bytes, then fail."""

    def __init__(self, data=b"") -> None:
        self.data = bytearray(data)
        self.cut_after = None

    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self.data[offset:offset + n])

    def append(self, data) -> None:
        if self.cut_after is not None:
            keep, self.cut_after = self.cut_after, None
            self.data.extend(data[:keep])
            raise PowerCut()
        self.data.extend(data)

    def replace(self, data) -> None:
        self.data = bytearray(data)


def rename_over(fs, tmp: str, path: str) -> None:
    """Rename ``tmp`` to ``path``, replacing it. littlefs does that atomically; FAT refuses an existing
    target, so there the old file is removed first (a cut in between leaves ``tmp``, picked up below)."""
    try:
        fs.rename(tmp, path)
    except OSError:
        fs.remove(path)
        fs.rename(tmp, path)


def recover_tmp(fs, path: str) -> None:
    """Finish a replace that a power cut interrupted on FAT (``path`` removed, ``tmp`` not yet renamed)."""
    try:
        fs.stat(path)
    except OSError:
        try:
            fs.stat(path + ".tmp")
        except OSError:
            return
        fs.rename(path + ".tmp", path)


class FileStorage:
    """Storage in a file (flash or a mounted SD card). ``replace`` writes a temporary file and renames it,
    which littlefs makes atomic; on FAT a cut during the rename can lose the trim, never a record.
    ``fs`` is the ``os`` module (injected so the module stays free of port specifics)."""

    def __init__(self, path: str, fs) -> None:
        self.path = path
        self.fs = fs
        recover_tmp(fs, path)
        try:
            fs.stat(path)
        except OSError:
            with open(path, "wb"):
                pass

    def size(self) -> int:
        return self.fs.stat(self.path)[6]

    def read(self, offset: int, n: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    def append(self, data) -> None:
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()

    def replace(self, data) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
        rename_over(self.fs, tmp, self.path)


class CacheLog:
    """The records waiting for an ack, oldest first, addressed by index (all records have one length).

    ``capacity`` bounds the number of records: when it is reached ``append`` returns False and the
    collector stops recording (protocol section 1: never evict an unacknowledged record).
    """

    def __init__(self, storage, capacity: int) -> None:
        self.storage = storage
        self.capacity = capacity
        self.count = 0
        self.torn_bytes = 0  # how much a repair at open cut off (0 when the log was whole)
        self._scan()

    def _raw(self, limit: int):
        """``(index, record bytes)`` for the first ``limit`` whole records, read in chunks (one file open
        per chunk rather than per record, which matters on an SD card)."""
        index = 0
        while index < limit:
            n = min(CHUNK_RECORDS, limit - index)
            chunk = self.storage.read(index * RECORD_LEN, n * RECORD_LEN)
            for i in range(len(chunk) // RECORD_LEN):
                yield index + i, chunk[i * RECORD_LEN:(i + 1) * RECORD_LEN]
            if len(chunk) < n * RECORD_LEN:
                return
            index += n

    def _scan(self) -> None:
        size = self.storage.size()
        count = 0
        for _, raw in self._raw(size // RECORD_LEN):
            if decode_record(raw) is None:
                break
            count += 1
        self.count = count
        end = count * RECORD_LEN
        if end < size:
            self.torn_bytes = size - end
            self.storage.replace(self.storage.read(0, end))

    def is_full(self) -> bool:
        return self.count >= self.capacity

    def append(self, rec: Record) -> bool:
        """Persist ``rec`` at the end; False (nothing written) when the cache is full."""
        if self.is_full():
            return False
        self.storage.append(encode_record(rec))
        self.count += 1
        return True

    def get(self, index: int) -> Record:
        """The record at ``index`` (0 = oldest)."""
        if not 0 <= index < self.count:
            raise IndexError(index)
        rec = decode_record(self.storage.read(index * RECORD_LEN, RECORD_LEN))
        if rec is None:
            raise OSError("cache record %d unreadable" % index)
        return rec

    def records(self):
        """Every record, oldest first."""
        for i in range(self.count):
            yield self.get(i)

    def trim(self, acked, cursor: int = 0) -> int:
        """Drop the records that ``acked`` ({boot: upto}) covers and persist that; returns the index that
        ``cursor`` (an index into the old log) now has, so a replay continues where it was."""
        kept = bytearray()
        new_count = 0
        new_cursor = 0
        for i, raw in self._raw(self.count):
            rec = decode_record(raw)
            upto = acked.get(rec.boot)
            if upto is not None and rec.seq <= upto:
                continue
            kept.extend(raw)
            new_count += 1
            if i < cursor:
                new_cursor += 1
        if new_count != self.count:
            self.storage.replace(kept)
            self.count = new_count
        else:
            new_cursor = min(cursor, self.count)
        return new_cursor
