// A collector node's reading pipeline, independent of the board: give each recorded sample its
// identity, keep it in the cache until an end-to-end ack covers it, send new and unacknowledged
// records, resend after the ack timeout, and apply acks (protocol sections 1 and 5).
// Resends follow protocol section 10: a jittered, exponentially backed-off timer; each expiry resends
// only a window of the oldest unacknowledged records.
#ifndef IOTGW_COLLECTOR_H
#define IOTGW_COLLECTOR_H

#include <stdint.h>

// Records resent per expiry or reconnect (W of protocol section 10): small, so a site coming back
// after an outage does not flood a slow link.
#ifndef IOTGW_RESEND_WINDOW
#define IOTGW_RESEND_WINDOW 8
#endif
// The back-off cap of the resend timeout.
#ifndef IOTGW_RESEND_CAP_MS
#define IOTGW_RESEND_CAP_MS 60000UL
#endif
#if IOTGW_RESEND_CAP_MS > 131070UL
#error "IOTGW_RESEND_CAP_MS: at most 131070 ms (the jitter keeps T/2 in 16 bits)"
#endif
#if defined(IOTGW_ACK_TIMEOUT_MS) && IOTGW_ACK_TIMEOUT_MS > IOTGW_RESEND_CAP_MS
#error "IOTGW_ACK_TIMEOUT_MS: the base resend timeout cannot exceed IOTGW_RESEND_CAP_MS"
#endif
#if IOTGW_RESEND_WINDOW < 1 || IOTGW_RESEND_WINDOW > 255
#error "IOTGW_RESEND_WINDOW: 1 to 255 records"
#endif

#include "protocol.h"
#include "record_log.h"

namespace iotgw {

// Where readings go: the serial line (SerialLink below) or MQTT (board glue).
class ReadingLink {
 public:
  virtual bool connected() { return true; }
  virtual bool send_reading(const NodeConfig& cfg, const Record& r, bool cached) = 0;

 protected:
  ~ReadingLink() {}
};

// Frames readings and status lines on a character stream (the serial console shares it).
class SerialLink : public ReadingLink {
 public:
  explicit SerialLink(Out& out) : out_(out) {}
  bool send_reading(const NodeConfig& cfg, const Record& r, bool cached) override;
  void send_status(const NodeConfig& cfg, const Status& st);

 private:
  Out& out_;
};

class Collector {
 public:
  // console may be null; it gets plain text lines (never starting with '!').
  // persist_after_ms: 0 writes every record to storage before it is sent (write-through: no reading is
  // lost at a power cut; the sketches use it for the SD cache). Above 0 the newest record is written only if no ack covered
  // it after that long, or the link is down, or the next sample comes (write-behind): with prompt acks
  // the EEPROM is hardly written at all, but a power cut within that time loses the readings the
  // gateway did not get (docs/firmware.md, "EEPROM wear").
  Collector(const NodeConfig& cfg, RecordLog& log, ReadingLink& link, Out* console, uint32_t ack_timeout_ms,
            uint32_t persist_after_ms = 0)
      : cfg_(cfg),
        log_(log),
        link_(link),
        console_(console),
        ack_timeout_ms_(ack_timeout_ms),
        persist_after_ms_(persist_after_ms),
        timeout_ms_(ack_timeout_ms) {}

  // Opens the cache (replaying what an earlier boot left unacknowledged) and starts this boot at seq 0.
  // The boot number (random on a blank EEPROM) also seeds the resend jitter.
  void begin(uint32_t boot, uint32_t now);
  // Re-seeds the resend jitter: a 16-bit xorshift (7, 9, 8; cheap on an 8-bit AVR) started from the
  // high half of seed * 2654435761, so consecutive boot numbers give unrelated waits; a zero state is
  // taken as 1. Tests use it to replay shared vectors.
  void seed_jitter(uint32_t seed) {
    rng_ = (uint16_t)((seed * 2654435761UL) >> 16);
    if (!rng_) rng_ = 1;
  }
  // Records one sample. Returns false when the cache is full: the sample is not recorded, gets no
  // seq, and is counted in dropped() (section 1: never evict an unacknowledged record).
  bool record(uint32_t now, int64_t ts, uint8_t src, int32_t val_milli);
  // Applies an ack addressed to this node (others are ignored). Returns the number of records trimmed.
  uint16_t on_ack(const Ack& ack, uint32_t now);
  // Sends at most one record per call (keeps the loop responsive); rewinds after the ack timeout.
  void poll(uint32_t now);
  // The resend timer: the current back-off T and the jittered wait drawn for this round (in [T/2, T]).
  uint32_t resend_timeout() const { return timeout_ms_; }
  uint32_t resend_wait() const { return wait_ms_; }

  uint32_t boot() const { return boot_; }
  uint32_t next_seq() const { return seq_; }
  uint32_t dropped() const { return dropped_; }
  uint16_t cached() const { return log_.count(); }
  uint16_t capacity() const { return log_.capacity(); }
  // Storage failures of the cache's storage since start (the status's store_err).
  uint32_t store_errors() const { return log_.storage_errors(); }

 private:
  void say(const FlashText* what, uint32_t n);
  void arm(uint32_t now);
  void start_window();
  struct Watermark {
    uint32_t boot;
    uint32_t upto;
    bool valid;
  };
  const NodeConfig& cfg_;
  RecordLog& log_;
  ReadingLink& link_;
  Out* console_;
  uint32_t ack_timeout_ms_;
  uint32_t persist_after_ms_;
  uint32_t pending_since_ = 0;
  uint32_t boot_ = 0;
  uint32_t seq_ = 0;
  uint32_t dropped_ = 0;
  uint32_t fresh_seq_ = 0;  // newest record of this boot not yet sent: it goes out with cached=false
  bool has_fresh_ = false;
  bool was_connected_ = false;
  uint32_t wait_since_ = 0;  // start of the current wait for an ack
  bool waiting_ = false;
  uint32_t timeout_ms_;      // T: the base after progress, doubled per expiry up to the cap
  uint32_t wait_ms_ = 0;     // this round's jittered wait
  uint16_t rng_ = 1;         // xorshift16 state
  uint8_t resend_left_ = 0;  // records of the current resend window still to send
  // Highest upto seen for this boot and for the most recent other boot (acks may come out of order).
  Watermark marks_[2] = {{0, 0, false}, {0, 0, false}};
};

}  // namespace iotgw

#endif
