#include "rtc.h"

namespace iotgw {

void RtcClock::now(int64_t* ts, uint8_t* src) {
  uint8_t regs[7];
  Ds1307Time t;
  if (!bus_.read_regs(regs) || !ds1307_decode(regs, &t)) {
    valid_ = false;
    *ts = kNoTime;
    *src = kSrcNone;
    return;
  }
  valid_ = ds1307_time_valid(t);
  *ts = (int64_t)t.unix * 1000;
  *src = kSrcRtc;
}

bool RtcClock::set_if_lost(int64_t gateway_ms) {
  if (gateway_ms < 0) return false;
  uint8_t regs[7];
  Ds1307Time t;
  if (!bus_.read_regs(regs)) return false;  // no chip: nothing to set
  if (ds1307_decode(regs, &t) && ds1307_time_valid(t)) {
    valid_ = true;
    return false;  // never move a running, valid clock
  }
  if (!ds1307_encode((uint32_t)(gateway_ms / 1000), regs) || !bus_.write_regs(regs)) return false;
  valid_ = true;
  return true;
}

}  // namespace iotgw
