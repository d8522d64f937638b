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
//
// Why it lasts (an EEPROM cell wears out after about 100 000 writes):
// - the trim state is persisted lazily: an ack only moves the head in RAM; the state is saved when an
//   append is about to overwrite the ring behind the persisted head, or when the head has moved half
//   the ring past it: about twice per lap. A restart may therefore replay up to half a ring of
//   acknowledged records (harmless, see above), and they never fill the cache;
// - every byte is read back after it is written; an append that does not read back leaves a "hole"
//   (an undecodable slot) and goes to the next slot, so a worn cell is skipped rather than trusted.
//   The scan at start steps over up to kMaxHoles consecutive holes when the record after them
//   continues the identity order (a torn record is followed by an older or blank slot, never that).
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
  static const uint8_t kMaxHoles = 2;
  static const uint32_t kMetaBytes = (12 + 3) * kMetaSlots;

  // Uses [addr, addr + len) of the storage: the trim state first, then the ring.
  RecordLog(Storage& s, uint32_t addr, uint32_t len);

  // Reads the trim state and scans for the end. Returns the number of records found.
  uint16_t open();
  uint16_t count() const { return (uint16_t)(count_ - holes_); }  // records, holes not counted
  uint16_t capacity() const { return (uint16_t)(ring_len_ / kRecordSize); }
  bool torn_at_open() const { return torn_; }  // the scan stopped at a non-empty, non-whole record

  // defer: keep the record in RAM only, until flush_pending() or the next append writes it, or a trim
  // drops it unwritten (write-behind, see Collector: spares the EEPROM when acks come promptly).
  AppendResult append(const Record& r, bool defer = false);
  bool has_pending() const { return pending_; }
  bool flush_pending();

  // Replay cursor: records from the oldest unacknowledged one, oldest first.
  bool has_unsent() const { return cursor_ < count_; }
  bool next_unsent(Record* r);
  void rewind() { cursor_ = 0; }
  // Whether the cursor is among records sent before (after a rewind); skip_resent() ends a resend
  // window early, going on with the first record never sent (protocol section 10: resend a window).
  bool resending() const { return cursor_ < sent_; }
  void skip_resent() { cursor_ = sent_; }

  // Drops records from the head while one of the watermarks covers them (same boot, seq <= upto).
  // The new head is persisted lazily (see above). Returns the number of records trimmed.
  uint16_t trim(uint32_t boot, uint32_t upto);
  // Saves the trim state now if it changed (tests; a board never needs to).
  bool persist();
  bool oldest(Record* r);
  bool newest(Record* r);
  uint32_t meta_saves() const { return meta_saves_; }
  uint32_t storage_errors() const { return s_.errors; }

 private:
  bool read_at(uint16_t slot, Record* r) {
    if (pending_ && slot + 1 == count_) {
      *r = pend_;
      return true;
    }
    return read_raw(head_ + (uint32_t)slot * kRecordSize, r);
  }
  bool read_raw(uint32_t off, Record* r);
  bool write_slot(uint32_t off, const uint8_t* buf);
  uint32_t ring_pos(uint32_t off) const { return off % ring_len_; }
  bool save_meta();

  Storage& s_;
  SlotStore meta_;
  uint32_t ring_addr_;
  uint32_t ring_len_;
  uint32_t head_ = 0;          // ring offset of the oldest record
  uint32_t floor_boot_ = 0;    // identity of the last trimmed record (valid if has_floor_)
  uint32_t floor_seq_ = 0;
  bool has_floor_ = false;
  uint32_t saved_head_ = 0;    // the head as persisted; bytes from there to head_ may be replayed
  bool dirty_ = false;         // head_/floor differ from the persisted trim state
  uint16_t count_ = 0;         // slots from the head: records and holes
  uint16_t holes_ = 0;         // undecodable slots among them (failed cells)
  uint8_t tail_holes_ = 0;     // consecutive holes at the end
  uint16_t cursor_ = 0;        // slot (from head) of the next record to send
  uint16_t sent_ = 0;          // slots (from head) sent at least once since open
  uint32_t meta_saves_ = 0;
  bool torn_ = false;
  bool pending_ = false;       // the last slot is pend_, not yet written
  Record pend_ = {0, 0, 0, 0, 0};
};

}  // namespace iotgw

#endif
