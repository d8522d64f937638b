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

void Collector::begin(uint32_t boot, uint32_t now) {
  boot_ = boot;
  seq_ = 0;
  uint16_t n = log_.open();
  if (log_.torn_at_open()) say(IOTGW_TEXT("cache torn record dropped, records="), n);
  say(IOTGW_TEXT("cache open records="), n);
  waiting_ = false;
  was_connected_ = false;
  wait_since_ = now;
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
    wait_since_ = now;  // progress: the ack timeout restarts
    waiting_ = log_.count() != 0;
  }
  return total;
}

void Collector::poll(uint32_t now) {
  bool up = link_.connected();
  // Write-behind: a record the gateway has not acknowledged in time, or cannot get, goes to storage.
  if (log_.has_pending() && (!up || expired(now, pending_since_, persist_after_ms_))) log_.flush_pending();
  if (up && !was_connected_) log_.rewind();  // reconnected: resend everything unacknowledged
  was_connected_ = up;
  if (!up) {
    has_fresh_ = false;  // what was sampled while down goes out later, from the cache
    return;
  }
  if (waiting_ && log_.count() && expired(now, wait_since_, ack_timeout_ms_)) {
    Record oldest;
    if (log_.oldest(&oldest)) say(IOTGW_TEXT("cache resend from seq="), oldest.seq);
    log_.rewind();
    wait_since_ = now;
  }
  Record r;
  if (!log_.next_unsent(&r)) return;
  bool fresh = has_fresh_ && r.boot == boot_ && r.seq == fresh_seq_;
  if (fresh) has_fresh_ = false;
  // Only a reading sent right after it was sampled is live; everything else comes from the cache.
  link_.send_reading(cfg_, r, !fresh);
  if (!waiting_) {
    waiting_ = true;
    wait_since_ = now;
  }
}

}  // namespace iotgw
