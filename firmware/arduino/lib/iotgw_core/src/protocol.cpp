#include "protocol.h"

#include "crc16.h"

namespace iotgw {

namespace {

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

void key(Out& out, const FlashText* k) {  // ,"k":  (the opening brace writes the first key itself)
  out.put(',');
  out.put('"');
  out.str(k);
  out.put('"');
  out.put(':');
}

void quoted(Out& out, const char* s) {
  out.put('"');
  out.str(s);
  out.put('"');
}

void quoted(Out& out, const FlashText* s) {
  out.put('"');
  out.str(s);
  out.put('"');
}

void head(Out& out, const NodeConfig& cfg, uint32_t boot) {
  out.str(IOTGW_TEXT("{\"v\":1"));
  key(out, IOTGW_TEXT("dev"));
  quoted(out, cfg.dev);
  key(out, IOTGW_TEXT("node"));
  quoted(out, cfg.node);
  key(out, IOTGW_TEXT("boot"));
  out.u32(boot);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// A deliberately small JSON reader for the ack object: it walks key/value pairs of one flat object,
// accepts any key order and whitespace, and skips values it does not need. Hand-written because no
// JSON library fits in a few hundred bytes of AVR flash.
class Json {
 public:
  Json(const char* p, size_t n) : p_(p), end_(p + n) {}
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\r' || *p_ == '\n')) ++p_;
  }
  bool eat(char c) {
    ws();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool at_end() {
    ws();
    return p_ == end_;
  }
  // A string's raw text (escapes are kept, not decoded: names never contain them).
  bool string(const char** s, size_t* n) {
    if (!eat('"')) return false;
    const char* start = p_;
    while (p_ < end_ && *p_ != '"') {
      if (*p_ == '\\' && ++p_ == end_) return false;  // a trailing backslash: never step past the end
      ++p_;
    }
    if (p_ >= end_) return false;
    *s = start;
    *n = (size_t)(p_ - start);
    ++p_;
    return true;
  }
  // A plain non-negative decimal integer up to `max`; false for anything else (sign, fraction, exponent).
  // Shifts and adds instead of 64-bit multiply/divide, which would pull a kilobyte of libgcc into an AVR.
  bool uint(uint64_t max, uint64_t* v) {
    ws();
    uint64_t x = 0;
    uint8_t digits = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      if (++digits > 19) return false;
      x = (x << 3) + (x << 1) + (uint8_t)(*p_++ - '0');
    }
    if (!digits || x > max || (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E'))) return false;
    *v = x;
    return true;
  }
  bool null() {
    ws();
    if (end_ - p_ < 4 || p_[0] != 'n' || p_[1] != 'u' || p_[2] != 'l' || p_[3] != 'l') return false;
    p_ += 4;
    return true;
  }
  // Skips any scalar value (string, number, literal); nested values are not part of an ack.
  bool skip_value() {
    ws();
    if (p_ >= end_) return false;
    if (*p_ == '"') {
      const char* s;
      size_t n;
      return string(&s, &n);
    }
    const char* start = p_;
    while (p_ < end_ && *p_ != ',' && *p_ != '}' && *p_ != ' ' && *p_ != '{' && *p_ != '[') ++p_;
    return p_ != start;
  }

 private:
  const char* p_;
  const char* end_;
};

bool same_text(const char* a, size_t n, const char* want) {
  size_t i = 0;
  for (; i < n; ++i)
    if (want[i] != a[i]) return false;
  return want[i] == '\0';
}

bool key_is(const char* k, size_t n, const FlashText* want) {
  const char* w = reinterpret_cast<const char*>(want);
  for (size_t i = 0; i < n; ++i)
    if (IOTGW_TEXT_BYTE(w + i) != k[i]) return false;
  return IOTGW_TEXT_BYTE(w + n) == '\0';
}

}  // namespace

bool valid_name(const char* s, size_t max_len) {
  size_t n = 0;
  for (; s[n]; ++n)
    if (!name_char(s[n]) || n >= max_len) return false;
  return n > 0;
}

bool valid_unit(const char* s) {
  size_t n = 0;
  for (; s[n]; ++n)
    if (s[n] < 0x20 || s[n] > 0x7E || s[n] == '"' || s[n] == '\\' || n >= 16) return false;
  return n > 0;
}

bool valid_config(const NodeConfig& cfg) {
  if (!valid_name(cfg.dev, 32) || !valid_name(cfg.node, 16) || !valid_unit(cfg.unit)) return false;
  // The longest reading this node can emit: every number at its widest.
  Record widest = {0xFFFFFFFFUL, 0xFFFFFFFFUL, 253402300799999LL, kSrcNtp, (int32_t)0x80000000UL};
  Record no_clock = widest;
  no_clock.ts = kNoTime;
  no_clock.src = kSrcNone;
  return reading_length(cfg, widest, false) <= kMaxPayload && reading_length(cfg, no_clock, false) <= kMaxPayload;
}

void write_reading(Out& out, const NodeConfig& cfg, const Record& r, bool cached) {
  head(out, cfg, r.boot);
  key(out, IOTGW_TEXT("seq"));
  out.u32(r.seq);
  key(out, IOTGW_TEXT("ts"));
  bool no_clock = r.src == kSrcNone || r.ts < 0;
  if (no_clock)
    out.str(IOTGW_TEXT("null"));
  else
    out.i64(r.ts);
  key(out, IOTGW_TEXT("src"));
  uint8_t src = no_clock || r.src > kSrcNtp ? (uint8_t)kSrcNone : r.src;
  quoted(out, src == kSrcRtc ? IOTGW_TEXT("rtc") : src == kSrcNtp ? IOTGW_TEXT("ntp") : IOTGW_TEXT("none"));
  key(out, IOTGW_TEXT("val"));
  out.milli(r.val_milli);
  key(out, IOTGW_TEXT("unit"));
  quoted(out, cfg.unit);
  key(out, IOTGW_TEXT("cached"));
  out.str(cached ? IOTGW_TEXT("true}") : IOTGW_TEXT("false}"));
}

size_t reading_length(const NodeConfig& cfg, const Record& r, bool cached) {
  CountingOut c;
  write_reading(c, cfg, r, cached);
  return c.count;
}

const FlashText* role_name(Role role) {
  return role == kRoleActive ? IOTGW_TEXT("active") : role == kRoleStandby ? IOTGW_TEXT("standby") : IOTGW_TEXT("single");
}

const FlashText* clock_name(ClockState c) {
  return c == kClockRtc ? IOTGW_TEXT("rtc") : c == kClockLost ? IOTGW_TEXT("lost") : IOTGW_TEXT("none");
}

void write_status(Out& out, const NodeConfig& cfg, const Status& st) {
  head(out, cfg, st.boot);
  key(out, IOTGW_TEXT("state"));
  quoted(out, IOTGW_TEXT("online"));
  key(out, IOTGW_TEXT("role"));
  quoted(out, role_name(st.role));
  key(out, IOTGW_TEXT("cached"));
  out.u32(st.cached);
  key(out, IOTGW_TEXT("cap"));
  out.u32(st.cap);
  key(out, IOTGW_TEXT("dropped"));
  out.u32(st.dropped);
  key(out, IOTGW_TEXT("reset"));
  quoted(out, reset_name(st.reset));
  key(out, IOTGW_TEXT("store_err"));
  out.u32(st.store_err);
  key(out, IOTGW_TEXT("clock"));
  quoted(out, clock_name(st.clock));
  key(out, IOTGW_TEXT("period"));
  out.u32(st.period_ms);
  out.put('}');
}

size_t status_length(const NodeConfig& cfg, const Status& st) {
  CountingOut c;
  write_status(c, cfg, st);
  return c.count;
}

FrameResult parse_frame(const char* line, size_t len, Frame* frame) {
  if (len && line[len - 1] == '\r') --len;
  if (len == 0 || line[0] != '!') return kFrameConsole;
  // "!T " + payload + "*" + 4 hex digits; the CRC follows the last '*'.
  if (len < 8 || line[2] != ' ' || line[len - 5] != '*') return kFrameBad;
  uint16_t want = 0;
  for (size_t i = len - 4; i < len; ++i) {
    int d = hex_digit(line[i]);
    if (d < 0) return kFrameBad;
    want = (uint16_t)((want << 4) | d);
  }
  if (crc16(line, len - 5) != want) return kFrameBadChecksum;
  char type = line[1];
  if (type != 'R' && type != 'S' && type != 'A') return kFrameUnknownType;
  frame->type = type;
  frame->payload = line + 3;
  frame->payload_len = len - 8;
  return kFrameOk;
}

bool parse_ack(const char* json, size_t len, Ack* ack) {
  Json j(json, len);
  if (!j.eat('{')) return false;
  bool have_v = false, have_dev = false, have_node = false, have_boot = false, have_upto = false;
  ack->t = kNoTime;
  if (!j.eat('}')) {
    do {
      const char* k;
      size_t kn;
      if (!j.string(&k, &kn) || !j.eat(':')) return false;
      uint64_t num;
      const char* s;
      size_t sn;
      if (key_is(k, kn, IOTGW_TEXT("v"))) {
        if (!j.uint(0xFFFF, &num) || num != 1) return false;
        have_v = true;
      } else if (key_is(k, kn, IOTGW_TEXT("dev")) || key_is(k, kn, IOTGW_TEXT("node"))) {
        if (!j.string(&s, &sn) || sn == 0 || sn > 32) return false;
        if (k[0] == 'd') {
          ack->dev = s;
          ack->dev_len = (uint8_t)sn;
          have_dev = true;
        } else {
          ack->node = s;
          ack->node_len = (uint8_t)sn;
          have_node = true;
        }
      } else if (key_is(k, kn, IOTGW_TEXT("boot")) || key_is(k, kn, IOTGW_TEXT("upto"))) {
        if (!j.uint(0xFFFFFFFFUL, &num)) return false;
        if (k[0] == 'b') {
          ack->boot = (uint32_t)num;
          have_boot = true;
        } else {
          ack->upto = (uint32_t)num;
          have_upto = true;
        }
      } else if (key_is(k, kn, IOTGW_TEXT("t"))) {
        if (!j.null()) {
          if (!j.uint(253402300799999ULL, &num)) return false;
          ack->t = (int64_t)num;
        }
      } else if (!j.skip_value()) {
        return false;
      }
    } while (j.eat(','));
    if (!j.eat('}')) return false;
  }
  return j.at_end() && have_v && have_dev && have_node && have_boot && have_upto;
}

bool ack_names(const Ack& ack, const NodeConfig& cfg) {
  return same_text(ack.dev, ack.dev_len, cfg.dev) && same_text(ack.node, ack.node_len, cfg.node);
}

bool LineReader::push(char c) {
  if (complete_) {
    len_ = 0;
    complete_ = false;
  }
  if (c == '\n') {
    if (overlong_) {
      overlong_ = false;
      len_ = 0;
      return false;
    }
    buf_[len_] = '\0';
    complete_ = true;
    return true;
  }
  if (overlong_) return false;
  if (len_ + 1 >= cap_) {
    overlong_ = true;  // a line we cannot hold is not a line we can check: drop it whole
    return false;
  }
  buf_[len_++] = c;
  return false;
}

}  // namespace iotgw
