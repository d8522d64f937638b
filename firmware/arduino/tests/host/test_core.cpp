// Host tests of the portable firmware core (doctest). Protocol expectations come from the shared
// vectors in shared/vectors/, so the firmware and the gateway are checked against the same data.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "fakes.h"
#include "wear_sim.h"
#include "iotgw.h"
#include "json_mini.h"

using namespace iotgw;

#ifndef VECTORS_DIR
#define VECTORS_DIR "../../../../shared/vectors"
#endif

static jm::Value vectors(const char* name) {
  const char* dir = std::getenv("IOTGW_VECTORS");
  return jm::load(std::string(dir ? dir : VECTORS_DIR) + "/" + name);
}

static uint8_t src_code(const std::string& s) { return s == "rtc" ? kSrcRtc : s == "ntp" ? kSrcNtp : kSrcNone; }

static std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

// ---------------------------------------------------------------- CRC and framing

TEST_CASE("CRC-16/CCITT-FALSE matches the vectors") {
  jm::Value v = vectors("serial_lines.json");
  for (auto& c : v["crc16_ccitt_false"].items) {
    char want[8];
    std::snprintf(want, sizeof want, "%04X", crc16(c["text"].str().data(), c["text"].str().size()));
    CHECK(c["crc"].str() == want);
  }
}

TEST_CASE("every serial line vector parses to its type, payload or rejection reason") {
  jm::Value v = vectors("serial_lines.json");
  for (auto& l : v["lines"].items) {
    CAPTURE(l["name"].str());
    const std::string& line = l["line"].str();
    Frame f;
    FrameResult res = parse_frame(line.data(), line.size(), &f);
    if (l["valid"].b) {
      REQUIRE(res == kFrameOk);
      CHECK(std::string(1, f.type) == l["type"].str());
      CHECK(std::string(f.payload, f.payload_len) == l["payload"].str());
    } else if (l.has("console")) {
      CHECK(res == kFrameConsole);
    } else {
      const std::string& reason = l["reason"].str();
      FrameResult want = reason == "bad_frame" ? kFrameBad : reason == "bad_checksum" ? kFrameBadChecksum : kFrameUnknownType;
      CHECK(res == want);
    }
  }
  CHECK(v["max_line_bytes"].i64() == (long long)kMaxLine);
}

TEST_CASE("the serial link frames the vector reading and status byte for byte") {
  jm::Value v = vectors("serial_lines.json");
  StringOut out;
  SerialLink link(out);
  NodeConfig ft = {"ft-1", "a", "V"};
  Record r = {1, 0, 946684800000LL, kSrcRtc, 1500};
  link.send_reading(ft, r, false);
  CHECK(out.text == v["lines"][0]["line"].str() + "\n");
}

static ResetReason reset_code(const std::string& s) {
  for (uint8_t r = kResetUnknown; r <= kResetSoft; ++r)
    if (s == reinterpret_cast<const char*>(reset_name((ResetReason)r))) return (ResetReason)r;
  FAIL("unknown reset " << s);
  return kResetUnknown;
}

TEST_CASE("status vectors: payload and serial line byte for byte, at most 256 bytes") {
  jm::Value v = vectors("status.json");
  CHECK(v["max_payload_bytes"].i64() == (long long)kMaxStatus);
  for (auto& c : v["statuses"].items) {
    CAPTURE(c["name"].str());
    const jm::Value& f = c["fields"];
    std::string dev = c["dev"].str(), node = c["node"].str(), role = f["role"].str(), clock = f["clock"].str();
    NodeConfig cfg = {dev.c_str(), node.c_str(), "V"};
    Status st = {(uint32_t)f["boot"].u64(),
                 role == "active" ? kRoleActive : role == "standby" ? kRoleStandby : kRoleSingle,
                 (uint16_t)f["cached"].u64(),
                 (uint16_t)f["cap"].u64(),
                 (uint32_t)f["dropped"].u64(),
                 reset_code(f["reset"].str()),
                 (uint32_t)f["store_err"].u64(),
                 clock == "rtc" ? kClockRtc : clock == "lost" ? kClockLost : kClockNone,
                 (uint32_t)f["period"].u64()};
    StringOut p;
    write_status(p, cfg, st);
    CHECK(p.text == c["payload"].str());
    CHECK(status_length(cfg, st) == p.text.size());
    CHECK(p.text.size() <= kMaxStatus);
    StringOut line;
    SerialLink link(line);
    link.send_status(cfg, st);
    CHECK(line.text == c["serial_line"].str() + "\n");
  }
}

TEST_CASE("line reader: CRLF, console text and overlong lines") {
  char buf[16];
  LineReader lr(buf, sizeof buf);
  std::string input = "hello\r\n0123456789abcdefXYZ\nok\n";
  std::vector<std::string> lines;
  for (char c : input)
    if (lr.push(c)) lines.push_back(std::string(lr.line(), lr.length()));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "hello\r");  // parse_frame ignores the '\r'
  CHECK(lines[1] == "ok");       // the overlong line was dropped whole, not cut into a bogus one
}

// ---------------------------------------------------------------- readings

TEST_CASE("the encoder reproduces every canonical valid reading byte for byte") {
  jm::Value v = vectors("readings_valid.json");
  int canonical = 0;
  for (auto& vec : v.items) {
    if (!vec["canonical"].b) continue;
    ++canonical;
    CAPTURE(vec["name"].str());
    const jm::Value& e = vec["expect"];
    NodeConfig cfg = {e["device"].str().c_str(), e["node"].str().c_str(), e["unit"].str().c_str()};
    Record r = {(uint32_t)e["boot"].u64(), (uint32_t)e["seq"].u64(), e["ts"].is_null() ? kNoTime : e["ts"].i64(),
                src_code(e["src"].str()), (int32_t)e["val_milli"].i64()};
    StringOut out;
    write_reading(out, cfg, r, e["cached"].b);
    CHECK(out.text == vec["payload"].str());
    CHECK(reading_length(cfg, r, e["cached"].b) == out.text.size());
    // A node is configured only if every reading it can ever emit fits 192 bytes; the vector's
    // 32+16+16-character names fit with its numbers but not with boot, seq and ts at their widest.
    CHECK(valid_config(cfg) == (vec["name"].str() != "long names"));
    // Through the cache record and back: what is replayed is what was sampled.
    uint8_t rec[kRecordSize];
    encode_record(r, rec);
    Record back;
    REQUIRE(decode_record(rec, &back));
    StringOut again;
    write_reading(again, cfg, back, e["cached"].b);
    CHECK(again.text == vec["payload"].str());
  }
  CHECK(canonical >= 14);
}

TEST_CASE("invalid reading vectors: the firmware cannot emit them") {
  jm::Value v = vectors("readings_invalid.json");
  int checked = 0;
  for (auto& vec : v.items) {
    CAPTURE(vec["name"].str());
    const std::string reason = vec["reason"].str();
    const std::string field = vec["field"].is_null() ? "" : vec["field"].str();
    if (reason == "out_of_range" && (field == "dev" || field == "node" || field == "unit")) {
      // A configuration holding the offending name is refused at start.
      jm::Value p = jm::Parser(vec["payload"].str()).parse();
      std::string dev = p["dev"].str(), node = p["node"].str(), unit = p["unit"].str();
      NodeConfig cfg = {dev.c_str(), node.c_str(), unit.c_str()};
      CHECK_FALSE(valid_config(cfg));
      ++checked;
    } else if (reason == "too_large") {
      // valid_config bounds every reading a node can emit, so nothing over 192 bytes is ever sent.
      std::string dev(32, 'd'), node(16, 'n'), unit(16, 'u');
      NodeConfig longest = {dev.c_str(), node.c_str(), unit.c_str()};
      CHECK_FALSE(valid_config(longest));  // with boot, seq and ts at their widest it would exceed 192
      NodeConfig ok = {dev.c_str(), "n", "C"};
      REQUIRE(valid_config(ok));
      Record widest = {0xFFFFFFFFUL, 0xFFFFFFFFUL, 253402300799999LL, kSrcNtp, INT32_MIN};
      CHECK(reading_length(ok, widest, true) <= kMaxPayload);
      CHECK(vec["payload"].str().size() > kMaxPayload);
      ++checked;
    } else if (reason == "bad_clock") {
      // src and ts always agree: no clock prints null/"none", a clock always prints a time.
      NodeConfig cfg = {"greenhouse-1", "a", "C"};
      StringOut a, b;
      Record none_with_ts = {7, 42, 1700000000123LL, kSrcNone, 21500};
      write_reading(a, cfg, none_with_ts, false);
      CHECK(a.text.find("\"ts\":null,\"src\":\"none\"") != std::string::npos);
      Record rtc_without_ts = {7, 42, kNoTime, kSrcRtc, 21500};
      write_reading(b, cfg, rtc_without_ts, false);
      CHECK(b.text.find("\"ts\":null,\"src\":\"none\"") != std::string::npos);
      ++checked;
    }
  }
  CHECK(checked >= 11);
  // Names: the rules of section 2.
  CHECK(valid_name("greenhouse-1", 32));
  CHECK_FALSE(valid_name("a/b", 32));
  CHECK_FALSE(valid_name("green house", 32));
  CHECK_FALSE(valid_name("", 16));
  CHECK(valid_unit("m/s^2"));
  CHECK_FALSE(valid_unit("a\\b"));
}

