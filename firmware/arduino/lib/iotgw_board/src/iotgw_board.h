// Small adapters from the portable core's interfaces to Arduino: Print, EEPROM, the DS1307 on Wire,
// and the serial line reader. Header-only so a sketch compiles only what it includes.
#ifndef IOTGW_BOARD_H
#define IOTGW_BOARD_H

#include <Arduino.h>
#include <EEPROM.h>

#include "iotgw.h"
#include "iotgw_config.h"

namespace iotgw {

class PrintOut : public Out {
 public:
  explicit PrintOut(Print& p) : p_(p) {}
  void write(const char* s, size_t n) override { p_.write(reinterpret_cast<const uint8_t*>(s), n); }

 private:
  Print& p_;
};

// The AVR's EEPROM. update() skips bytes that already hold the value, which spares the cells.
class EepromStorage : public Storage {
 public:
  uint32_t size() const override { return EEPROM.length(); }
  uint8_t read(uint32_t a) override { return EEPROM.read((int)a); }
  bool write(uint32_t a, uint8_t v) override {
    EEPROM.update((int)a, v);
    return true;
  }
};

// A noise word for the first boot number of a blank EEPROM (next_boot): the low bits of the ADC on a
// pin (the sensor input moves; a floating one moves more) and the timing of those conversions.
inline uint32_t noise_word() {
  uint32_t w = 0;
  for (uint8_t i = 0; i < 16; ++i) w = (w << 2) ^ (uint32_t)analogRead(IOTGW_ADC_PIN);
  return w ^ micros();
}

// Reads a serial port into lines and hands every ack frame to a callback.
template <size_t N>
class AckReader {
 public:
  AckReader() : lines_(buf_, N) {}
  // Returns true with *ack filled when a complete, valid ack line arrived.
  bool poll(Stream& in, Ack* ack) {
    while (in.available()) {
      if (!lines_.push((char)in.read())) continue;
      Frame f;
      if (parse_frame(lines_.line(), lines_.length(), &f) == kFrameOk && f.type == 'A' &&
          parse_ack(f.payload, f.payload_len, ack))
        return true;
    }
    return false;
  }

 private:
  char buf_[N];
  LineReader lines_;
};

}  // namespace iotgw

#endif
