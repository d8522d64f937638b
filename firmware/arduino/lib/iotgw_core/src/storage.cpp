#include "storage.h"

#include "crc16.h"

namespace iotgw {

void put_le32(uint8_t* p, uint32_t v) {
  for (uint8_t i = 0; i < 4; ++i, v >>= 8) p[i] = (uint8_t)v;
}

uint32_t get_le32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

void put_le64(uint8_t* p, uint64_t v) {
  put_le32(p, (uint32_t)v);
  put_le32(p + 4, (uint32_t)(v >> 32));
}

uint64_t get_le64(const uint8_t* p) { return get_le32(p) | ((uint64_t)get_le32(p + 4) << 32); }

bool SlotStore::read_slot(uint8_t i, uint8_t* gen, uint8_t* data) {
  uint32_t a = addr_ + (uint32_t)i * (len_ + 3);
  *gen = s_.read(a);
  uint16_t crc = crc16_update(kCrcInit, *gen);
  for (uint8_t k = 0; k < len_; ++k) crc = crc16_update(crc, data[k] = s_.read(a + 1 + k));
  uint16_t stored = (uint16_t)(((uint16_t)s_.read(a + 1 + len_) << 8) | s_.read(a + 2 + len_));
  return crc == stored;
}

bool SlotStore::load(uint8_t* data) {
  // The newest copy is the intact one whose generation is ahead of every other intact one
  // (serial-number comparison, so the 8-bit generation may wrap).
  newest_ = 0xFF;
  uint8_t tmp[32];
  if (len_ > sizeof tmp) return false;
  for (uint8_t i = 0; i < slots_; ++i) {
    uint8_t gen;
    if (!read_slot(i, &gen, tmp)) continue;
    if (newest_ == 0xFF || (int8_t)(gen - gen_) > 0) {
      newest_ = i;
      gen_ = gen;
      for (uint8_t k = 0; k < len_; ++k) data[k] = tmp[k];
    }
  }
  return newest_ != 0xFF;
}

bool SlotStore::save(const uint8_t* data) {
  uint8_t slot = newest_ == 0xFF ? 0 : (uint8_t)((newest_ + 1) % slots_);
  uint8_t gen = newest_ == 0xFF ? 0 : (uint8_t)(gen_ + 1);
  uint32_t a = addr_ + (uint32_t)slot * (len_ + 3);
  bool ok = s_.put(a, gen);
  uint16_t crc = crc16_update(kCrcInit, gen);
  for (uint8_t k = 0; k < len_; ++k) {
    ok &= s_.put(a + 1 + k, data[k]);
    crc = crc16_update(crc, data[k]);
  }
  ok &= s_.put(a + 1 + len_, (uint8_t)(crc >> 8));
  ok &= s_.put(a + 2 + len_, (uint8_t)crc);
  ok &= s_.flush();
  if (ok) {
    newest_ = slot;
    gen_ = gen;
  }
  return ok;
}

uint32_t fresh_boot(uint32_t rtc_seconds, uint32_t noise) {
  uint32_t base = rtc_seconds ? rtc_seconds : noise;
  return 0x10000UL + (base >> 2);  // a shift, not a modulo: no 32-bit division on an 8-bit AVR
}

uint32_t next_boot(Storage& s, uint32_t addr, uint32_t fresh_seed) {
  SlotStore store(s, addr, 4, 2);
  uint8_t data[4];
  uint32_t boot = store.load(data) ? get_le32(data) + 1 : (fresh_seed ? fresh_seed : 1);
  put_le32(data, boot);
  store.save(data);
  return boot;
}

}  // namespace iotgw
