// Declarations of the Arduino SD 1.2 API that sd_storage.h uses, for a host compile check only: the
// library is fetched by PlatformIO's registry environments and cannot be installed offline.
#pragma once
#include <cstddef>
#include <cstdint>
#define O_READ 0x01
#define O_WRITE 0x02
#define O_CREAT 0x10
class File {
 public:
  size_t write(uint8_t);
  int read();
  void flush();
  bool seek(uint32_t pos);
  uint32_t size();
  operator bool();
};
class SDClass {
 public:
  bool begin(uint8_t csPin);
  File open(const char* filename, uint8_t mode);
};
extern SDClass SD;
