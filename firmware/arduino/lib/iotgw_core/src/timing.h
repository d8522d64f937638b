// millis() arithmetic that survives the 2^32 ms (49.7 day) rollover: always compare elapsed times,
// computed as an unsigned difference, never absolute timestamps.
#ifndef IOTGW_TIMING_H
#define IOTGW_TIMING_H

#include <stdint.h>

namespace iotgw {

inline uint32_t elapsed_ms(uint32_t now, uint32_t since) { return (uint32_t)(now - since); }
// A `since` slightly after `now` (an interrupt stamped it after the caller read millis()) has not
// expired: a difference of 2^31 ms or more is taken as negative, not as 24.8 days.
inline bool expired(uint32_t now, uint32_t since, uint32_t timeout) {
  uint32_t e = elapsed_ms(now, since);
  return e >= timeout && e < 0x80000000UL;
}

// A period that fires at a steady cadence; if the loop was stalled for longer than a period it
// fires once and restarts from now instead of firing a burst to catch up.
class Periodic {
 public:
  void start(uint32_t now, uint32_t period, bool fire_now) {
    period_ = period;
    last_ = fire_now ? now - period : now;
  }
  bool due(uint32_t now) {
    uint32_t e = elapsed_ms(now, last_);
    if (e < period_) return false;
    last_ = e >= 2 * period_ ? now : last_ + period_;
    return true;
  }

 private:
  uint32_t last_ = 0;
  uint32_t period_ = 1;
};

// Non-blocking LED pulse (the classic sketches used delay(1000) and stalled the loop).
class Blinker {
 public:
  void pulse(uint32_t now, uint16_t length_ms) {
    on_ = true;
    since_ = now;
    length_ = length_ms;
  }
  // Call every loop; returns whether the LED should be lit.
  bool update(uint32_t now) {
    if (on_ && expired(now, since_, length_)) on_ = false;
    return on_;
  }

 private:
  bool on_ = false;
  uint32_t since_ = 0;
  uint16_t length_ = 0;
};

}  // namespace iotgw

#endif
