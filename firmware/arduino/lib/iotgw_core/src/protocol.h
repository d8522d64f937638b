// Protocol v1 as a collector speaks it (shared/protocol.md): the canonical reading and status JSON,
// serial frames "!T <json>*CRC", and the end-to-end ack the gateway sends back.
#ifndef IOTGW_PROTOCOL_H
#define IOTGW_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "iotgw_out.h"
#include "reset_reason.h"

namespace iotgw {

const size_t kMaxPayload = 192;   // section 3
const size_t kMaxLine = 256;      // section 4
const int64_t kNoTime = -1;       // ts of a reading without a clock (printed as null)

enum ClockSource : uint8_t { kSrcNone = 0, kSrcRtc = 1, kSrcNtp = 2 };  // numbering of section 8

// One reading's identity and content; exactly the body of a cache record (section 8).
struct Record {
  uint32_t boot;
  uint32_t seq;
  int64_t ts;       // ms since 1970, kNoTime when src is kSrcNone
  uint8_t src;      // ClockSource
  int32_t val_milli;
};

// What a node is called; the same for every reading, so it is configuration, not cached data.
struct NodeConfig {
  const char* dev;
  const char* node;
  const char* unit;
};

// Section 2/3 name rules: 1..max characters of [A-Za-z0-9_-].
bool valid_name(const char* s, size_t max_len);
// Section 3 unit rule: 1..16 printable ASCII characters, no '"' or '\'.
bool valid_unit(const char* s);
// Names valid and the longest possible reading of this node within 192 bytes.
bool valid_config(const NodeConfig& cfg);

// The same check at compile time, for configuration given as literals (the sketches use it in a
// static_assert, so a bad name is a build error instead of a board that refuses to start).
// kWidestFixed: the widest reading with empty names (boot, seq 10 digits, ts 15, val 12, "cached":false);
// the host tests prove it equals reading_length() of that reading.
const size_t kWidestFixed = 138;
constexpr size_t text_len(const char* s) { return *s ? 1 + text_len(s + 1) : 0; }
constexpr bool name_chars_ok(const char* s) {
  return !*s || (((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
                  *s == '-') &&
                 name_chars_ok(s + 1));
}
constexpr bool unit_chars_ok(const char* s) {
  return !*s || (*s >= 0x20 && *s <= 0x7E && *s != '"' && *s != '\\' && unit_chars_ok(s + 1));
}
constexpr bool config_ok(const char* dev, const char* node, const char* unit) {
  return text_len(dev) >= 1 && text_len(dev) <= 32 && name_chars_ok(dev) && text_len(node) >= 1 &&
         text_len(node) <= 16 && name_chars_ok(node) && text_len(unit) >= 1 && text_len(unit) <= 16 &&
         unit_chars_ok(unit) && kWidestFixed + text_len(dev) + text_len(node) + text_len(unit) <= kMaxPayload;
}

// The longest ack line (section 5) for a node's names: "!A " + payload + "*XXXX" + "\r" (CRLF lines), and the
// NUL a LineReader keeps. kAckFixed: the widest payload with empty names (boot and upto 10 digits, t 15
// digits); the host tests prove it against the gateway's ack format. The sketches size their ack buffer
// with it, so a long device or node name can never make this node's acks too long to hold.
const size_t kAckFixed = 82;
constexpr size_t ack_line_capacity(const char* dev, const char* node) {
  return 3 + kAckFixed + text_len(dev) + text_len(node) + 5 + 1 + 1;
}

void write_reading(Out& out, const NodeConfig& cfg, const Record& r, bool cached);
size_t reading_length(const NodeConfig& cfg, const Record& r, bool cached);

enum Role : uint8_t { kRoleSingle = 0, kRoleActive = 1, kRoleStandby = 2 };
const FlashText* role_name(Role role);
// The node's status (section 6); write_status emits the canonical form, at most kMaxStatus bytes.
enum ClockState : uint8_t { kClockNone, kClockRtc, kClockLost };
const FlashText* clock_name(ClockState c);
struct Status {
  uint32_t boot;
  Role role;
  uint16_t cached;
  uint16_t cap;
  uint32_t dropped;
  ResetReason reset;
  uint32_t store_err;
  ClockState clock;
  uint32_t period_ms;
};
const size_t kMaxStatus = 256;
void write_status(Out& out, const NodeConfig& cfg, const Status& st);
size_t status_length(const NodeConfig& cfg, const Status& st);

// Serial framing (section 4).
enum FrameResult : uint8_t { kFrameOk, kFrameConsole, kFrameBad, kFrameBadChecksum, kFrameUnknownType };
struct Frame {
  char type;
  const char* payload;
  size_t payload_len;
};
// Parses one line (without its '\n'; a trailing '\r' is ignored). The payload points into `line`.
FrameResult parse_frame(const char* line, size_t len, Frame* frame);

// End-to-end ack (section 5). dev and node point into the parsed text.
struct Ack {
  const char* dev;
  uint8_t dev_len;
  const char* node;
  uint8_t node_len;
  uint32_t boot;
  uint32_t upto;
  int64_t t;  // gateway clock in ms, kNoTime when absent or null
};
bool parse_ack(const char* json, size_t len, Ack* ack);
bool ack_names(const Ack& ack, const NodeConfig& cfg);  // dev and node are this node's

// Collects bytes into lines; a line longer than the buffer is dropped whole (up to its newline).
class LineReader {
 public:
  LineReader(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  // Returns true when a complete line is in line()/length(); the next push starts a new one.
  bool push(char c);
  const char* line() const { return buf_; }
  size_t length() const { return len_; }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
  bool complete_ = false;
  bool overlong_ = false;
};

}  // namespace iotgw

#endif
