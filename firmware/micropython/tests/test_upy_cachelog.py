"""Cache record log: record bytes (shared vectors), torn records at every byte, capacity, trim, restart."""

import os

from _support import tmpdir, vectors
from iotcollector.cachelog import (
    RECORD_LEN,
    CacheLog,
    FileStorage,
    MemoryStorage,
    PowerCut,
    Record,
    decode_record,
    encode_record,
)


def _rec(i, boot=1):
    return Record(boot, i, 1700000000000 + i * 1000, "rtc", i * 250 - 1000)


def test_record_vectors_byte_exact():
    for v in vectors("cache_records.json"):
        rec = Record(v["boot"], v["seq"], v["ts"], v["src"], v["val_milli"])
        raw = encode_record(rec)
        assert raw.hex() == v["record_hex"], v["name"]
        assert len(raw) == RECORD_LEN
        assert decode_record(bytes.fromhex(v["record_hex"])) == rec, v["name"]


def test_corrupt_records_rejected():
    raw = bytearray(encode_record(_rec(3)))
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        assert decode_record(bytes(bad)) is None, i


def _check_torn_write_every_byte(make_storage, reopen):
    for cut in range(RECORD_LEN):
        storage = make_storage()
        log = CacheLog(storage, 10)
        for i in range(3):
            assert log.append(_rec(i))
        storage_cut(storage, cut)
        try:
            log.append(_rec(3))
            raise AssertionError("no power cut")
        except PowerCut:
            pass
        storage = reopen(storage)
        log = CacheLog(storage, 10)  # the restart after the power cut
        assert log.count == 3, cut
        assert log.torn_bytes == cut, cut
        assert list(log.records()) == [_rec(0), _rec(1), _rec(2)], cut
        assert storage.size() == 3 * RECORD_LEN  # the torn tail was cut off ...
        assert log.append(_rec(3))  # ... so a new append is readable after the next restart
        log = CacheLog(reopen(storage), 10)
        assert list(log.records()) == [_rec(0), _rec(1), _rec(2), _rec(3)], cut


def storage_cut(storage, cut):
    storage.cut_after = cut


def test_torn_record_at_every_byte_memory():
    _check_torn_write_every_byte(MemoryStorage, lambda s: MemoryStorage(s.data))


class CuttableFile(FileStorage):
    """A FileStorage whose next append stops after ``cut_after`` bytes (what a power cut leaves)."""

    cut_after = None

    def append(self, data):
        if self.cut_after is not None:
            keep, self.cut_after = self.cut_after, None
            FileStorage.append(self, data[:keep])
            raise PowerCut()
        FileStorage.append(self, data)


def test_torn_record_at_every_byte_file():
    def make():
        return CuttableFile(tmpdir() + "/cache.log", os)

    _check_torn_write_every_byte(make, lambda s: FileStorage(s.path, os))


def test_cache_full_stops_recording_never_evicts():
    log = CacheLog(MemoryStorage(), 3)
    for i in range(3):
        assert log.append(_rec(i))
    assert log.is_full()
    assert not log.append(_rec(3))
    assert [r.seq for r in log.records()] == [0, 1, 2]


def test_trim_persists_and_keeps_cursor():
    storage = MemoryStorage()
    log = CacheLog(storage, 20)
    for i in range(5):
        log.append(_rec(i, boot=1))
    for i in range(3):
        log.append(_rec(i, boot=2))
    # boot 2's records acked up to 1, boot 1 up to 2; the cursor stood at index 6 (boot 2 seq 1)
    cursor = log.trim({1: 2, 2: 1}, 6)
    assert [(r.boot, r.seq) for r in log.records()] == [(1, 3), (1, 4), (2, 2)]
    assert cursor == 2  # still points at the first record not yet sent: (2, 2)
    reopened = CacheLog(MemoryStorage(storage.data), 20)
    assert [(r.boot, r.seq) for r in reopened.records()] == [(1, 3), (1, 4), (2, 2)]
    assert log.trim({1: 2, 2: 1}, 1) == 1  # nothing more to drop: unchanged


def test_trim_file_storage_survives_restart():
    path = tmpdir() + "/cache.log"
    log = CacheLog(FileStorage(path, os), 20)
    for i in range(4):
        log.append(_rec(i))
    log.trim({1: 1})
    assert [r.seq for r in log.records()] == [2, 3]
    # the trim is lazy: a restart replays the acknowledged records too (harmless, protocol section 8)
    log = CacheLog(FileStorage(path, os), 20)
    assert [r.seq for r in log.records()] == [0, 1, 2, 3]
    log.trim({1: 3})  # everything acknowledged, still lazily: fewer than one mark's worth
    assert [r.seq for r in CacheLog(FileStorage(path, os), 20).records()] == [0, 1, 2, 3]
    log = CacheLog(FileStorage(path, os), 20, mark_every=2)
    log.trim({1: 3})  # with a mark every 2 records: saved, so a restart replays nothing
    assert CacheLog(FileStorage(path, os), 20).count == 0


def test_trim_is_lazy_and_compacts_once_per_capacity():
    storage = MemoryStorage()
    log = CacheLog(storage, 10)
    writes = []
    rewrite = storage.rewrite
    storage.rewrite = lambda chunks: (writes.append(1), rewrite(chunks))
    for i in range(100):
        assert log.append(_rec(i))
        if i % 10 != 9:  # keep the newest record unacknowledged most of the time
            log.trim({1: i - 1})
        else:
            log.trim({1: i})
        assert [r.seq for r in log.records()] == list(range(i + 1 - log.count, i + 1))
        assert len(storage.data) <= 2 * 10 * RECORD_LEN  # never more than twice the capacity on flash
    assert log.compactions == len(writes)
    assert 5 <= len(writes) <= 15  # about once per capacity's worth of acks, not once per ack


