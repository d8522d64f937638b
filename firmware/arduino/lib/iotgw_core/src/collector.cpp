#include "collector.h"

#include "timing.h"

namespace iotgw {

bool SerialLink::send_reading(const NodeConfig& cfg, const Record& r, bool cached) {
  FrameOut f(out_);
  f.begin('R');
  write_reading(f, cfg, r, cached);
  f.end();
  return true;
}

void SerialLink::send_status(const NodeConfig& cfg, const Status& st) {
  FrameOut f(out_);
  f.begin('S');
  write_status(f, cfg, st);
  f.end();
}

void Collector::say(const FlashText* what, uint32_t n) {
  if (!console_) return;
  console_->str(what);
  console_->u32(n);
  console_->nl();
}

// Draws this round's wait uniformly in [T/2, T] (protocol section 10), so collectors that lost the
// gateway together do not resend together. A multiply and shift, no division (cheap on an AVR).
void Collector::arm(uint32_t now) {
  rng_ ^= (uint16_t)(rng_ << 7);
  rng_ ^= (uint16_t)(rng_ >> 9);
  rng_ ^= (uint16_t)(rng_ << 8);
  uint16_t half = (uint16_t)(timeout_ms_ / 2);  // the cap keeps T/2 within 16 bits
  wait_ms_ = half + (uint16_t)(((uint32_t)half * rng_) >> 16);
  wait_since_ = now;
}

// Resends the oldest unacknowledged records, at most one window of them, then goes on with new ones.
void Collector::start_window() {
  log_.rewind();
  resend_left_ = IOTGW_RESEND_WINDOW;
}

void Collector::begin(uint32_t boot, uint32_t now) {
  boot_ = boot;
  seed_jitter(boot);
  seq_ = 0;
  uint16_t n = log_.open();
  if (log_.torn_at_open()) say(IOTGW_TEXT("cache torn record dropped, records="), n);
  say(IOTGW_TEXT("cache open records="), n);
  waiting_ = false;
  was_connected_ = false;
  timeout_ms_ = ack_timeout_ms_;
  wait_since_ = now;  // armed (a jitter draw) at the first send, not here: see shared/vectors/resend_timer.json
}

bool Collector::record(uint32_t now, int64_t ts, uint8_t src, int32_t val_milli) {
  Record r = {boot_, seq_, src == kSrcNone ? kNoTime : ts, src, val_milli};
  AppendResult res = log_.append(r, persist_after_ms_ != 0);
  if (res != kAppended) {
    ++dropped_;
    say(res == kLogFull ? IOTGW_TEXT("cache full dropped=") : IOTGW_TEXT("cache write error dropped="), dropped_);
    return false;
  }
  say(IOTGW_TEXT("cache append seq="), seq_);
  fresh_seq_ = seq_++;
  has_fresh_ = true;
  pending_since_ = now;
  return true;
}

uint16_t Collector::on_ack(const Ack& ack, uint32_t now) {
  if (!ack_names(ack, cfg_)) return 0;
  // Keep the highest upto per boot: slot 0 is this boot, slot 1 the latest earlier boot.
  Watermark& m = marks_[ack.boot == boot_ ? 0 : 1];
  if (m.valid && m.boot == ack.boot) {
    if (ack.upto > m.upto) m.upto = ack.upto;  // a late, lower ack changes nothing
  } else {
    m.boot = ack.boot;
    m.upto = ack.upto;
    m.valid = true;
  }
  // Records are in identity order, so the cache can only shrink from its head; an older boot's
  // records there block this boot's until their own ack arrives, hence both watermarks each time.
  uint16_t total = 0, n;
  do {
    n = 0;
    for (uint8_t i = 0; i < 2; ++i)
      if (marks_[i].valid) n += log_.trim(marks_[i].boot, marks_[i].upto);
    total += n;
  } while (n);
  if (total) {
    say(IOTGW_TEXT("cache trim upto="), ack.upto);
    timeout_ms_ = ack_timeout_ms_;  // progress: back to the base timeout, re-armed
    arm(now);
    waiting_ = log_.count() != 0;
  }
  return total;
}

void Collector::poll(uint32_t now) {
  bool up = link_.connected();
  // Write-behind: a record the gateway has not acknowledged in time, or cannot get, goes to storage.
  if (log_.has_pending() && (!up || expired(now, pending_since_, persist_after_ms_))) log_.flush_pending();
  if (up && !was_connected_) {
    // Reconnected: acks may have been lost with the broker, so one window is resent at once.
    start_window();
    if (waiting_) arm(now);
  }
  was_connected_ = up;
  if (!up) {
    has_fresh_ = false;  // what was sampled while down goes out later, from the cache
    return;
  }
  if (waiting_ && log_.count() && expired(now, wait_since_, wait_ms_)) {
    Record oldest;
    if (log_.oldest(&oldest)) say(IOTGW_TEXT("cache resend from seq="), oldest.seq);
    start_window();
    timeout_ms_ = timeout_ms_ >= IOTGW_RESEND_CAP_MS / 2 ? IOTGW_RESEND_CAP_MS : timeout_ms_ * 2;
    arm(now);
  }
  bool resend = log_.resending();
  if (resend && !resend_left_) {
    log_.skip_resent();  // the window is out: only records never sent go on
    resend = false;
  }
  Record r;
  if (!log_.next_unsent(&r)) return;
  if (resend) --resend_left_;
  bool fresh = has_fresh_ && r.boot == boot_ && r.seq == fresh_seq_;
  if (fresh) has_fresh_ = false;
  // Only a reading sent right after it was sampled is live; everything else comes from the cache.
  link_.send_reading(cfg_, r, !fresh);
  if (!waiting_) {
    waiting_ = true;
    arm(now);
  }
}

}  // namespace iotgw