TEST_CASE("the compile-time configuration check agrees with the run-time one") {
  Record widest = {0xFFFFFFFFUL, 0xFFFFFFFFUL, 253402300799999LL, kSrcNtp, INT32_MIN};
  NodeConfig empty = {"", "", ""};
  CHECK(reading_length(empty, widest, false) == kWidestFixed);
  std::string d32(32, 'd'), d33(33, 'd'), n16(16, 'n'), n17(17, 'n'), u16(16, 'u');
  const char* devs[] = {"greenhouse-1", "a/b", "", d32.c_str(), d33.c_str(), "green house", "x_Y-9"};
  const char* nodes[] = {"a", "", n16.c_str(), n17.c_str(), "b!"};
  const char* units[] = {"C", "", "a\"b", "a\\b", u16.c_str(), "m/s^2", "\t"};
  int accepted = 0;
  for (const char* d : devs)
    for (const char* n : nodes)
      for (const char* u : units) {
        NodeConfig cfg = {d, n, u};
        CAPTURE(d);
        CAPTURE(n);
        CAPTURE(u);
        CHECK(config_ok(d, n, u) == valid_config(cfg));
        accepted += valid_config(cfg);
      }
  CHECK(accepted > 5);
  static_assert(config_ok("ft-1", "a", "V"), "default configuration");
  static_assert(!config_ok("a/b", "a", "V"), "slash in a device name");
}

TEST_CASE("val is printed from thousandths") {
  struct {
    int32_t milli;
    const char* text;
  } cases[] = {{21500, "21.5"}, {-250, "-0.25"}, {3000, "3"}, {0, "0"}, {1, "0.001"}, {-1, "-0.001"},
               {1234, "1.234"}, {100, "0.1"}, {INT32_MIN, "-2147483.648"}, {INT32_MAX, "2147483.647"}};
  for (auto& c : cases) {
    StringOut o;
    o.milli(c.milli);
    CHECK(o.text == c.text);
  }
  StringOut o;
  o.i64(253402300799999LL);
  o.put(' ');
  o.i64(-9223372036854775807LL - 1);
  o.put(' ');
  o.i64(0);
  o.put(' ');
  o.u32(4294967295UL);
  CHECK(o.text == "253402300799999 -9223372036854775808 0 4294967295");
}

// ---------------------------------------------------------------- acks

TEST_CASE("every ack vector parses, from the payload and from its serial line") {
  jm::Value v = vectors("acks.json");
  for (auto& a : v["acks"].items) {
    CAPTURE(a["name"].str());
    const jm::Value& want = a["ack"];
    const std::string& line = a["serial_line"].str();
    Frame f;
    REQUIRE(parse_frame(line.data(), line.size(), &f) == kFrameOk);
    CHECK(f.type == 'A');
    CHECK(std::string(f.payload, f.payload_len) == a["payload"].str());
    Ack ack;
    REQUIRE(parse_ack(f.payload, f.payload_len, &ack));
    CHECK(std::string(ack.dev, ack.dev_len) == want["device"].str());
    CHECK(std::string(ack.node, ack.node_len) == want["node"].str());
    CHECK(ack.boot == want["boot"].u64());
    CHECK(ack.upto == want["upto"].u64());
    CHECK(ack.t == (want["t"].is_null() ? kNoTime : want["t"].i64()));
    std::string dev = want["device"].str(), node = want["node"].str();
    NodeConfig mine = {dev.c_str(), node.c_str(), "C"}, other = {dev.c_str(), "zz", "C"};
    CHECK(ack_names(ack, mine));
    CHECK_FALSE(ack_names(ack, other));
  }
}

TEST_CASE("the ack buffer holds the longest legal ack for the names, one byte less does not") {
  const std::string dev32(32, 'D'), node16(16, 'n');
  for (auto names : {std::make_pair(std::string("ft-1"), std::string("a")), std::make_pair(dev32, node16)}) {
    // The gateway's format (gateway/protocol.py Ack.payload) at its widest values.
    std::string payload = "{\"v\":1,\"dev\":\"" + names.first + "\",\"node\":\"" + names.second +
                          "\",\"boot\":4294967295,\"upto\":4294967295,\"t\":253402300799999}";
    CHECK(payload.size() == kAckFixed + names.first.size() + names.second.size());
    std::string body = "!A " + payload;
    char crc[6];
    std::snprintf(crc, sizeof crc, "%04X", crc16(body.data(), body.size()));
    std::string line = body + "*" + crc + "\r\n";
    NodeConfig cfg = {names.first.c_str(), names.second.c_str(), "V"};
    const size_t cap = 3 + kAckFixed + names.first.size() + names.second.size() + 5 + 2;
    for (size_t size : {cap, cap - 1}) {
      std::vector<char> buf(size);
      LineReader lines(buf.data(), size);
      bool got = false;
      for (char c : line) got = lines.push(c) || got;
      Frame f;
      Ack a;
      bool ok = got && parse_frame(lines.line(), lines.length(), &f) == kFrameOk && f.type == 'A' &&
                parse_ack(f.payload, f.payload_len, &a) && ack_names(a, cfg) && a.upto == 4294967295UL;
      CHECK(ok == (size == cap));
    }
  }
  static_assert(ack_line_capacity("ft-1", "a") == 3 + kAckFixed + 4 + 1 + 7, "capacity formula");
  static_assert(ack_line_capacity("DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD", "nnnnnnnnnnnnnnnn") <= kMaxLine, "fits a line");
}

TEST_CASE("a payload cut right after a backslash inside a string is refused without reading past it") {
  // Exact-size heap copies, so a read past the end would be caught under make host-test SAN=1.
  for (const char* text : {"{\"v\":1,\"dev\":\"ab\\", "{\"v\":1,\"dev\":\"\\", "{\"dev\\"}) {
    std::string t(text);
    std::vector<char> exact(t.begin(), t.end());
    Ack a;
    CHECK_FALSE(parse_ack(exact.data(), exact.size(), &a));
  }
}

TEST_CASE("acks in any key order with spaces are accepted; malformed ones are refused") {
  Ack a;
  const char* spaced = "{ \"t\" : null , \"upto\": 5, \"boot\":2, \"node\":\"a\", \"extra\":\"x\", \"dev\":\"d\", \"v\":1 }";
  REQUIRE(parse_ack(spaced, std::strlen(spaced), &a));
  CHECK(a.upto == 5);
  CHECK(a.boot == 2);
  CHECK(a.t == kNoTime);
  const char* bad[] = {
      "{\"v\":1,\"dev\":\"d\",\"node\":\"a\",\"boot\":2}",                           // no upto
      "{\"v\":2,\"dev\":\"d\",\"node\":\"a\",\"boot\":2,\"upto\":1}",                // version
      "{\"v\":1,\"dev\":\"d\",\"node\":\"a\",\"boot\":-2,\"upto\":1}",               // negative
      "{\"v\":1,\"dev\":\"d\",\"node\":\"a\",\"boot\":2,\"upto\":1.5}",              // fraction
      "{\"v\":1,\"dev\":\"d\",\"node\":\"a\",\"boot\":4294967296,\"upto\":1}",       // too large
      "{\"v\":1,\"dev\":\"d\",\"node\":\"a\",\"boot\":2,\"upto\":1,\"t\":\"x\"}",    // t not a number
      "{\"v\":1,\"dev\":\"d\",\"node\":\"a\",\"boot\":2,\"upto\":1",                 // truncated
      "[1,2]", "", "{\"v\":1,\"dev\":\"d\",\"node\":\"a\",\"boot\":2,\"upto\":1} x",
  };
  for (const char* b : bad) {
    CAPTURE(b);
    CHECK_FALSE(parse_ack(b, std::strlen(b), &a));
  }
}

// Gateway-side contiguous watermark (section 5), as the vectors define it; the collector tests below
// use it as the gateway model.
struct GatewayModel {
  std::set<uint32_t> held;
  long long upto = -1;
  long long arrive(uint32_t seq) {
    held.insert(seq);
    while (held.count((uint32_t)(upto + 1))) ++upto;
    return upto;
  }
};

