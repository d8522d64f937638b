"""The collector's cache: an append-only log of reading records that survives power cuts (protocol section 8).

Record: ``A5 | len | body | CRC-16/CCITT-FALSE(len + body), big-endian``; body (21 bytes, little-endian):
boot u32, seq u32, ts i64 (-1 = none), src u8 (0 none, 1 rtc, 2 ntp), val i32 thousandths.

Every reading is appended before it is sent and stays until an end-to-end ack covers it. A power cut
during an append leaves a torn last record; opening the log scans it, keeps every whole record before
the first broken one, and cuts the torn tail off (otherwise the next append would sit behind garbage and
be unreadable).

Trimming is lazy, to spare the flash and the RAM: an ack only moves ``start`` (the first live record of
the file) in RAM, and saves it in a small mark (``mark_every`` records at a time). The file is compacted,
by copying the live records chunk by chunk into a new file that replaces the old one, only when the dead
records in front reach ``capacity`` (so the file never holds more than twice the capacity) or when an ack
covers records behind one it does not (an older boot's records still waiting). A restart therefore may
replay up to ``mark_every - 1`` acknowledged records; that is harmless, the gateway keeps one row per
identity (protocol section 8), and too few to fill the cache. The mark is set to 0 before a compaction,
so a power cut between the two replays more, never skips a record. Memory stays bounded by one read chunk.

Storage objects have ``size()``, ``read(offset, n)``, ``append(data)``, ``replace(data)``,
``rewrite(chunks)`` (``replace`` with the content given as an iterable of byte strings), ``read_mark()``
and ``write_mark(n)`` (the saved ``start``; 0 when there is none):
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

    def __init__(self, data=b"", mark: int = 0) -> None:
        self.data = bytearray(data)
        self.mark = mark
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

    def rewrite(self, chunks) -> None:
        data = bytearray()
        for chunk in chunks:
            data.extend(chunk)
        self.data = data

    def read_mark(self) -> int:
        return self.mark

    def write_mark(self, n: int) -> None:
        self.mark = n


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
        self.rewrite((data,))

    def rewrite(self, chunks) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
        rename_over(self.fs, tmp, self.path)

    def read_mark(self) -> int:
        recover_tmp(self.fs, self.path + ".start")
        try:
            with open(self.path + ".start") as f:
                return max(0, int(f.read().strip()))
        except (OSError, ValueError):
            return 0

    def write_mark(self, n: int) -> None:
        tmp = self.path + ".start.tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % n)
            f.flush()
        rename_over(self.fs, tmp, self.path + ".start")


class CacheLog:
    """The records waiting for an ack, oldest first, addressed by index (all records have one length).

    ``capacity`` bounds the number of records: when it is reached ``append`` returns False and the
    collector stops recording (protocol section 1: never evict an unacknowledged record).
    """

    def __init__(self, storage, capacity: int, mark_every: int = CHUNK_RECORDS) -> None:
        self.storage = storage
        self.capacity = capacity
        self.mark_every = mark_every
        self.count = 0   # live records: from ``start`` to the end of the file
        self.start = 0   # file index of the oldest live record; the ones before it are acknowledged
        self._marked = 0  # the start saved in the mark
        self.compactions = 0
        self.torn_bytes = 0  # how much a repair at open cut off (0 when the log was whole)
        self._scan()

    def _raw(self, first: int, limit: int):
        """``(index, record bytes)`` for file records ``first`` .. ``limit - 1``, read in chunks (one file
        open per chunk rather than per record, which matters on an SD card)."""
        index = first
        while index < limit:
            n = min(CHUNK_RECORDS, limit - index)
            chunk = self.storage.read(index * RECORD_LEN, n * RECORD_LEN)
            for i in range(len(chunk) // RECORD_LEN):
                yield index + i, chunk[i * RECORD_LEN:(i + 1) * RECORD_LEN]
            if len(chunk) < n * RECORD_LEN:
                return
            index += n

    def _chunks(self, first: int, limit: int):
        """The file's bytes of records ``first`` .. ``limit - 1``, one read chunk at a time."""
        index = first
        while index < limit:
            n = min(CHUNK_RECORDS, limit - index)
            yield self.storage.read(index * RECORD_LEN, n * RECORD_LEN)
            index += n

    def _scan(self) -> None:
        size = self.storage.size()
        count = 0
        for _, raw in self._raw(0, size // RECORD_LEN):
            if decode_record(raw) is None:
                break
            count += 1
        end = count * RECORD_LEN
        if end < size:
            self.torn_bytes = size - end
            self.storage.rewrite(self._chunks(0, count))  # keeps the indices: the mark stays right
        self.start = self._marked = min(self.storage.read_mark(), count)
        self.count = count - self.start

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
        rec = decode_record(self.storage.read((self.start + index) * RECORD_LEN, RECORD_LEN))
        if rec is None:
            raise OSError("cache record %d unreadable" % index)
        return rec

    def records(self):
        """Every record, oldest first."""
        for i in range(self.count):
            yield self.get(i)

    def trim(self, acked, cursor: int = 0) -> int:
        """Drop the records that ``acked`` ({boot: upto}) covers; returns the index that ``cursor`` (an
        index into the old log) now has, so a replay continues where it was. Writes only when it
        compacts the file (see the module's docstring)."""
        dropped = 0
        behind = False  # a covered record sits behind one that is not
        end = self.start + self.count
        for _, raw in self._raw(self.start, end):
            rec = decode_record(raw)
            upto = acked.get(rec.boot)
            if upto is None or rec.seq > upto:
                # Records of a boot are contiguous and in seq order: a later boot may still be covered.
                behind = any(b > rec.boot and u >= 0 for b, u in acked.items())
                break
            dropped += 1
        self.start += dropped
        self.count -= dropped
        cursor = max(0, cursor - dropped)
        if behind:
            return self._compact_covered(acked, cursor)
        if self.start >= self.capacity:
            self._before_compaction()
            self.storage.rewrite(self._chunks(self.start, self.start + self.count))
            self.start = 0
            self.compactions += 1
        elif self.start - self._marked >= self.mark_every:
            self.storage.write_mark(self.start)
            self._marked = self.start
        return min(cursor, self.count)

    def _before_compaction(self) -> None:
        """The mark goes to 0 first: a cut before the new file is in place replays, never skips."""
        if self._marked:
            self.storage.write_mark(0)
            self._marked = 0

    def _compact_covered(self, acked, cursor: int) -> int:
        """Rewrite the file with only the records ``acked`` does not cover, chunk by chunk."""
        kept = [0, 0]  # records kept, and kept before the cursor

        def live_chunks():
            for base in range(self.start, self.start + self.count, CHUNK_RECORDS):
                out = bytearray()
                for i, raw in self._raw(base, min(base + CHUNK_RECORDS, self.start + self.count)):
                    rec = decode_record(raw)
                    upto = acked.get(rec.boot)
                    if upto is not None and rec.seq <= upto:
                        continue
                    out.extend(raw)
                    kept[0] += 1
                    if i - self.start < cursor:
                        kept[1] += 1
                yield out

        self._before_compaction()
        self.storage.rewrite(live_chunks())
        self.start = 0
        self.count = kept[0]
        self.compactions += 1
        return kept[1]
