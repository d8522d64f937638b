// Character output used by every encoder and by the console: one small interface so the same code
// writes to Arduino's Serial, to a CRC-computing frame wrapper, to a length counter or to a host string.
#ifndef IOTGW_OUT_H
#define IOTGW_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "flash_text.h"

namespace iotgw {

class Out {
 public:
  virtual void write(const char* s, size_t n) = 0;

  void put(char c) { write(&c, 1); }
  void str(const char* s);
  void str(const FlashText* s);  // IOTGW_TEXT("...")
  void u32(uint32_t v);
  // Signed 64-bit decimal without 64-bit division (avr-gcc's __udivdi3 costs about 1 KB of flash).
  void i64(int64_t v);
  // A value in thousandths as the protocol prints it: at most 3 fractional digits, no trailing zeros.
  void milli(int32_t v);
  void hex4(uint16_t v);
  void nl() { put('\n'); }

 protected:
  ~Out() {}
};

// Counts bytes; used to size a payload before sending it (MQTT needs the length first).
class CountingOut : public Out {
 public:
  size_t count = 0;
  void write(const char*, size_t n) override { count += n; }
};

// Wraps another Out and frames what goes through it as a protocol line: "!T <payload>*CRC\n".
class FrameOut : public Out {
 public:
  explicit FrameOut(Out& target) : target_(target) {}
  void begin(char type);
  void end();
  void write(const char* s, size_t n) override;

 private:
  Out& target_;
  uint16_t crc_ = 0xFFFF;
};

// Fixed-capacity text buffer (host tests, MQTT payloads); sets overflow instead of writing past the end.
class BufferOut : public Out {
 public:
  BufferOut(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  void write(const char* s, size_t n) override;
  size_t length() const { return len_; }
  bool overflow() const { return overflow_; }
  const char* data() const { return buf_; }
  void clear() { len_ = 0; overflow_ = false; }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
  bool overflow_ = false;
};

}  // namespace iotgw

#endif
