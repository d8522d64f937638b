#include "iotgw_out.h"

#include "crc16.h"

namespace iotgw {

void Out::str(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  write(s, n);
}

void Out::str(const FlashText* s) {
  const char* p = reinterpret_cast<const char*>(s);
  for (char c = IOTGW_TEXT_BYTE(p); c; c = IOTGW_TEXT_BYTE(++p)) put(c);
}

void Out::u32(uint32_t v) {
  char buf[10];
  uint8_t i = sizeof buf;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  write(buf + i, sizeof buf - i);
}

void Out::i64(int64_t v) {
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  if (v < 0) put('-');
  // Long division by 10 over four 16-bit limbs: only 32-bit arithmetic, which the AVR core already links.
  uint16_t limb[4] = {(uint16_t)(u >> 48), (uint16_t)(u >> 32), (uint16_t)(u >> 16), (uint16_t)u};
  char buf[20];
  uint8_t i = sizeof buf;
  do {
    uint32_t rem = 0;
    bool nonzero = false;
    for (uint8_t k = 0; k < 4; ++k) {
      uint32_t cur = (rem << 16) | limb[k];
      limb[k] = (uint16_t)(cur / 10);
      rem = cur % 10;
      nonzero |= limb[k] != 0;
    }
    buf[--i] = (char)('0' + rem);
    if (!nonzero) break;
  } while (true);
  write(buf + i, sizeof buf - i);
}

void Out::milli(int32_t v) {
  uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v;
  if (v < 0) put('-');
  u32(u / 1000);
  uint16_t frac = (uint16_t)(u % 1000);
  if (!frac) return;
  char digits[4] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10), (char)('0' + frac % 10)};
  uint8_t n = 4;
  while (digits[n - 1] == '0') --n;  // no trailing zeros: 21.5, not 21.500
  write(digits, n);
}

void Out::hex4(uint16_t v) {
  char buf[4];
  for (uint8_t i = 0; i < 4; ++i) {
    uint8_t d = (uint8_t)((v >> (12 - 4 * i)) & 15);
    buf[i] = (char)(d < 10 ? '0' + d : 'A' + d - 10);
  }
  write(buf, 4);
}

void FrameOut::begin(char type) {
  crc_ = kCrcInit;
  char head[3] = {'!', type, ' '};
  write(head, 3);
}

void FrameOut::write(const char* s, size_t n) {
  crc_ = crc16(s, n, crc_);
  target_.write(s, n);
}

void FrameOut::end() {
  target_.put('*');
  target_.hex4(crc_);
  target_.put('\n');
}

void BufferOut::write(const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (len_ + 1 >= cap_) {  // keep room for the terminating NUL
      overflow_ = true;
      break;
    }
    buf_[len_++] = s[i];
  }
  if (cap_) buf_[len_] = '\0';
}

}  // namespace iotgw
