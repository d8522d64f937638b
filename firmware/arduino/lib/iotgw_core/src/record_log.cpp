#include "record_log.h"

#include "crc16.h"

namespace iotgw {

namespace {

bool identity_after(uint32_t boot, uint32_t seq, uint32_t prev_boot, uint32_t prev_seq) {
  return boot > prev_boot || (boot == prev_boot && seq > prev_seq);
}

}  // namespace

void encode_record(const Record& r, uint8_t out[kRecordSize]) {
  out[0] = kRecordMagic;
  out[1] = kRecordBody;
  uint8_t* b = out + 2;
  put_le32(b, r.boot);
  put_le32(b + 4, r.seq);
  put_le64(b + 8, (uint64_t)(r.src == kSrcNone ? kNoTime : r.ts));
  b[16] = r.src;
  put_le32(b + 17, (uint32_t)r.val_milli);
  uint16_t crc = crc16(out + 1, 1 + kRecordBody);
  out[kRecordSize - 2] = (uint8_t)(crc >> 8);
  out[kRecordSize - 1] = (uint8_t)crc;
}

bool decode_record(const uint8_t in[kRecordSize], Record* r) {
  if (in[0] != kRecordMagic || in[1] != kRecordBody) return false;
  uint16_t crc = crc16(in + 1, 1 + kRecordBody);
  if (in[kRecordSize - 2] != (uint8_t)(crc >> 8) || in[kRecordSize - 1] != (uint8_t)crc) return false;
  const uint8_t* b = in + 2;
  r->boot = get_le32(b);
  r->seq = get_le32(b + 4);
  r->ts = (int64_t)get_le64(b + 8);
  r->src = b[16];
  r->val_milli = (int32_t)get_le32(b + 17);
  return r->src <= kSrcNtp;
}

RecordLog::RecordLog(Storage& s, uint32_t addr, uint32_t len)
    : s_(s), meta_(s, addr, 12, kMetaSlots), ring_addr_(addr + kMetaBytes), ring_len_(len - kMetaBytes) {}

bool RecordLog::read_raw(uint32_t off, Record* r) {
  uint8_t buf[kRecordSize];
  for (uint8_t i = 0; i < kRecordSize; ++i) buf[i] = s_.read(ring_addr_ + ring_pos(off + i));
  return decode_record(buf, r);
}

bool RecordLog::write_slot(uint32_t off, const uint8_t* buf) {
  bool ok = true;
  for (uint8_t i = 0; i < kRecordSize; ++i) ok &= s_.put(ring_addr_ + ring_pos(off + i), buf[i]);
  return s_.flush() && ok;
}

uint16_t RecordLog::open() {
  uint8_t m[12];
  has_floor_ = meta_.load(m);
  if (has_floor_) {
    head_ = ring_pos(get_le32(m));
    floor_boot_ = get_le32(m + 4);
    floor_seq_ = get_le32(m + 8);
  } else {
    head_ = 0;
  }
  saved_head_ = head_;
  dirty_ = false;
  pending_ = false;
  count_ = 0;
  holes_ = 0;
  tail_holes_ = 0;
  cursor_ = 0;
  sent_ = 0;
  torn_ = false;
  uint32_t prev_boot = floor_boot_, prev_seq = floor_seq_;
  bool have_prev = has_floor_;
  const uint16_t slots = capacity();
  while (count_ < slots) {
    // The next record, stepping over at most kMaxHoles undecodable slots before it.
    Record r;
    uint8_t skip = 0;
    bool found = false;
    for (; skip <= kMaxHoles && count_ + skip < slots; ++skip) {
      if (read_at((uint16_t)(count_ + skip), &r)) {
        found = !have_prev || identity_after(r.boot, r.seq, prev_boot, prev_seq);
        break;
      }
    }
    if (!found) {
      // Erased storage or a stale, older record is a clean end; a started record that is not whole is torn.
      torn_ = s_.read(ring_addr_ + ring_pos(head_ + (uint32_t)count_ * kRecordSize)) == kRecordMagic &&
              !read_at(count_, &r);
      break;
    }
    count_ = (uint16_t)(count_ + skip + 1);
    holes_ = (uint16_t)(holes_ + skip);
    prev_boot = r.boot;
    prev_seq = r.seq;
    have_prev = true;
  }
  return count();
}

bool RecordLog::flush_pending() {
  if (!pending_) return true;
  pending_ = false;
  --count_;
  if (append(pend_) == kAppended) return true;
  pending_ = true;
  ++count_;
  return false;
}

AppendResult RecordLog::append(const Record& r, bool defer) {
  if (pending_ && !flush_pending()) return kLogIoError;
  if (defer) {
    if ((uint32_t)(count_ + 1) * kRecordSize > ring_len_) return kLogFull;
    pend_ = r;
    pending_ = true;
    ++count_;
    return kAppended;
  }
  uint8_t buf[kRecordSize];
  encode_record(r, buf);
  // A slot that does not read back becomes a hole and the record goes to the next one; never more
  // than kMaxHoles in a row, or the scan at start could not step over them.
  for (;;) {
    if ((uint32_t)(count_ + 1) * kRecordSize > ring_len_) return kLogFull;
    uint32_t off = head_ + (uint32_t)count_ * kRecordSize;
    // About to overwrite bytes behind the persisted head (acknowledged records a restart would still
    // scan): persist the head first.
    if (dirty_ && ring_pos(saved_head_ + ring_len_ - ring_pos(off)) < kRecordSize && !save_meta())
      return kLogIoError;
    if (write_slot(off, buf)) {
      ++count_;
      tail_holes_ = 0;
      return kAppended;
    }
    if (tail_holes_ >= kMaxHoles) return kLogIoError;  // the slot is retried at the next append
    ++count_;
    ++holes_;
    ++tail_holes_;
  }
}

bool RecordLog::next_unsent(Record* r) {
  while (cursor_ < count_) {
    bool whole = read_at(cursor_++, r);  // holes are stepped over
    if (cursor_ > sent_) sent_ = cursor_;
    if (whole) return true;
  }
  return false;
}

bool RecordLog::oldest(Record* r) {
  for (uint16_t i = 0; i < count_; ++i)
    if (read_at(i, r)) return true;
  return false;
}

bool RecordLog::newest(Record* r) {
  for (uint16_t i = count_; i > 0; --i)
    if (read_at((uint16_t)(i - 1), r)) return true;
  return false;
}

uint16_t RecordLog::trim(uint32_t boot, uint32_t upto) {
  uint16_t n = 0, slots = 0, holes = 0;
  Record r;
  while (slots < count_) {
    if (!read_at(slots, &r)) {  // a hole: goes with the records around it
      ++slots;
      ++holes;
      continue;
    }
    if (r.boot != boot || r.seq > upto) break;
    floor_boot_ = r.boot;
    floor_seq_ = r.seq;
    ++n;
    slots = (uint16_t)(slots + 1);
    holes_ = (uint16_t)(holes_ - holes);
    holes = 0;
    // A record acknowledged before it was written (write-behind) never took its slot: the head stays
    // there, so every slot from the persisted head to the end is still written in identity order.
    uint16_t advance = slots;
    if (pending_ && slots == count_) {
      pending_ = false;
      --advance;
    }
    if (advance) {
      head_ = ring_pos(head_ + (uint32_t)advance * kRecordSize);
      dirty_ = true;
    }
    count_ = (uint16_t)(count_ - slots);
    cursor_ = cursor_ > slots ? (uint16_t)(cursor_ - slots) : 0;
    sent_ = sent_ > slots ? (uint16_t)(sent_ - slots) : 0;
    slots = 0;
    has_floor_ = true;
  }
  if (!count_) tail_holes_ = 0;
  // Never let the persisted head lag more than half the ring: a restart replays at most that many
  // acknowledged records, so they cannot fill the cache and make the first samples after a start dropped.
  if (dirty_ && ring_pos(head_ + ring_len_ - saved_head_) / kRecordSize >= (uint32_t)(capacity() / 2)) save_meta();
  return n;
}

bool RecordLog::persist() { return !dirty_ || save_meta(); }

bool RecordLog::save_meta() {
  uint8_t m[12];
  put_le32(m, head_);
  put_le32(m + 4, floor_boot_);
  put_le32(m + 8, floor_seq_);
  ++meta_saves_;
  if (!meta_.save(m)) return false;
  saved_head_ = head_;
  dirty_ = false;
  return true;
}

}  // namespace iotgw