TEST_CASE("ack watermark vectors: gateway model and collector-side trimming") {
  jm::Value v = vectors("ack_watermark.json");
  for (auto& c : v.items) {
    CAPTURE(c["name"].str());
    GatewayModel g;
    uint32_t max_seq = 0;
    for (size_t i = 0; i < c["arrivals"].size(); ++i) {
      long long got = g.arrive((uint32_t)c["arrivals"][i].u64());
      const jm::Value& want = c["upto_after_each"][i];
      CHECK(got == (want.is_null() ? -1 : want.i64()));
      max_seq = std::max(max_seq, (uint32_t)c["arrivals"][i].u64());
    }
    // The collector holds seq 0..max and gets the acks in the order the gateway sent them, then
    // again in reverse (late duplicates): it keeps exactly the records above the highest upto.
    for (int pass = 0; pass < 2; ++pass) {
      RamStorage mem(1024);
      RecordLog log(mem, 0, 1024);
      FakeLink link;
      NodeConfig cfg = {"d", "a", "C"};
      Collector col(cfg, log, link, nullptr, 5000);
      col.begin(9, 0);
      for (uint32_t s = 0; s <= max_seq; ++s) REQUIRE(col.record(0, kNoTime, kSrcNone, (int32_t)s));
      std::vector<long long> acks;
      for (auto& u : c["upto_after_each"].items)
        if (!u.is_null()) acks.push_back(u.i64());
      if (pass) std::reverse(acks.begin(), acks.end());
      long long highest = -1;
      for (long long u : acks) {
        Ack a = {"d", 1, "a", 1, 9, (uint32_t)u, kNoTime};
        col.on_ack(a, 0);
        highest = std::max(highest, u);
        CHECK(col.cached() == max_seq - highest);
        Record oldest;
        if (col.cached()) {
          REQUIRE(log.oldest(&oldest));
          CHECK(oldest.seq == highest + 1);
        }
      }
      if (acks.empty()) CHECK(col.cached() == max_seq + 1);
    }
  }
}

// ---------------------------------------------------------------- DS1307

TEST_CASE("DS1307 vectors decode, and encode where the collector writes them") {
  jm::Value v = vectors("ds1307.json");
  for (auto& c : v.items) {
    CAPTURE(c["name"].str());
    uint8_t regs[7];
    for (int i = 0; i < 7; ++i) regs[i] = (uint8_t)c["registers"][i].u64();
    Ds1307Time t;
    REQUIRE(ds1307_decode(regs, &t));
    CHECK(t.unix == c["unix"].u64());
    CHECK(t.halted == c["halted"].b);
    CHECK(t.twelve_hour == c["twelve_hour"].b);
    if (!c["writes_as"].is_null()) {
      uint8_t out[7];
      REQUIRE(ds1307_encode(t.unix, out));
      for (int i = 0; i < 7; ++i) CHECK(out[i] == c["writes_as"][i].u64());
    }
  }
}

TEST_CASE("DS1307 round trips over the whole 2000-2099 range, year offset and clock halt") {
  for (uint32_t unix = kUnix2000; unix <= 4102444799UL; unix += 86400UL * 7 + 3671) {
    uint8_t regs[7];
    REQUIRE(ds1307_encode(unix, regs));
    Ds1307Time t;
    REQUIRE(ds1307_decode(regs, &t));
    CHECK(t.unix == unix);
    CHECK_FALSE(t.halted);
  }
  uint8_t regs[7];
  REQUIRE(ds1307_encode(kUnix2000, regs));
  CHECK(regs[6] == 0x00);  // year register 00 is 2000
  REQUIRE(ds1307_encode(4102444799UL, regs));
  CHECK(regs[6] == 0x99);
  CHECK_FALSE(ds1307_encode(kUnix2000 - 1, regs));  // 1999 does not fit the chip
  CHECK_FALSE(ds1307_encode(4102444800UL, regs));   // neither does 2100
  // Clock halt: the time decodes but is not valid; a running 2000 date is not valid either.
  uint8_t halted[7] = {0x80 | 0x30, 0, 0x12, 3, 0x14, 0x11, 0x23};
  Ds1307Time t;
  REQUIRE(ds1307_decode(halted, &t));
  CHECK(t.halted);
  CHECK_FALSE(ds1307_time_valid(t));
  uint8_t reset[7] = {0, 0, 0, 7, 1, 1, 0};
  REQUIRE(ds1307_decode(reset, &t));
  CHECK_FALSE(ds1307_time_valid(t));
  // Garbage (an absent chip reads 0xFF) is refused.
  uint8_t garbage[7] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  CHECK_FALSE(ds1307_decode(garbage, &t));
  uint8_t feb30[7] = {0, 0, 0, 1, 0x30, 0x02, 0x24};
  CHECK_FALSE(ds1307_decode(feb30, &t));
}

TEST_CASE("RTC clock: an unset chip still stamps, is set from an ack, and a valid one is never moved") {
  FakeRtc chip;  // fresh: CH set, 2000-01-01
  RtcClock clock(chip);
  int64_t ts;
  uint8_t src;
  clock.now(&ts, &src);
  CHECK(ts == 946684800000LL);  // sent as is; the gateway classifies it `unset`
  CHECK(src == kSrcRtc);
  CHECK_FALSE(clock.valid());
  CHECK(clock.set_if_lost(1700000000500LL));
  CHECK((chip.regs[0] & 0x80) == 0);  // oscillator started
  clock.now(&ts, &src);
  CHECK(ts == 1700000000000LL);
  CHECK(clock.valid());
  CHECK_FALSE(clock.set_if_lost(1800000000000LL));  // running and valid: untouched
  CHECK(chip.writes == 1);
  CHECK_FALSE(clock.set_if_lost(kNoTime));
  // Running but reset to 2000 (a chip whose battery died while the oscillator restarted): also lost.
  uint8_t reset2000[7] = {0x05, 0, 0, 7, 1, 1, 0};
  std::memcpy(chip.regs, reset2000, 7);
  clock.now(&ts, &src);
  CHECK(ts == 946684805000LL);
  CHECK_FALSE(clock.valid());
  CHECK(clock.set_if_lost(1700000000500LL));
  CHECK(chip.writes == 2);
  chip.present = false;
  clock.now(&ts, &src);
  CHECK(ts == kNoTime);
  CHECK(src == kSrcNone);
}

// ---------------------------------------------------------------- timing and the pair

TEST_CASE("elapsed time survives the 2^32 ms rollover") {
  uint32_t before = 0xFFFFFF00UL, after = 0x00000010UL;
  CHECK(elapsed_ms(after, before) == 0x110);
  CHECK(expired(after, before, 0x110));
  CHECK_FALSE(expired(after, before, 0x111));
  CHECK_FALSE(expired(100, 105, 10));  // stamped just after "now": not 2^32 - 5 ms ago
  CHECK_FALSE(expired(0xFFFFFFFEUL, 3, 10));
  Periodic p;
  p.start(0xFFFFFFF0UL, 100, false);
  CHECK_FALSE(p.due(0x53));  // 0xFFFFFFF0 + 99, wrapped
  CHECK(p.due(0x54));        // 0xFFFFFFF0 + 100, wrapped
  CHECK_FALSE(p.due(0x60));
  CHECK(p.due(0x54 + 100));
  Blinker b;
  b.pulse(0xFFFFFFFAUL, 50);
  CHECK(b.update(0xFFFFFFFFUL));
  CHECK(b.update(0x2B));
  CHECK_FALSE(b.update(0x2C));
}

static const PairConfig kPair = {1000, 3000, 3};

TEST_CASE("takeover happens exactly at the timeout, not earlier, also across the rollover") {
  for (uint32_t start : {0UL, 0xFFFFF000UL, 0xFFFFFFFFUL - 1500UL}) {
    CAPTURE(start);
    SecondaryNode s(kPair);
    s.begin(start);
    Heartbeat hb = {0, true};
    s.on_heartbeat(start + 500, hb);  // last beat of a live primary
    for (uint32_t t = 0; t < 3000; t += 7) {
      CHECK_FALSE(s.poll(start + 500 + t));
      CHECK(s.role() == kRoleStandby);
    }
    CHECK_FALSE(s.poll(start + 500 + 2999));
    CHECK(s.poll(start + 500 + 3000));
    CHECK(s.role() == kRoleActive);
  }
  // A beat stamped by the interrupt just after the loop read millis() must not look 49 days old.
  SecondaryNode late(kPair);
  late.begin(0);
  Heartbeat active_beat = {0, true};
  late.on_heartbeat(2005, active_beat);
  CHECK_FALSE(late.poll(2000));
  CHECK(late.role() == kRoleStandby);
  // With no primary at all, the secondary takes over one timeout after its own start.
  SecondaryNode s(kPair);
  s.begin(100);
  CHECK_FALSE(s.poll(3099));
  CHECK(s.poll(3100));
}

TEST_CASE("a secondary with a stale millis() comparison would fire early: ours does not") {
  // The classic pair sketch added the whole elapsed time on every loop; with a loop every 10 ms it fired after
  // about sqrt(2 * 3000 * 10) ms. Polling every millisecond must not change when we take over.
  SecondaryNode s(kPair);
  s.begin(0);
  uint32_t t = 1;
  while (!s.poll(t)) ++t;
  CHECK(t == 3000);
}

