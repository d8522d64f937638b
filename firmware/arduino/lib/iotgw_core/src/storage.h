// Byte-addressed persistent storage behind the cache and the boot counter. Back ends: EEPROM
// (board), SD card file (board, registry builds only), host file and RAM fakes (tests).
#ifndef IOTGW_STORAGE_H
#define IOTGW_STORAGE_H

#include <stdint.h>

namespace iotgw {

class Storage {
 public:
  virtual uint32_t size() const = 0;
  virtual uint8_t read(uint32_t addr) = 0;
  // Returns false if the byte could not be written. Implementations skip unchanged bytes (EEPROM wear).
  virtual bool write(uint32_t addr, uint8_t value) = 0;
  // Makes the writes so far durable (SD and files buffer; EEPROM writes are durable at once).
  virtual bool sync() { return true; }

  // What the core uses: write, then read the byte back (a worn EEPROM cell fails silently otherwise).
  // Every failure, of a write, its read-back or a sync, is counted in `errors` (the status `store_err`).
  bool put(uint32_t addr, uint8_t value) {
    if (write(addr, value) && read(addr) == value) return true;
    ++errors;
    return false;
  }
  bool flush() {
    if (sync()) return true;
    ++errors;
    return false;
  }
  uint32_t errors = 0;

 protected:
  ~Storage() {}
};

// A small blob kept power-loss-safe in `slots` copies (generation byte + data + CRC); each save writes
// the next copy, so a torn save leaves the previous one readable and wear is spread over the copies.
class SlotStore {
 public:
  SlotStore(Storage& s, uint32_t addr, uint8_t data_len, uint8_t slots)
      : s_(s), addr_(addr), len_(data_len), slots_(slots) {}
  static uint32_t footprint(uint8_t data_len, uint8_t slots) { return (uint32_t)(data_len + 3) * slots; }
  bool load(uint8_t* data);  // newest intact copy; false if none
  bool save(const uint8_t* data);

 private:
  bool read_slot(uint8_t i, uint8_t* gen, uint8_t* data);
  Storage& s_;
  uint32_t addr_;
  uint8_t len_;
  uint8_t slots_;
  uint8_t newest_ = 0xFF;  // slot index of the newest copy, 0xFF if none
  uint8_t gen_ = 0;
};

// The node's boot counter (protocol section 1): incremented and persisted at every start. A blank
// store (a new or erased EEPROM) must not restart at 1, or new readings would reuse identities the
// gateway already holds and be dropped as duplicates: it starts from `fresh_seed` instead, which the
// board derives from its real-time clock or from noise (fresh_boot below).
uint32_t next_boot(Storage& s, uint32_t addr, uint32_t fresh_seed = 0);
// The first boot number of a blank store: above 2^16 (past any counter that counted up from 1 before
// an erase) and below 2^31 (leaves room to count), from the RTC seconds when there are some (they only
// grow), else from a noise word.
uint32_t fresh_boot(uint32_t rtc_seconds, uint32_t noise);
const uint32_t kBootCounterBytes = 2 * (4 + 3);

// Little-endian helpers for the record body and slot data (32-bit ones separate: 64-bit shifts are
// costly on an 8-bit AVR).
void put_le32(uint8_t* p, uint32_t v);
uint32_t get_le32(const uint8_t* p);
void put_le64(uint8_t* p, uint64_t v);
uint64_t get_le64(const uint8_t* p);

}  // namespace iotgw

#endif
