// The redundant pair's roles (protocol section 9): the primary ("master") sends an I2C
// heartbeat every period; the secondary ("slave") takes over when no heartbeat from an active primary
// has arrived for the timeout, and hands back after `handback_beats` consecutive heartbeats.
//
// Coverage: a (re)started primary first *claims*: its first handback_beats-1 heartbeats say "claiming"
// and it turns active when it sends heartbeat number handback_beats, which says "active". The
// secondary counts consecutive heartbeats (each within the timeout of the previous one) and goes
// standby on an "active" beat once it has heard that many in a row, so on a clean bus both switch on the same heartbeat (overlap ~0); one
// lost heartbeat delays the hand-back by one period (overlap <= one heartbeat period). A flapping
// primary that sends fewer beats never takes the role back (hysteresis).
#ifndef IOTGW_PAIR_H
#define IOTGW_PAIR_H

#include <stdint.h>

#include "protocol.h"
#include "timing.h"

namespace iotgw {

struct PairConfig {
  uint32_t heartbeat_ms;   // primary's heartbeat period
  uint32_t timeout_ms;     // secondary takes over this long after the last heartbeat of an active primary
  uint8_t handback_beats;  // consecutive heartbeats before the secondary hands back (>= 1)
};

// On the wire (protocol section 9): an I2C write of kHeartbeatRegister then the frame
// B7 | state (0 claiming, 1 active) | counter. The secondary answers a read of kReplyRegister with its role.
const uint8_t kHeartbeatLen = 3;
const uint8_t kHeartbeatMagic = 0xB7;
const uint8_t kHeartbeatRegister = 0;
const uint8_t kReplyRegister = 3;
const uint8_t kHeartbeatWriteLen = 1 + kHeartbeatLen;
struct Heartbeat {
  uint8_t counter;
  bool active;
};
void encode_heartbeat(const Heartbeat& hb, uint8_t out[kHeartbeatLen]);
bool decode_heartbeat(const uint8_t* data, uint8_t len, Heartbeat* hb);
// The whole I2C write (register byte + frame), and the secondary's side of it: true with *hb filled
// when `data` is a heartbeat write (a register-3 pointer write before a read is not).
void encode_heartbeat_write(const Heartbeat& hb, uint8_t out[kHeartbeatWriteLen]);
bool decode_heartbeat_write(const uint8_t* data, uint8_t len, Heartbeat* hb);

class PrimaryNode {
 public:
  explicit PrimaryNode(const PairConfig& cfg) : cfg_(cfg) {}
  void begin(uint32_t now);
  // True when a heartbeat is due; *hb is the one to send. May turn the node active.
  bool poll(uint32_t now, Heartbeat* hb);
  Role role() const { return active_ ? kRoleActive : kRoleStandby; }

 private:
  PairConfig cfg_;
  Periodic beat_;
  uint16_t sent_ = 0;
  uint8_t counter_ = 0;
  bool active_ = false;
};

class SecondaryNode {
 public:
  explicit SecondaryNode(const PairConfig& cfg) : cfg_(cfg) {}
  // Starts standby; with no active primary heard, takes over one timeout after boot.
  void begin(uint32_t now);
  // A heartbeat received at `at` (the I2C interrupt's timestamp). Returns true if the role changed.
  bool on_heartbeat(uint32_t at, const Heartbeat& hb);
  // Call every loop. Returns true if the role changed.
  bool poll(uint32_t now);
  Role role() const { return active_ ? kRoleActive : kRoleStandby; }
  uint8_t streak() const { return streak_; }

 private:
  PairConfig cfg_;
  uint32_t last_active_beat_ = 0;  // or boot time
  uint32_t last_beat_ = 0;
  bool heard_ = false;
  uint8_t streak_ = 0;
  bool active_ = false;
};

}  // namespace iotgw

#endif
