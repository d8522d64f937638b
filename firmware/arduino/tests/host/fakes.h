// Host-side back ends and fakes for the core's interfaces.
#ifndef IOTGW_TEST_FAKES_H
#define IOTGW_TEST_FAKES_H

#include <cstdio>
#include <string>
#include <vector>

#include "iotgw.h"

// Collects output text.
class StringOut : public iotgw::Out {
 public:
  std::string text;
  void write(const char* s, size_t n) override { text.append(s, n); }
};

// RAM storage that starts erased (0xFF) like a new EEPROM; counts writes; can lose power after
// `budget` more byte writes (later writes are silently not done, as on a board whose supply died).
class RamStorage : public iotgw::Storage {
 public:
  explicit RamStorage(uint32_t n) : bytes(n, 0xFF), cell_writes(n, 0), worn(n, false) {}
  std::vector<uint8_t> bytes;
  std::vector<long> cell_writes;  // per cell, only writes that change it (the board's EEPROM.update)
  std::vector<bool> worn;         // cells that accept a write but keep their old value
  long budget = -1;  // -1: unlimited
  long writes = 0;
  uint32_t size() const override { return (uint32_t)bytes.size(); }
  uint8_t read(uint32_t a) override { return bytes.at(a); }
  bool write(uint32_t a, uint8_t v) override {
    if (budget == 0) return false;
    if (budget > 0) --budget;
    ++writes;
    if (bytes.at(a) == v) return true;
    ++cell_writes.at(a);
    if (!worn.at(a)) bytes.at(a) = v;
    return true;  // like EEPROM.update: no error even when the cell did not take the value
  }
};

// The host-file back end: the same interface over a file, flushed on sync().
class FileStorage : public iotgw::Storage {
 public:
  FileStorage(const std::string& path, uint32_t n) : n_(n) {
    f_ = std::fopen(path.c_str(), "r+b");
    if (!f_) {
      f_ = std::fopen(path.c_str(), "w+b");
      for (uint32_t i = 0; i < n; ++i) std::fputc(0xFF, f_);
      std::fflush(f_);
    }
  }
  ~FileStorage() {
    if (f_) std::fclose(f_);
  }
  uint32_t size() const override { return n_; }
  uint8_t read(uint32_t a) override {
    std::fseek(f_, (long)a, SEEK_SET);
    int c = std::fgetc(f_);
    return c == EOF ? 0xFF : (uint8_t)c;
  }
  bool write(uint32_t a, uint8_t v) override {
    std::fseek(f_, (long)a, SEEK_SET);
    return std::fputc(v, f_) != EOF;
  }
  bool sync() override { return std::fflush(f_) == 0; }

 private:
  std::FILE* f_;
  uint32_t n_;
};

// A DS1307 as registers: reads give the stored image, writes replace it.
class FakeRtc : public iotgw::RtcBus {
 public:
  uint8_t regs[7] = {0x80, 0, 0, 1, 1, 1, 0};  // a fresh chip: CH set, 2000-01-01
  bool present = true;
  int writes = 0;
  bool read_regs(uint8_t out[7]) override {
    if (!present) return false;
    for (int i = 0; i < 7; ++i) out[i] = regs[i];
    return true;
  }
  bool write_regs(const uint8_t in[7]) override {
    if (!present) return false;
    for (int i = 0; i < 7; ++i) regs[i] = in[i];
    ++writes;
    return true;
  }
};

// Captures what a collector sends.
struct Sent {
  iotgw::Record r;
  bool cached;
};
class FakeLink : public iotgw::ReadingLink {
 public:
  bool up = true;
  std::vector<Sent> sent;
  bool connected() override { return up; }
  bool send_reading(const iotgw::NodeConfig&, const iotgw::Record& r, bool cached) override {
    sent.push_back({r, cached});
    return true;
  }
};

#endif