def test_peak_memory_of_a_full_replay_at_capacity_2000():
    # The whole cache replayed and acknowledged one record at a time, as after a long outage: the
    # cache must not build the log in RAM (an ESP32 without PSRAM has about 100 KB free). Measured on
    # MemoryStorage, which allocates exactly the bytes read, so the figure is the cache's own (CPython's
    # buffered files would add their 8 KB buffers, which MicroPython's files do not have). The figure is
    # tracemalloc's peak under CPython; MicroPython has no tracemalloc and the WebAssembly port's
    # gc.collect() frees nothing while a script runs (its heap only grows), so there the replay runs
    # for its result only.
    try:
        import tracemalloc
    except ImportError:
        tracemalloc = None
    storage = MemoryStorage()
    log = CacheLog(storage, 2000)
    for i in range(2000):
        log.append(_rec(i))
    log = CacheLog(storage, 2000)
    cursor = 0
    acked = {}
    if tracemalloc:
        tracemalloc.start()
    peak = 0
    try:
        while log.count:
            log.get(cursor)
            acked[1] = log.get(0).seq
            cursor = log.trim(acked, cursor + 1)
        if tracemalloc:
            peak = tracemalloc.get_traced_memory()[1]
    finally:
        if tracemalloc:
            tracemalloc.stop()
    assert log.count == 0 and CacheLog(storage, 2000).count == 0
    assert peak < 4096, peak


def test_interrupted_replace_on_fat_is_finished_at_start():
    folder = tmpdir()
    path = folder + "/cache.log"
    log = CacheLog(FileStorage(path, os), 20)
    for i in range(3):
        log.append(_rec(i))
    # a FAT rename_over cut between remove(path) and rename(tmp, path)
    with open(path + ".tmp", "wb") as f:
        f.write(encode_record(_rec(2)))
    os.remove(path)
    log = CacheLog(FileStorage(path, os), 20)
    assert [r.seq for r in log.records()] == [2]


def test_ack_watermark_vectors_trim_the_cache():
    # The gateway's watermark after each arrival (shared vector) is what the collector gets as `upto`;
    # the cache must then hold exactly the records above it.
    for v in vectors("ack_watermark.json"):
        top = max(v["arrivals"])
        log = CacheLog(MemoryStorage(), 50)
        for i in range(top + 1):
            log.append(_rec(i, boot=7))
        acked = {}
        for upto in v["upto_after_each"]:
            if upto is None:
                continue  # no ack is sent yet
            if upto > acked.get(7, -1):
                acked[7] = upto
            log.trim(acked)
            assert [r.seq for r in log.records()] == list(range(acked[7] + 1, top + 1)), v["name"]
        final = v["upto_after_each"][-1]
        assert log.count == (top + 1 if final is None else top - final), v["name"]


def test_scan_and_trim_across_read_chunks():
    # more records than one read chunk (32): the scan and the trim must see every chunk boundary right
    path = tmpdir() + "/cache.log"
    log = CacheLog(FileStorage(path, os), 200)
    for i in range(70):
        log.append(_rec(i))
    with open(path, "ab") as f:
        f.write(encode_record(_rec(70))[:5])  # torn 71st record
    log = CacheLog(FileStorage(path, os), 200)
    assert log.count == 70 and log.torn_bytes == 5
    assert [r.seq for r in log.records()] == list(range(70))
    assert log.trim({1: 40}, 50) == 9
    assert [r.seq for r in log.records()] == list(range(41, 70))
    # the trim moved the start by 41 >= one mark (32): saved, so a restart starts there
    assert [r.seq for r in CacheLog(FileStorage(path, os), 200).records()] == list(range(41, 70))
    # a corrupt record in the second chunk ends the log there
    path = tmpdir() + "/cache.log"
    log = CacheLog(FileStorage(path, os), 200)
    for i in range(70):
        log.append(_rec(i))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[40 * RECORD_LEN + 7] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)
    assert CacheLog(FileStorage(path, os), 200).count == 40


def test_a_restart_replays_fewer_than_one_mark_and_a_cut_compaction_never_skips():
    storage = MemoryStorage()
    log = CacheLog(storage, 10, mark_every=4)
    for i in range(9):
        log.append(_rec(i))
    log.trim({1: 6})  # start 7: marked
    assert storage.mark == 7
    assert [r.seq for r in CacheLog(storage, 10, mark_every=4).records()] == [7, 8]
    # never full after a restart because of acknowledged records: at most mark_every - 1 of them come back
    for i in range(9, 12):
        log.append(_rec(i))
    log.trim({1: 9})  # start 10 >= capacity: compaction, the mark goes to 0 first
    assert storage.mark == 0 and [r.seq for r in CacheLog(storage, 10).records()] == [10, 11]
    # a power cut between the mark's reset and the new file: the old file with mark 0 replays, skips nothing
    old = MemoryStorage(b"".join(encode_record(_rec(i)) for i in range(12)), mark=0)
    assert [r.seq for r in CacheLog(old, 20).records()] == list(range(12))
