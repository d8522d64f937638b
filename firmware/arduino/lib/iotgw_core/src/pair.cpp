#include "pair.h"

namespace iotgw {

void encode_heartbeat(const Heartbeat& hb, uint8_t out[kHeartbeatLen]) {
  out[0] = kHeartbeatMagic;
  out[1] = hb.active ? 1 : 0;
  out[2] = hb.counter;
}

bool decode_heartbeat(const uint8_t* data, uint8_t len, Heartbeat* hb) {
  if (len != kHeartbeatLen || data[0] != kHeartbeatMagic || data[1] > 1) return false;
  hb->active = data[1] == 1;
  hb->counter = data[2];
  return true;
}

void encode_heartbeat_write(const Heartbeat& hb, uint8_t out[kHeartbeatWriteLen]) {
  out[0] = kHeartbeatRegister;
  encode_heartbeat(hb, out + 1);
}

bool decode_heartbeat_write(const uint8_t* data, uint8_t len, Heartbeat* hb) {
  return len == kHeartbeatWriteLen && data[0] == kHeartbeatRegister && decode_heartbeat(data + 1, kHeartbeatLen, hb);
}

void PrimaryNode::begin(uint32_t now) {
  beat_.start(now, cfg_.heartbeat_ms, true);
  sent_ = 0;
  active_ = false;
}

bool PrimaryNode::poll(uint32_t now, Heartbeat* hb) {
  if (!beat_.due(now)) return false;
  if (sent_ < 0xFFFF) ++sent_;
  if (sent_ >= cfg_.handback_beats) active_ = true;  // this very beat tells the secondary "active"
  hb->counter = counter_++;
  hb->active = active_;
  return true;
}

void SecondaryNode::begin(uint32_t now) {
  last_active_beat_ = now;
  heard_ = false;
  streak_ = 0;
  active_ = false;
}

bool SecondaryNode::on_heartbeat(uint32_t at, const Heartbeat& hb) {
  // Consecutive means no silence of a full timeout since the previous beat.
  if (heard_ && !expired(at, last_beat_, cfg_.timeout_ms)) {
    if (streak_ < 0xFF) ++streak_;
  } else {
    streak_ = 1;
  }
  heard_ = true;
  last_beat_ = at;
  if (hb.active) last_active_beat_ = at;
  // Hand back only to a primary that says it is active, after a full run of consecutive beats.
  if (active_ && hb.active && streak_ >= cfg_.handback_beats) {
    active_ = false;
    return true;
  }
  return false;
}

bool SecondaryNode::poll(uint32_t now) {
  // A claiming primary does not record yet, so only an active one's beats hold the secondary back.
  if (!active_ && expired(now, last_active_beat_, cfg_.timeout_ms)) {
    active_ = true;
    return true;
  }
  return false;
}

}  // namespace iotgw