TEST_CASE("hand-back needs consecutive heartbeats from an active primary (hysteresis)") {
  SecondaryNode s(kPair);
  s.begin(0);
  REQUIRE(s.poll(3000));
  // A primary that flaps (one or two beats, then silence) never gets the role back.
  Heartbeat claim = {0, false}, active = {0, true};
  uint32_t t = 10000;
  CHECK_FALSE(s.on_heartbeat(t, claim));
  CHECK_FALSE(s.on_heartbeat(t + 1000, claim));
  t += 1000 + 3000;  // silence of a full timeout breaks the run
  CHECK_FALSE(s.on_heartbeat(t, claim));
  CHECK(s.role() == kRoleActive);
  CHECK_FALSE(s.on_heartbeat(t + 1000, claim));
  CHECK(s.role() == kRoleActive);
  CHECK(s.on_heartbeat(t + 2000, active));  // third consecutive beat, primary now active
  CHECK(s.role() == kRoleStandby);
  // Beats that claim without ever saying "active" do not hand back either.
  SecondaryNode s2(kPair);
  s2.begin(0);
  REQUIRE(s2.poll(3000));
  for (int i = 0; i < 10; ++i) s2.on_heartbeat(5000 + i * 1000, claim);
  CHECK(s2.role() == kRoleActive);
  // The primary claims for handback_beats - 1 beats, then says active.
  PrimaryNode p(kPair);
  p.begin(0);
  Heartbeat hb;
  REQUIRE(p.poll(0, &hb));
  CHECK_FALSE(hb.active);
  CHECK_FALSE(p.poll(999, &hb));
  REQUIRE(p.poll(1000, &hb));
  CHECK_FALSE(hb.active);
  CHECK(p.role() == kRoleStandby);
  REQUIRE(p.poll(2000, &hb));
  CHECK(hb.active);
  CHECK(p.role() == kRoleActive);
  uint8_t wire[kHeartbeatLen];
  encode_heartbeat(hb, wire);
  Heartbeat back;
  REQUIRE(decode_heartbeat(wire, kHeartbeatLen, &back));
  CHECK(back.active);
  CHECK(back.counter == hb.counter);
  CHECK_FALSE(decode_heartbeat((const uint8_t*)"hello!", 6, &back));  // the classic message is not ours
}

static std::vector<uint8_t> unhex(const std::string& h) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back((uint8_t)std::stoul(h.substr(i, 2), nullptr, 16));
  return out;
}

TEST_CASE("heartbeat vectors: frames, I2C writes, and the role scenarios of both nodes") {
  jm::Value v = vectors("heartbeat.json");
  CHECK(v["address"].i64() == 0x42);
  CHECK(v["frame_register"].i64() == kHeartbeatRegister);
  CHECK(v["reply_register"].i64() == kReplyRegister);
  for (auto& f : v["frames"].items) {
    CAPTURE(f["name"].str());
    Heartbeat hb = {(uint8_t)f["counter"].i64(), f["state"].str() == "active"};
    uint8_t frame[kHeartbeatLen], write[kHeartbeatWriteLen];
    encode_heartbeat(hb, frame);
    encode_heartbeat_write(hb, write);
    CHECK(hex(frame, kHeartbeatLen) == f["frame_hex"].str());
    CHECK(hex(write, kHeartbeatWriteLen) == f["i2c_write_hex"].str());
    Heartbeat back;
    REQUIRE(decode_heartbeat_write(write, kHeartbeatWriteLen, &back));
    CHECK(back.active == hb.active);
    CHECK(back.counter == hb.counter);
  }
  for (auto& f : v["invalid_frames"].items) {
    std::vector<uint8_t> b = unhex(f["frame_hex"].str());
    Heartbeat back;
    CHECK_FALSE(decode_heartbeat(b.data(), (uint8_t)b.size(), &back));
  }
  for (auto& sc : v["secondary"].items) {
    CAPTURE(sc["name"].str());
    PairConfig cfg = {200, (uint32_t)sc["timeout_ms"].i64(), (uint8_t)sc["handback_beats"].i64()};
    const uint32_t t0 = 0xFFFFF000UL;  // every scenario also across the 2^32 ms rollover
    for (uint32_t base : {(uint32_t)0, t0}) {
      SecondaryNode s(cfg);
      s.begin(base);
      size_t k = 0;
      for (auto& ev : sc["events"].items) {
        uint32_t t = base + (uint32_t)ev["t"].i64();
        if (ev.has("beat")) {
          Heartbeat hb = {0, ev["beat"].str() == "active"};
          s.on_heartbeat(t, hb);
        } else {
          s.poll(t);
        }
        CHECK((s.role() == kRoleActive ? "active" : "standby") == sc["roles"][k++].str());
      }
    }
  }
  for (auto& sc : v["primary"].items) {
    CAPTURE(sc["name"].str());
    bool reads_nothing = true;  // this primary does not read replies: only scenarios without one apply
    for (auto& r : sc["replies"].items) reads_nothing &= r.str() == "none";
    if (!reads_nothing) continue;
    PairConfig cfg = {200, 600, (uint8_t)sc["handback_beats"].i64()};
    PrimaryNode p(cfg);
    p.begin(0);
    uint32_t t = 0;
    for (auto& says : sc["says"].items) {
      Heartbeat hb;
      REQUIRE(p.poll(t, &hb));
      CHECK((hb.active ? "active" : "claiming") == says.str());
      t += 200;
    }
  }
}

// Two nodes on a virtual 1 ms clock. Each samples every `sample` ms while active. The primary dies at
// `die` and restarts at `revive`; `lost` heartbeats (by number) vanish on the bus.
struct PairRun {
  uint32_t last_primary_reading = 0, first_secondary_reading = 0;
  bool secondary_took_over = false;
  uint32_t max_overlap = 0, max_gap = 0;
  uint32_t secondary_handback_at = 0, primary_active_at = 0;
};

static PairRun simulate_pair(uint32_t t0, uint32_t die, uint32_t revive, uint32_t end, uint32_t sample,
                             std::set<int> lost = {}) {
  PairRun run;
  PrimaryNode p(kPair);
  SecondaryNode s(kPair);
  p.begin(t0);
  s.begin(t0);
  bool p_alive = true;
  Periodic ps, ss;
  ps.start(t0, sample, true);
  Role p_prev = kRoleStandby, s_prev = kRoleStandby;
  uint32_t overlap_start = 0, gap_start = t0, last_reading = t0;
  bool in_overlap = false, any_reading = false;
  int beat_no = 0;
  for (uint32_t i = 0; i <= end; ++i) {
    uint32_t now = t0 + i;
    if (i == die) p_alive = false;
    if (i == revive) {
      p_alive = true;
      p.begin(now);
    }
    Heartbeat hb;
    if (p_alive && p.poll(now, &hb)) {
      if (!lost.count(++beat_no)) s.on_heartbeat(now, hb);
    }
    s.poll(now);
    Role pr = p_alive ? p.role() : kRoleStandby, sr = s.role();
    if (pr == kRoleActive && p_prev != kRoleActive) {
      ps.start(now, sample, true);
      if (i >= revive) run.primary_active_at = i;
    }
    if (sr == kRoleActive && s_prev != kRoleActive) {
      ss.start(now, sample, true);
      run.secondary_took_over = true;
    }
    if (sr != kRoleActive && s_prev == kRoleActive) run.secondary_handback_at = i;
    bool p_reads = pr == kRoleActive && ps.due(now);
    bool s_reads = sr == kRoleActive && ss.due(now);
    if (p_reads) run.last_primary_reading = i;
    if (s_reads && !run.first_secondary_reading) run.first_secondary_reading = i;
    if (p_reads || s_reads) {
      if (any_reading) run.max_gap = std::max(run.max_gap, elapsed_ms(now, last_reading));
      last_reading = now;
      any_reading = true;
    }
    bool both = pr == kRoleActive && sr == kRoleActive;
    if (both && !in_overlap) overlap_start = now;
    if (both) run.max_overlap = std::max(run.max_overlap, elapsed_ms(now, overlap_start) + 1);
    in_overlap = both;
    p_prev = pr;
    s_prev = sr;
  }
  (void)gap_start;
  return run;
}

TEST_CASE("coverage at takeover: gap <= timeout + one sample period, for every phase of the failure") {
  const uint32_t sample = 700;
  for (uint32_t t0 : {0UL, 0xFFFFFFFFUL - 20000UL}) {
    for (uint32_t die = 5000; die < 5000 + 2 * 1000; die += 37) {
      CAPTURE(t0);
      CAPTURE(die);
      PairRun r = simulate_pair(t0, die, 0xFFFFFFFF, die + 6000, sample);
      REQUIRE(r.secondary_took_over);
      uint32_t gap = r.first_secondary_reading - r.last_primary_reading;
      CHECK(gap <= kPair.timeout_ms + sample);
      CHECK(r.max_gap <= kPair.timeout_ms + sample);
      CHECK(r.max_overlap == 0);
    }
  }
}

