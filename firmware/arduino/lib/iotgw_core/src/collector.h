// A collector node's reading pipeline, independent of the board: give each recorded sample its
// identity, keep it in the cache until an end-to-end ack covers it, send new and unacknowledged
// records, resend after the ack timeout, and apply acks (protocol sections 1 and 5).
#ifndef IOTGW_COLLECTOR_H
#define IOTGW_COLLECTOR_H

#include <stdint.h>

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
        persist_after_ms_(persist_after_ms) {}

  // Opens the cache (replaying what an earlier boot left unacknowledged) and starts this boot at seq 0.
  void begin(uint32_t boot, uint32_t now);
  // Records one sample. Returns false when the cache is full: the sample is not recorded, gets no
  // seq, and is counted in dropped() (section 1: never evict an unacknowledged record).
  bool record(uint32_t now, int64_t ts, uint8_t src, int32_t val_milli);
  // Applies an ack addressed to this node (others are ignored). Returns the number of records trimmed.
  uint16_t on_ack(const Ack& ack, uint32_t now);
  // Sends at most one record per call (keeps the loop responsive); rewinds after the ack timeout.
  void poll(uint32_t now);

  uint32_t boot() const { return boot_; }
  uint32_t next_seq() const { return seq_; }
  uint32_t dropped() const { return dropped_; }
  uint16_t cached() const { return log_.count(); }
  uint16_t capacity() const { return log_.capacity(); }
  // Storage failures of the cache's storage since start (the status's store_err).
  uint32_t store_errors() const { return log_.storage_errors(); }

 private:
  void say(const FlashText* what, uint32_t n);
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
  // Highest upto seen for this boot and for the most recent other boot (acks may come out of order).
  Watermark marks_[2] = {{0, 0, false}, {0, 0, false}};
};

}  // namespace iotgw

#endif
