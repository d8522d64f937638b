// The cache on an SD card: one preallocated file used as byte-addressed storage. Uses the SdFat classes
// the Arduino SD library is built on (Sd2Card, SdVolume, SdFile) rather than its File wrapper, because
// File::flush() throws away the result of the card's sync: here a failed write or sync is reported
// (the status's store_err) instead of being taken for success. Compiled only where the SD library is
// available (IOTGW_WITH_SD).
#ifndef IOTGW_SD_STORAGE_H
#define IOTGW_SD_STORAGE_H

#include <SD.h>

#include "iotgw.h"

namespace iotgw {

class SdStorage : public Storage {
 public:
  // Opens (and on first use preallocates with 0xFF, like an erased EEPROM) the file. On a Mega with an
  // Ethernet shield, pin 10 (the W5100's chip select) must be high first: see begin_sd_bus().
  bool begin(uint8_t cs_pin, const char* name, uint32_t bytes) {
    size_ = bytes;
    if (!card_.init(SPI_HALF_SPEED, cs_pin) || !volume_.init(&card_) || !root_.openRoot(&volume_)) return false;
    if (!file_.open(&root_, name, O_RDWR | O_CREAT)) return false;
    uint32_t have = file_.fileSize();
    if (have < bytes) {
      if (!file_.seekSet(have)) return false;
      for (uint32_t i = have; i < bytes; ++i)
        if (file_.write((uint8_t)0xFF) != 1) return false;
      if (!file_.sync()) return false;
    }
    return true;
  }
  uint32_t size() const override { return size_; }
  uint8_t read(uint32_t a) override {
    if (!file_.seekSet(a)) return 0xFF;
    int16_t c = file_.read();
    return c < 0 ? 0xFF : (uint8_t)c;
  }
  bool write(uint32_t a, uint8_t v) override { return file_.seekSet(a) && file_.write(v) == 1; }
  bool sync() override { return file_.sync(); }  // the record is on the card when append() returns

 private:
  Sd2Card card_;
  SdVolume volume_;
  SdFile root_;
  SdFile file_;
  uint32_t size_ = 0;
};

}  // namespace iotgw

#endif