TEST_CASE("coverage at hand-back: both nodes active for at most one heartbeat period") {
  const uint32_t sample = 500;
  for (uint32_t revive = 12000; revive < 12000 + 1000; revive += 53) {
    CAPTURE(revive);
    PairRun clean = simulate_pair(0, 5000, revive, revive + 8000, sample);
    CHECK(clean.secondary_handback_at == clean.primary_active_at);  // the same heartbeat
    CHECK(clean.max_overlap <= 1);
    CHECK(clean.max_gap <= kPair.timeout_ms + sample);
    // The heartbeat that would hand back is lost: one more period of overlap, never more.
    int beats_before_death = 5;  // beats at 0, 1000, ..., 4000
    PairRun lossy = simulate_pair(0, 5000, revive, revive + 8000, sample, {beats_before_death + 3});
    CHECK(lossy.max_overlap <= kPair.heartbeat_ms + 1);
    CHECK(lossy.max_overlap >= kPair.heartbeat_ms);
    CHECK(lossy.secondary_handback_at == lossy.primary_active_at + kPair.heartbeat_ms);
  }
  // A primary restarting within the timeout still claims for two periods: the bounds hold either way.
  for (uint32_t revive = 5001; revive < 8000; revive += 97) {
    PairRun fast = simulate_pair(0, 5000, revive, 16000, sample);
    CHECK(fast.max_gap <= kPair.timeout_ms + sample);
    CHECK(fast.max_overlap <= 1);
  }
}

// ---------------------------------------------------------------- boot counter

TEST_CASE("the boot counter is persisted and increments at every start") {
  RamStorage mem(64);
  CHECK(next_boot(mem, 8) == 1);
  CHECK(next_boot(mem, 8) == 2);
  for (uint32_t i = 3; i < 300; ++i) CHECK(next_boot(mem, 8) == i);  // the 8-bit generation wraps
  // A power cut at every byte of the increment: the next start still gets a number above every
  // number a completed start used (a start that was cut never recorded a reading).
  for (long k = 0; k < (long)kBootCounterBytes; ++k) {
    RamStorage m(64);
    for (int i = 0; i < 5; ++i) next_boot(m, 8);  // boots 1..5 completed
    m.budget = k;
    next_boot(m, 8);  // boot 6 loses power after k bytes
    m.budget = -1;
    uint32_t after = next_boot(m, 8);
    CHECK(after >= 6);
    CHECK(after <= 7);
  }
}

TEST_CASE("reset reason from the AVR's MCUSR flags") {
  auto name = [](ResetReason r) { return std::string(reinterpret_cast<const char*>(reset_name(r))); };
  CHECK(name(reset_from_avr_flags(0x01)) == "power");
  CHECK(name(reset_from_avr_flags(0x0F)) == "power");  // power-on implies the others
  CHECK(name(reset_from_avr_flags(0x08)) == "wdt");
  CHECK(name(reset_from_avr_flags(0x0A)) == "wdt");
  CHECK(name(reset_from_avr_flags(0x04)) == "brownout");
  CHECK(name(reset_from_avr_flags(0x02)) == "ext");
  CHECK(name(reset_from_avr_flags(0x00)) == "soft");
  CHECK(name(reset_from_avr_flags(0x00, false)) == "unknown");
}

TEST_CASE("a blank boot store starts from the seed, never again at 1") {
  RamStorage mem(64);
  uint32_t seed = fresh_boot(1700000000UL, 0);  // from the RTC's seconds
  CHECK(seed >= 0x10000UL);
  CHECK(seed < 0x80000000UL);
  CHECK(next_boot(mem, 8, seed) == seed);
  CHECK(next_boot(mem, 8, 12345) == seed + 1);  // once stored, the seed is not used again
  for (uint32_t noise : {0UL, 1UL, 0xFFFFFFFFUL, 0x7FFFFFFFUL, 0x12345678UL}) {
    uint32_t b = fresh_boot(0, noise);
    CHECK(b >= 0x10000UL);
    CHECK(b < 0x80000000UL);
  }
  CHECK(fresh_boot(1700000000UL, 5) < fresh_boot(1700000600UL, 5));  // later RTC time, later boot
}

TEST_CASE("the host file back end keeps the boot counter and the cache across restarts") {
  std::string path = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/iotgw_host_storage_" +
                     std::to_string((long)getpid()) + ".bin";
  std::remove(path.c_str());
  {
    FileStorage f(path, 512);
    CHECK(next_boot(f, 0) == 1);
    RecordLog log(f, kBootCounterBytes, 512 - kBootCounterBytes);
    log.open();
    Record r = {1, 0, 1700000000000LL, kSrcRtc, 5};
    REQUIRE(log.append(r) == kAppended);
  }
  {
    FileStorage f(path, 512);
    CHECK(next_boot(f, 0) == 2);
    RecordLog log(f, kBootCounterBytes, 512 - kBootCounterBytes);
    CHECK(log.open() == 1);
  }
  std::remove(path.c_str());
}

// ---------------------------------------------------------------- cache records and log

TEST_CASE("cache records are byte-exact to the vectors") {
  jm::Value v = vectors("cache_records.json");
  for (auto& c : v.items) {
    CAPTURE(c["name"].str());
    Record r = {(uint32_t)c["boot"].u64(), (uint32_t)c["seq"].u64(), c["ts"].is_null() ? kNoTime : c["ts"].i64(),
                src_code(c["src"].str()), (int32_t)c["val_milli"].i64()};
    uint8_t rec[kRecordSize];
    encode_record(r, rec);
    CHECK(hex(rec, kRecordSize) == c["record_hex"].str());
    Record back;
    REQUIRE(decode_record(rec, &back));
    CHECK(back.boot == r.boot);
    CHECK(back.seq == r.seq);
    CHECK(back.ts == r.ts);
    CHECK(back.src == r.src);
    CHECK(back.val_milli == r.val_milli);
    for (size_t i = 0; i < kRecordSize; ++i) {  // any single flipped bit is caught
      rec[i] ^= 0x10;
      CHECK_FALSE(decode_record(rec, &back));
      rec[i] ^= 0x10;
    }
  }
}

static Record rec(uint32_t boot, uint32_t seq) { return Record{boot, seq, 1700000000000LL + seq, kSrcRtc, (int32_t)seq}; }

TEST_CASE("record log: append, replay cursor, trim, reopen") {
  RamStorage mem(400);
  RecordLog log(mem, 0, 400);
  CHECK(log.open() == 0);
  for (uint32_t s = 0; s < 5; ++s) REQUIRE(log.append(rec(1, s)) == kAppended);
  Record r;
  for (uint32_t s = 0; s < 5; ++s) {
    REQUIRE(log.next_unsent(&r));
    CHECK(r.seq == s);
  }
  CHECK_FALSE(log.next_unsent(&r));
  log.rewind();
  REQUIRE(log.next_unsent(&r));
  CHECK(r.seq == 0);
  CHECK(log.trim(1, 2) == 3);
  CHECK(log.count() == 2);
  REQUIRE(log.next_unsent(&r));
  CHECK(r.seq == 3);
  CHECK(log.trim(2, 9) == 0);  // another boot's ack does not touch boot 1's records
  long writes = mem.writes;
  RecordLog lazy(mem, 0, 400);  // restart before the trim was persisted: acked records come back
  CHECK(lazy.open() == 5);       // (harmless: the gateway keeps one row per identity)
  CHECK(writes == mem.writes);   // a trim writes nothing by itself
  REQUIRE(log.persist());
  RecordLog again(mem, 0, 400);  // restart after the trim was persisted: nothing acked comes back
  CHECK(again.open() == 2);
  REQUIRE(again.next_unsent(&r));
  CHECK(r.seq == 3);
  CHECK_FALSE(again.torn_at_open());
}

TEST_CASE("record log: many laps of the ring never resurrect stale records") {
  // Odd size: records straddle the end and stale ones are misaligned; exact size: stale records sit
  // exactly where the scan looks next, intact, and only their older identity stops it.
  for (uint32_t slack : {11u, 0u}) {
  CAPTURE(slack);
  RamStorage mem(RecordLog::kMetaBytes + 7 * kRecordSize + slack);
  RecordLog log(mem, 0, mem.size());
  log.open();
  uint32_t next = 0, acked = 0, trims = 0;
  for (int round = 0; round < 60; ++round) {
    uint32_t add = (uint32_t)(round % 4) + 1;
    for (uint32_t i = 0; i < add && log.append(rec(3, next)) == kAppended; ++i) ++next;
    uint32_t upto = next - 1 - (uint32_t)(round % 3);
    if (upto + 1 > acked && upto < next) {
      log.trim(3, upto);
      acked = upto + 1;
      ++trims;
    }
    // The trim is persisted lazily: a restart finds every unacknowledged record, plus at most the
    // acknowledged ones behind the persisted head, contiguous, never a stale one from an older lap.
    RecordLog reopened(mem, 0, mem.size());
    uint16_t found = reopened.open();
    CHECK(found >= next - acked);
    CHECK(found <= next - acked + reopened.capacity() / 2);  // at most half a ring of acked ones replayed
    Record r;
    if (reopened.oldest(&r)) CHECK(r.seq == next - found);
    if (reopened.newest(&r)) CHECK(r.seq == next - 1);
    uint32_t expect = next - found;
    while (reopened.next_unsent(&r)) CHECK(r.seq == expect++);
    CHECK(expect == next);
    CHECK_FALSE(reopened.torn_at_open());
  }
  // The trim state is saved about twice per lap (a 7-record ring here), not per ack.
  CHECK(log.meta_saves() <= next / 3);
  CHECK(log.meta_saves() < trims);
  CHECK(next > 100);  // several laps
  }
}

