// The cache on an SD card: one preallocated file used as byte-addressed storage. Needs the Arduino SD
// library, so it is compiled only in the PlatformIO environments that fetch it (IOTGW_WITH_SD).
#ifndef IOTGW_SD_STORAGE_H
#define IOTGW_SD_STORAGE_H

#include <SD.h>

#include "iotgw.h"

namespace iotgw {

class SdStorage : public Storage {
 public:
  // Opens (and on first use preallocates with 0xFF, like an erased EEPROM) the file.
  bool begin(uint8_t cs_pin, const char* name, uint32_t bytes) {
    size_ = bytes;
    if (!SD.begin(cs_pin)) return false;
    // Not FILE_WRITE: that adds O_APPEND, which moves every write to the end of the file.
    file_ = SD.open(name, O_READ | O_WRITE | O_CREAT);
    if (!file_) return false;
    if (file_.size() < bytes) {
      file_.seek(file_.size());
      for (uint32_t i = file_.size(); i < bytes; ++i) file_.write((uint8_t)0xFF);
      file_.flush();
    }
    return true;
  }
  uint32_t size() const override { return size_; }
  uint8_t read(uint32_t a) override {
    if (!file_.seek(a)) return 0xFF;
    int c = file_.read();
    return c < 0 ? 0xFF : (uint8_t)c;
  }
  bool write(uint32_t a, uint8_t v) override { return file_.seek(a) && file_.write(v) == 1; }
  bool sync() override {
    file_.flush();  // the record is on the card when append() returns
    return true;
  }

 private:
  File file_;
  uint32_t size_ = 0;
};

}  // namespace iotgw

#endif
