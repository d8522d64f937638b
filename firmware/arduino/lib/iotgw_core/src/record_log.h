// The collector's cache: a power-loss-safe log of records (protocol section 8) in a ring over a
// Storage region, plus a small persisted "trim state" (where the oldest unacknowledged record starts
// and the identity of the last trimmed one).
//
// Why it survives a power cut at any byte:
// - records are appended after the last whole one; a torn append is a record whose length runs
//   past the written data or whose CRC fails, and the scan at start stops there;
// - bytes after the end can be stale records from an earlier lap of the ring: they are older, so
//   the scan also stops at the first record whose identity (boot, seq) is not above the previous one;
// - the trim state is saved in rotating CRC-checked copies: a torn save keeps the previous state,
//   which at worst replays records the gateway already has (it keeps one row per identity).
#ifndef IOTGW_RECORD_LOG_H
#define IOTGW_RECORD_LOG_H

#include <stdint.h>

#include "protocol.h"
#include "storage.h"

namespace iotgw {

const uint8_t kRecordMagic = 0xA5;
const uint8_t kRecordBody = 21;
const uint8_t kRecordSize = 1 + 1 + kRecordBody + 2;  // magic, len, body, CRC (big-endian)

void encode_record(const Record& r, uint8_t out[kRecordSize]);
// Checks magic, length and CRC.
bool decode_record(const uint8_t in[kRecordSize], Record* r);

enum AppendResult : uint8_t { kAppended, kLogFull, kLogIoError };

class RecordLog {
 public:
  static const uint8_t kMetaSlots = 4;
  static const uint32_t kMetaBytes = (12 + 3) * kMetaSlots;

  // Uses [addr, addr + len) of the storage: the trim state first, then the ring.
  RecordLog(Storage& s, uint32_t addr, uint32_t len);

  // Reads the trim state and scans for the end. Returns the number of records found.
  uint16_t open();
  uint16_t count() const { return count_; }
  uint16_t capacity() const { return (uint16_t)(ring_len_ / kRecordSize); }
  bool torn_at_open() const { return torn_; }  // the scan stopped at a non-empty, non-whole record

  AppendResult append(const Record& r);

  // Replay cursor: records from the oldest unacknowledged one, oldest first.
  bool has_unsent() const { return cursor_ != count_; }
  bool next_unsent(Record* r);
  void rewind() { cursor_ = 0; }

  // Drops records from the head while one of the watermarks covers them (same boot, seq <= upto),
  // then persists the trim. Returns the number of records trimmed.
  uint16_t trim(uint32_t boot, uint32_t upto);
  bool oldest(Record* r) { return count_ && read_at(0, r); }
  bool newest(Record* r) { return count_ && read_at((uint16_t)(count_ - 1), r); }

 private:
  bool read_at(uint16_t index, Record* r);
  bool read_raw(uint32_t off, Record* r);
  uint32_t ring_pos(uint32_t off) const { return off % ring_len_; }
  void save_meta();

  Storage& s_;
  SlotStore meta_;
  uint32_t ring_addr_;
  uint32_t ring_len_;
  uint32_t head_ = 0;          // ring offset of the oldest record
  uint32_t floor_boot_ = 0;    // identity of the last trimmed record (valid if has_floor_)
  uint32_t floor_seq_ = 0;
  bool has_floor_ = false;
  uint16_t count_ = 0;
  uint16_t cursor_ = 0;        // index (from head) of the next record to send
  bool torn_ = false;
};

}  // namespace iotgw

#endif