TEST_CASE("a power cut at every byte of an append leaves the log whole, minus the torn record") {
  for (uint32_t slack : {5u, 0u}) {
  CAPTURE(slack);
  const uint32_t n = RecordLog::kMetaBytes + 6 * kRecordSize + slack;
  // Fill one lap first so the bytes being overwritten are real, older records.
  RamStorage base(n);
  {
    RecordLog log(base, 0, n);
    log.open();
    uint32_t s = 0;
    while (log.append(rec(1, s)) == kAppended) ++s;
    log.trim(1, s - 3);  // keep two unacknowledged records; the rest of the ring is stale
    REQUIRE(log.append(rec(2, 0)) == kAppended);
  }
  for (long k = 0; k <= kRecordSize; ++k) {
    CAPTURE(k);
    RamStorage mem = base;
    RecordLog log(mem, 0, n);
    REQUIRE(log.open() == 3);
    mem.budget = k;
    log.append(rec(2, 1));  // power fails after k bytes of this record
    mem.budget = -1;
    RecordLog after(mem, 0, n);
    uint16_t found = after.open();
    if (k == kRecordSize) {
      CHECK(found == 4);
    } else {
      CHECK(found == 3);  // every record before the cut is intact, the torn one is gone
      Record r;
      REQUIRE(after.newest(&r));
      CHECK(r.boot == 2);
      CHECK(r.seq == 0);
    }
    // Appending after the restart overwrites the torn bytes and everything is readable.
    REQUIRE(after.append(rec(3, 0)) == kAppended);
    RecordLog third(mem, 0, n);
    CHECK(third.open() == found + 1);
    CHECK_FALSE(third.torn_at_open());
  }
  }
}

TEST_CASE("a power cut at every byte of a trim keeps either the old or the new trim state") {
  const uint32_t n = 512;
  RamStorage base(n);
  {
    RecordLog log(base, 0, n);
    log.open();
    for (uint32_t s = 0; s < 8; ++s) REQUIRE(log.append(rec(1, s)) == kAppended);
    log.trim(1, 1);
    REQUIRE(log.persist());
  }
  for (long k = 0; k <= 15; ++k) {
    CAPTURE(k);
    RamStorage mem = base;
    RecordLog log(mem, 0, n);
    REQUIRE(log.open() == 6);
    mem.budget = k;
    log.trim(1, 4);
    log.persist();  // on a board: when an append reaches the persisted head
    mem.budget = -1;
    RecordLog after(mem, 0, n);
    uint16_t found = after.open();
    CHECK((found == 6 || found == 3));
    CHECK(found == (k >= 15 ? 3 : 6));
    Record r;
    REQUIRE(after.oldest(&r));
    CHECK(r.seq == (found == 3 ? 5u : 2u));
  }
}

TEST_CASE("a worn cell is read back, counted and stepped over; the scan at start steps over it too") {
  const uint32_t n = RecordLog::kMetaBytes + 8 * kRecordSize;
  RamStorage mem(n);
  RecordLog log(mem, 0, n);
  log.open();
  REQUIRE(log.append(rec(1, 0)) == kAppended);
  mem.worn[RecordLog::kMetaBytes + kRecordSize + 9] = true;  // a byte of slot 1 no longer takes a write
  REQUIRE(log.append(rec(1, 1)) == kAppended);                  // goes to slot 2
  CHECK(mem.errors == 1);
  CHECK(log.storage_errors() == 1);
  REQUIRE(log.append(rec(1, 2)) == kAppended);
  CHECK(log.count() == 3);
  Record r;
  for (uint32_t s = 0; s < 3; ++s) {
    REQUIRE(log.next_unsent(&r));
    CHECK(r.seq == s);
  }
  CHECK_FALSE(log.next_unsent(&r));
  RecordLog again(mem, 0, n);
  CHECK(again.open() == 3);
  CHECK_FALSE(again.torn_at_open());
  REQUIRE(again.newest(&r));
  CHECK(r.seq == 2);
  CHECK(again.trim(1, 1) == 2);  // the hole goes with the records around it
  CHECK(again.count() == 1);
  REQUIRE(again.oldest(&r));
  CHECK(r.seq == 2);
  // Three worn slots in a row: two become holes, the third append fails (and is retried later).
  RamStorage bad(n);
  RecordLog b(bad, 0, n);
  b.open();
  for (uint32_t k = 0; k < 3; ++k) bad.worn[RecordLog::kMetaBytes + k * kRecordSize + 4] = true;
  CHECK(b.append(rec(1, 0)) == kLogIoError);
  CHECK(bad.errors == 3);
  CHECK(b.count() == 0);
  bad.worn[RecordLog::kMetaBytes + 2 * kRecordSize + 4] = false;
  CHECK(b.append(rec(1, 0)) == kAppended);
  RecordLog b2(bad, 0, n);
  CHECK(b2.open() == 1);
}

TEST_CASE("EEPROM wear: the trim state is saved about once per ring lap and the ring is the hottest part") {
  WearResult w = simulate_wear(200000);
  const long laps = 200000 / ((1024 - kBootCounterBytes - RecordLog::kMetaBytes) / kRecordSize);
  CHECK(w.meta_saves <= 2 * laps + 2);                  // about twice per lap, not once per ack
  CHECK(w.meta_hottest * RecordLog::kMetaSlots <= 2 * w.hottest_writes + 8);  // spread over the copies
  CHECK(w.hottest_writes <= laps + 1);                  // a ring cell: at most once per lap
  CHECK(w.hottest_cell >= kBootCounterBytes + RecordLog::kMetaBytes);
  MESSAGE("writes of the hottest cell per 200000 readings: " << w.hottest_writes << ", years at 5 s: " << wear_years(w));
}

TEST_CASE("write-behind: a promptly acknowledged record is never written; a late one, or one sampled while down, is") {
  RamStorage mem(1024);
  NodeConfig cfg = {"ft-1", "a", "V"};
  FakeLink link;
  RecordLog log(mem, 0, 1024);
  Collector col(cfg, log, link, nullptr, 5000, 1000);
  col.begin(1, 0);
  long before = mem.writes;
  REQUIRE(col.record(0, kNoTime, kSrcNone, 1));
  col.poll(0);
  REQUIRE(link.sent.size() == 1);
  CHECK(col.cached() == 1);
  Ack a0 = {"ft-1", 4, "a", 1, 1, 0, kNoTime};
  CHECK(col.on_ack(a0, 30) == 1);
  col.poll(5000);
  CHECK(mem.writes == before);  // acknowledged within the delay: nothing written
  REQUIRE(col.record(5000, kNoTime, kSrcNone, 2));
  col.poll(5000);
  col.poll(5999);
  CHECK(mem.writes == before);
  col.poll(6000);  // no ack after 1000 ms: written now
  CHECK(mem.writes > before);
  RecordLog after(mem, 0, 1024);
  CHECK(after.open() == 1);  // a power cut now keeps it
  // A sample while the link is down is written at the next poll.
  link.up = false;
  REQUIRE(col.record(10000, kNoTime, kSrcNone, 3));
  col.poll(10000);
  RecordLog down(mem, 0, 1024);
  CHECK(down.open() == 2);
  // The next sample writes the previous one first, so only the newest can ever be in RAM only.
  link.up = true;
  REQUIRE(col.record(15000, kNoTime, kSrcNone, 4));
  REQUIRE(col.record(15001, kNoTime, kSrcNone, 5));
  RecordLog third(mem, 0, 1024);
  CHECK(third.open() == 3);
  CHECK(col.cached() == 4);
  Record r;
  REQUIRE(log.newest(&r));
  CHECK(r.seq == 4);
}

