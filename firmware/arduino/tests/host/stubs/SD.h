// Declarations of the Arduino SD 1.3 API (its SdFat classes) that sd_storage.h uses, for a host compile
// check only; the real library builds in the *_reallibs environments (docs/firmware.md).
#pragma once
#include <cstddef>
#include <cstdint>
uint8_t const O_READ = 0x01;
uint8_t const O_WRITE = 0x02;
uint8_t const O_RDWR = O_READ | O_WRITE;
uint8_t const O_CREAT = 0x10;
uint8_t const SPI_HALF_SPEED = 1;
class Sd2Card {
 public:
  uint8_t init(uint8_t sckRateID, uint8_t chipSelectPin);
};
class SdVolume {
 public:
  uint8_t init(Sd2Card* dev);
};
class SdFile {
 public:
  uint8_t openRoot(SdVolume* vol);
  uint8_t open(SdFile* dirFile, const char* fileName, uint8_t oflag);
  uint32_t fileSize() const;
  uint8_t seekSet(uint32_t pos);
  int16_t read(void);
  size_t write(uint8_t b);
  uint8_t sync(uint8_t blocking = 1);
};
