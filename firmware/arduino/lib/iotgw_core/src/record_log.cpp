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

bool RecordLog::read_at(uint16_t index, Record* r) {
  return read_raw(head_ + (uint32_t)index * kRecordSize, r);
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
  count_ = 0;
  cursor_ = 0;
  torn_ = false;
  uint32_t prev_boot = floor_boot_, prev_seq = floor_seq_;
  bool have_prev = has_floor_;
  while ((uint32_t)(count_ + 1) * kRecordSize <= ring_len_) {
    Record r;
    uint32_t off = head_ + (uint32_t)count_ * kRecordSize;
    if (!read_raw(off, &r) || (have_prev && !identity_after(r.boot, r.seq, prev_boot, prev_seq))) {
      // Erased storage or a stale, older record is a clean end; a started record that is not whole is torn.
      torn_ = s_.read(ring_addr_ + ring_pos(off)) == kRecordMagic && !read_raw(off, &r);
      break;
    }
    prev_boot = r.boot;
    prev_seq = r.seq;
    have_prev = true;
    ++count_;
  }
  return count_;
}

AppendResult RecordLog::append(const Record& r) {
  if ((uint32_t)(count_ + 1) * kRecordSize > ring_len_) return kLogFull;
  uint8_t buf[kRecordSize];
  encode_record(r, buf);
  uint32_t off = head_ + (uint32_t)count_ * kRecordSize;
  bool ok = true;
  for (uint8_t i = 0; i < kRecordSize; ++i) ok &= s_.write(ring_addr_ + ring_pos(off + i), buf[i]);
  ok &= s_.sync();
  if (!ok) return kLogIoError;
  ++count_;
  return kAppended;
}

bool RecordLog::next_unsent(Record* r) {
  if (cursor_ >= count_ || !read_at(cursor_, r)) return false;
  ++cursor_;
  return true;
}

uint16_t RecordLog::trim(uint32_t boot, uint32_t upto) {
  uint16_t n = 0;
  Record r;
  while (n < count_ && read_at(n, &r) && r.boot == boot && r.seq <= upto) {
    floor_boot_ = r.boot;
    floor_seq_ = r.seq;
    ++n;
  }
  if (!n) return 0;
  has_floor_ = true;
  head_ = ring_pos(head_ + (uint32_t)n * kRecordSize);
  count_ = (uint16_t)(count_ - n);
  cursor_ = cursor_ > n ? (uint16_t)(cursor_ - n) : 0;
  save_meta();
  return n;
}

void RecordLog::save_meta() {
  uint8_t m[12];
  put_le32(m, head_);
  put_le32(m + 4, floor_boot_);
  put_le32(m + 8, floor_seq_);
  meta_.save(m);
}

}  // namespace iotgw
