// The collector's clock: reads the DS1307 through a bus interface, turns it into a reading's ts/src,
// and sets it from an ack's gateway time only when it has lost its time (protocol sections 5 and 7).
#ifndef IOTGW_RTC_H
#define IOTGW_RTC_H

#include <stdint.h>

#include "ds1307.h"
#include "iotgw_out.h"
#include "protocol.h"

namespace iotgw {

// Registers 0x00-0x06 of the chip (board: Wire; tests: a fake or simavr's ds1338_virt).
class RtcBus {
 public:
  virtual bool read_regs(uint8_t regs[7]) = 0;
  virtual bool write_regs(const uint8_t regs[7]) = 0;

 protected:
  ~RtcBus() {}
};

class RtcClock {
 public:
  explicit RtcClock(RtcBus& bus) : bus_(bus) {}
  // ts in ms and its source. A chip that answers gives its time even when halted or reset to 2000
  // (the gateway classifies that as `unset`, it is never rewritten); no chip gives null/none.
  void now(int64_t* ts, uint8_t* src);
  // Sets the chip from the gateway's clock (ms) if its time is not valid. Returns true if it did.
  bool set_if_lost(int64_t gateway_ms);
  // True if the last read found a running clock at or after 2001.
  bool valid() const { return valid_; }

 private:
  RtcBus& bus_;
  bool valid_ = false;
};

}  // namespace iotgw

#endif