TEST_CASE("write-behind over many laps: a restart at any point finds every written, unacknowledged record") {
  const uint32_t n = RecordLog::kMetaBytes + 7 * kRecordSize + 3;
  RamStorage mem(n);
  NodeConfig cfg = {"ft-1", "a", "V"};
  FakeLink link;
  RecordLog log(mem, 0, n);
  Collector col(cfg, log, link, nullptr, 5000, 1000);
  col.begin(1, 0);
  uint32_t now = 0;
  std::vector<uint32_t> unacked;  // written and not acknowledged
  for (uint32_t i = 0; i < 400; ++i, now += 5000) {
    REQUIRE(col.record(now, kNoTime, kSrcNone, (int32_t)i));
    col.poll(now);
    bool late = i % 7 == 3 || i % 11 == 5, never = i % 53 == 50;
    if (late || never) col.poll(now + 1001);  // written
    if (never) {
      unacked.push_back(i);
      continue;  // its ack is lost for now: everything after it waits
    }
    if (!unacked.empty() && i % 4 == 0) unacked.clear();  // a later ack covers them all
    if (unacked.empty()) {
      Ack a = {"ft-1", 4, "a", 1, 1, i, kNoTime};
      col.on_ack(a, now + 1500);
    }
    RecordLog again(mem, 0, n);
    again.open();
    std::vector<uint32_t> found;
    Record r;
    while (again.next_unsent(&r)) found.push_back(r.seq);
    for (uint32_t s : unacked) CHECK(std::find(found.begin(), found.end(), s) != found.end());
    for (size_t k = 1; k < found.size(); ++k) CHECK(found[k] > found[k - 1]);
    if (log.count() == log.capacity()) break;
  }
}

TEST_CASE("EEPROM life at a 5 s period: write-through and write-behind") {
  WearResult through = simulate_wear(100000);
  WearResult behind = simulate_wear(100000, 1000, 100);
  CHECK(behind.hottest_writes * 50 < through.hottest_writes);
  CHECK(behind.meta_saves * 50 < through.meta_saves);
  CHECK(wear_years(behind) >= 10.0);
  CHECK(wear_years(through) < 10.0);  // the ring is written once per lap: physics, see docs/firmware.md
}

// ---------------------------------------------------------------- the collector

TEST_CASE("full cache: stop recording, count dropped, never evict, no seq gap") {
  RamStorage mem(RecordLog::kMetaBytes + 4 * kRecordSize);
  RecordLog log(mem, 0, mem.size());
  FakeLink link;
  link.up = false;
  NodeConfig cfg = {"ft-1", "a", "V"};
  StringOut console;
  Collector col(cfg, log, link, &console, 5000);
  col.begin(4, 0);
  for (int i = 0; i < 4; ++i) CHECK(col.record(0, kNoTime, kSrcNone, i));
  CHECK_FALSE(col.record(0, kNoTime, kSrcNone, 99));
  CHECK_FALSE(col.record(0, kNoTime, kSrcNone, 98));
  CHECK(col.dropped() == 2);
  CHECK(col.next_seq() == 4);  // dropped samples get no sequence number
  CHECK(col.cached() == 4);
  Record r;
  REQUIRE(log.oldest(&r));
  CHECK(r.seq == 0);  // the oldest unacknowledged record is still there
  CHECK(console.text.find("cache full dropped=2\n") != std::string::npos);
  // An ack makes room; the next recorded sample continues the sequence without a gap.
  Ack a = {"ft-1", 4, "a", 1, 4, 1, kNoTime};
  CHECK(col.on_ack(a, 10) == 2);
  CHECK(col.record(20, kNoTime, kSrcNone, 7));
  REQUIRE(log.newest(&r));
  CHECK(r.seq == 4);
}

TEST_CASE("collector: send live, resend after the ack timeout, trim on ack, replay after reboot") {
  RamStorage mem(1024);
  NodeConfig cfg = {"ft-1", "a", "V"};
  FakeLink link;
  StringOut console;
  {
    RecordLog log(mem, 0, 1024);
    Collector col(cfg, log, link, &console, 5000);
    col.begin(1, 1000);
    REQUIRE(col.record(1000, 946684800000LL, kSrcRtc, 1500));
    col.poll(1000);
    REQUIRE(link.sent.size() == 1);
    CHECK_FALSE(link.sent[0].cached);  // live
    REQUIRE(col.record(2000, 946684801000LL, kSrcRtc, 1600));
    col.poll(2000);
    REQUIRE(link.sent.size() == 2);
    uint32_t wait = col.resend_wait();  // jittered in [T/2, T], armed at the first unacknowledged send
    CHECK(wait >= 2500);
    CHECK(wait <= 5000);
    col.poll(1000 + wait - 1);  // not yet
    CHECK(link.sent.size() == 2);
    uint32_t t = 1000 + wait;
    col.poll(t);  // ack timeout: resend oldest first, as cached
    REQUIRE(link.sent.size() == 3);
    CHECK(link.sent[2].r.seq == 0);
    CHECK(link.sent[2].cached);
    col.poll(t + 1);
    REQUIRE(link.sent.size() == 4);
    CHECK(link.sent[3].r.seq == 1);
    Ack other = {"ft-1", 4, "b", 1, 1, 5, kNoTime};  // the other node's ack is not ours
    CHECK(col.on_ack(other, t + 100) == 0);
    Ack mine = {"ft-1", 4, "a", 1, 1, 0, kNoTime};
    CHECK(col.on_ack(mine, t + 100) == 1);
    CHECK(col.cached() == 1);
    REQUIRE(log.persist());  // lazily persisted on a board; here so the replay below is exact
    CHECK(console.text.find("cache append seq=0\n") != std::string::npos);
    CHECK(console.text.find("cache resend from seq=0\n") != std::string::npos);
    CHECK(console.text.find("cache trim upto=0\n") != std::string::npos);
    for (size_t i = 0; i < console.text.size(); i = console.text.find('\n', i) + 1) CHECK(console.text[i] != '!');
  }
  link.sent.clear();
  {
    RecordLog log(mem, 0, 1024);  // reboot: boot 2 replays boot 1's unacknowledged record first
    Collector col(cfg, log, link, &console, 5000);
    col.begin(2, 0);
    CHECK(col.cached() == 1);
    REQUIRE(col.record(0, kNoTime, kSrcNone, 1));
    col.poll(0);
    col.poll(1);
    REQUIRE(col.record(2, kNoTime, kSrcNone, 2));
    REQUIRE(col.record(3, kNoTime, kSrcNone, 3));
    REQUIRE(link.sent.size() == 2);
    CHECK(link.sent[0].r.boot == 1);
    CHECK(link.sent[0].r.seq == 1);
    CHECK(link.sent[0].cached);
    CHECK(link.sent[0].r.ts == 946684801000LL);  // the original timestamp
    CHECK(link.sent[1].r.boot == 2);
    CHECK(link.sent[1].r.seq == 0);
    // Boot 2's ack first: its records sit behind boot 1's, so they go when boot 1's ack arrives.
    // A late, lower ack of boot 2 in between must not lower the watermark.
    Ack now2 = {"ft-1", 4, "a", 1, 2, 2, kNoTime};
    CHECK(col.on_ack(now2, 10) == 0);
    Ack late2 = {"ft-1", 4, "a", 1, 2, 0, kNoTime};
    CHECK(col.on_ack(late2, 10) == 0);
    Ack old1 = {"ft-1", 4, "a", 1, 1, 1, kNoTime};
    CHECK(col.on_ack(old1, 11) == 4);
    CHECK(col.cached() == 0);
  }
}

// A collector with `n` records sent once and unacknowledged, on a cache large enough for them all.
struct ResendRig {
  RamStorage mem{RecordLog::kMetaBytes + 40 * kRecordSize};
  NodeConfig cfg = {"ft-1", "a", "V"};
  FakeLink link;
  RecordLog log{mem, 0, mem.size()};
  Collector col{cfg, log, link, nullptr, 5000};
  ResendRig(uint32_t seed, int n) {
    col.begin(1, 0);
    col.seed_jitter(seed);
    for (int i = 0; i < n; ++i) {
      REQUIRE(col.record(0, kNoTime, kSrcNone, i));
      col.poll(0);
    }
    REQUIRE(link.sent.size() == (size_t)n);
  }
  void ack(uint32_t upto, uint32_t now) {
    Ack a = {"ft-1", 4, "a", 1, 1, upto, kNoTime};
    col.on_ack(a, now);
  }
  // Polls every ms over [from, to) and returns the seqs resent (sent after `before` sends).
  std::vector<uint32_t> run(uint32_t from, uint32_t to) {
    size_t before = link.sent.size();
    for (uint32_t t = from; t < to; ++t) col.poll(t);
    std::vector<uint32_t> out;
    for (size_t i = before; i < link.sent.size(); ++i) out.push_back(link.sent[i].r.seq);
    return out;
  }
};

TEST_CASE("resend timer: no resend while acks make progress, however slowly") {
  ResendRig rig(7, 30);
  // One record acknowledged every 2.4 s: always sooner than the shortest jittered wait (2.5 s).
  for (uint32_t k = 0; k < 30; ++k) {
    CHECK(rig.run(k * 2400, (k + 1) * 2400).empty());
    rig.ack(k, (k + 1) * 2400);
    CHECK(rig.col.resend_timeout() == 5000);
  }
  CHECK(rig.col.cached() == 0);
}

