// Which broker to use when the gateway side has several (each gateway serves every broker,
// docs/deployment.md): a failed connection moves to the next, wrapping around; the sketch's reconnect
// period spaces the attempts, so a dead broker costs one failed attempt.
#ifndef IOTGW_BROKER_CHOICE_H
#define IOTGW_BROKER_CHOICE_H

#include <stdint.h>

namespace iotgw {

class BrokerChoice {
 public:
  explicit BrokerChoice(uint8_t count) : count_(count ? count : 1) {}
  uint8_t current() const { return current_; }
  uint8_t count() const { return count_; }
  uint16_t switches() const { return switches_; }
  // The connection to current() failed: the next attempt goes to the next broker (none with one).
  void failed() {
    if (count_ < 2) return;
    current_ = (uint8_t)((current_ + 1) % count_);
    ++switches_;
  }

 private:
  uint8_t count_;
  uint8_t current_ = 0;
  uint16_t switches_ = 0;
};

}  // namespace iotgw

#endif