TEST_CASE("resend timer: back-off doubles with jittered waits in [T/2, T] up to the cap") {
  for (uint32_t seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    ResendRig rig(seed, 3);
    uint32_t t = 0, expected_t = 5000;
    for (int round = 0; round < 8; ++round) {
      uint32_t wait = rig.col.resend_wait();
      CHECK(rig.col.resend_timeout() == expected_t);
      CHECK(wait >= expected_t / 2);
      CHECK(wait <= expected_t);
      CHECK(rig.run(t, t + wait).empty());  // nothing before the wait is over
      std::vector<uint32_t> again = rig.run(t + wait, t + wait + 10);
      CHECK(again == std::vector<uint32_t>({0, 1, 2}));  // then the unacknowledged ones, oldest first
      t += wait;
      expected_t = expected_t * 2 > IOTGW_RESEND_CAP_MS ? IOTGW_RESEND_CAP_MS : expected_t * 2;
    }
    CHECK(rig.col.resend_timeout() == IOTGW_RESEND_CAP_MS);
  }
}

TEST_CASE("resend timer: the jitter spreads collectors over the whole [T/2, T]") {
  uint32_t lo = 0xFFFFFFFFUL, hi = 0;
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    ResendRig rig(seed, 1);
    uint32_t w = rig.col.resend_wait();
    lo = w < lo ? w : lo;
    hi = w > hi ? w : hi;
  }
  CHECK(lo < 2700);
  CHECK(hi > 4800);
}

TEST_CASE("resend window: an expiry resends only the W oldest unacknowledged records") {
  ResendRig rig(3, 30);
  uint32_t wait = rig.col.resend_wait();
  std::vector<uint32_t> again = rig.run(0, wait + 100);
  REQUIRE(again.size() == IOTGW_RESEND_WINDOW);
  for (uint32_t i = 0; i < IOTGW_RESEND_WINDOW; ++i) CHECK(again[i] == i);
  // A record sampled now still goes out (it was never sent): the window ends, new ones go on.
  REQUIRE(rig.col.record(wait + 100, kNoTime, kSrcNone, 99));
  CHECK(rig.run(wait + 100, wait + 110) == std::vector<uint32_t>({30}));
  // After progress the next window starts from the new oldest record.
  rig.ack(11, wait + 200);
  uint32_t t = wait + 200, w2 = rig.col.resend_wait();
  CHECK(rig.col.resend_timeout() == 5000);
  CHECK(rig.run(t, t + w2).empty());
  again = rig.run(t + w2, t + w2 + 100);
  REQUIRE(again.size() == IOTGW_RESEND_WINDOW);
  CHECK(again[0] == 12);
}

TEST_CASE("resend window: a reconnect resends one window at once, then only records never sent") {
  ResendRig rig(5, 20);
  rig.link.up = false;
  rig.col.poll(100);
  REQUIRE(rig.col.record(200, kNoTime, kSrcNone, 1));  // sampled while down: never sent
  rig.link.up = true;
  std::vector<uint32_t> again = rig.run(300, 400);
  std::vector<uint32_t> expected;
  for (uint32_t i = 0; i < IOTGW_RESEND_WINDOW; ++i) expected.push_back(i);
  expected.push_back(20);
  CHECK(again == expected);
}

TEST_CASE("resend timer: progress resets the back-off to the base") {
  ResendRig rig(9, 4);
  uint32_t t = 0;
  for (int round = 0; round < 3; ++round) {  // three expiries: T = 40 s
    t += rig.col.resend_wait();
    rig.run(t, t + 10);
  }
  CHECK(rig.col.resend_timeout() == 40000);
  rig.ack(0, t + 20);
  CHECK(rig.col.resend_timeout() == 5000);
  CHECK(rig.col.resend_wait() <= 5000);
  // A repeated ack (no progress) does not reset it.
  t += 20 + rig.col.resend_wait();
  rig.run(t - rig.col.resend_wait(), t + 10);
  CHECK(rig.col.resend_timeout() == 10000);
  rig.ack(0, t + 20);
  CHECK(rig.col.resend_timeout() == 10000);
}

TEST_CASE("resend timer vectors: the same rounds, seqs, timeouts and waits as the MicroPython port") {
  jm::Value v = vectors("resend_timer.json");
  REQUIRE(v["window"].u64() == IOTGW_RESEND_WINDOW);
  REQUIRE(v["cap_ms"].u64() == IOTGW_RESEND_CAP_MS);
  const uint32_t poll_ms = (uint32_t)v["poll_ms"].u64();
  for (auto& c : v["cases"].items) {
    CAPTURE(c["name"].str());
    RamStorage mem(RecordLog::kMetaBytes + 40 * kRecordSize);
    NodeConfig cfg = {"ft-1", "a", "V"};
    FakeLink link;
    RecordLog log(mem, 0, mem.size());
    Collector col(cfg, log, link, nullptr, (uint32_t)v["base_ms"].u64());
    col.begin(1, 0);
    col.seed_jitter((uint32_t)c["seed"].u64());
    std::set<uint32_t> sent;
    struct Round {
      uint32_t t, timeout, wait;
      std::vector<uint32_t> seqs;
    };
    std::vector<Round> rounds;
    uint32_t last_resend = 0;
    for (uint32_t now = 0; now < (uint32_t)c["end_ms"].u64(); now += poll_ms) {
      for (auto& ev : c["events"].items) {
        if (ev["t"].u64() != now) continue;
        if (ev.has("record"))
          for (unsigned long long i = 0; i < ev["record"].u64(); ++i) REQUIRE(col.record(now, kNoTime, kSrcNone, 0));
        if (ev.has("ack")) {
          Ack a = {"ft-1", 4, "a", 1, 1, (uint32_t)ev["ack"].u64(), kNoTime};
          col.on_ack(a, now);
        }
      }
      size_t before = link.sent.size();
      col.poll(now);
      for (size_t i = before; i < link.sent.size(); ++i) {
        uint32_t seq = link.sent[i].r.seq;
        if (!sent.insert(seq).second) {  // sent before: a resend; a new round after a quiet second
          if (rounds.empty() || now - last_resend >= 1000)
            rounds.push_back({now, col.resend_timeout(), col.resend_wait(), {}});
          rounds.back().seqs.push_back(seq);
          last_resend = now;
        }
      }
    }
    const jm::Value& want = c["rounds"];
    REQUIRE(rounds.size() == want.size());
    for (size_t i = 0; i < rounds.size(); ++i) {
      CAPTURE(i);
      CHECK(rounds[i].t == want[i]["t"].u64());
      CHECK(rounds[i].timeout == want[i]["timeout_ms"].u64());
      CHECK(rounds[i].wait == want[i]["wait_ms"].u64());
      std::vector<uint32_t> seqs;
      for (auto& s : want[i]["seqs"].items) seqs.push_back((uint32_t)s.u64());
      CHECK(rounds[i].seqs == seqs);
    }
  }
}

TEST_CASE("end to end over a lossy line: every reading is held exactly once, the cache drains") {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    std::srand(seed);
    RamStorage mem(RecordLog::kMetaBytes + 10 * kRecordSize);
    NodeConfig cfg = {"ft-1", "a", "V"};
    FakeLink link;
    RecordLog log(mem, 0, mem.size());
    Collector col(cfg, log, link, nullptr, 5000);
    col.begin(1, 0);
    GatewayModel gw;
    uint32_t recorded = 0;
    size_t delivered = 0;
    for (uint32_t now = 0; now < 200000; now += 10) {
      if (now % 1000 == 0 && now < 100000 && col.record(now, kNoTime, kSrcNone, 0)) ++recorded;
      col.poll(now);
      for (; delivered < link.sent.size(); ++delivered) {
        if (std::rand() % 4 == 0) continue;  // a quarter of the readings are lost on the way
        long long upto = gw.arrive(link.sent[delivered].r.seq);
        if (upto >= 0 && std::rand() % 3) {  // and a third of the acks
          Ack a = {"ft-1", 4, "a", 1, 1, (uint32_t)upto, kNoTime};
          col.on_ack(a, now);
        }
      }
    }
    CHECK(recorded + col.dropped() == 100);
    CHECK(gw.held.size() == recorded);
    CHECK(gw.upto == (long long)recorded - 1);
    CHECK(col.cached() == 0);
  }
}

TEST_CASE("a failed broker connection moves to the next broker, wrapping around; one broker stays") {
  BrokerChoice two(2);
  CHECK(two.current() == 0);
  two.failed();
  CHECK(two.current() == 1);
  two.failed();
  CHECK(two.current() == 0);
  CHECK(two.switches() == 2);
  BrokerChoice one(1);
  one.failed();
  CHECK(one.current() == 0);
  CHECK(one.switches() == 0);
  BrokerChoice none(0);  // treated as one broker
  none.failed();
  CHECK(none.current() == 0);
  CHECK(none.count() == 1);
}
