// Redundant data collector pair. One source for both
// boards: build with -DSLAVE (or -DIOTGW_SECONDARY) for the secondary, without for the primary.
// The primary writes a heartbeat to the secondary's I2C address every IOTGW_HEARTBEAT_MS; the secondary
// takes over when an active primary has been silent for IOTGW_TIMEOUT_MS and hands back after
// IOTGW_HANDBACK_BEATS consecutive heartbeats. The active node samples and sends readings.
// Readings: by default each is framed and sent once (the pair's guarantee is time coverage, and an Uno
// node must fit 8 KB); with -DIOTGW_PAIR_CACHE=1 each node keeps them in its EEPROM cache until the
// gateway acknowledges them, like ft_collector (about 15 KB). Logic: lib/iotgw_core (pair.h).
#define IOTGW_PAIR 1  // defaults of a pair node (device pair-1, node a or b) in iotgw_config.h

#include <Arduino.h>
#include <Wire.h>

#include "iotgw_board.h"
#include "iotgw_watchdog.h"

#ifndef IOTGW_PAIR_CACHE
#define IOTGW_PAIR_CACHE 0
#endif

using namespace iotgw;

static const NodeConfig kNode = {IOTGW_DEVICE, IOTGW_NODE, IOTGW_UNIT};
static_assert(config_ok(IOTGW_DEVICE, IOTGW_NODE, IOTGW_UNIT),
              "IOTGW_DEVICE/IOTGW_NODE: 1-32/1-16 of [A-Za-z0-9_-]; IOTGW_UNIT: 1-16 printable, no quote or "
              "backslash; together short enough for a 192-byte reading (protocol.md sections 2-3)");
static const PairConfig kPairConfig = {IOTGW_HEARTBEAT_MS, IOTGW_TIMEOUT_MS, IOTGW_HANDBACK_BEATS};

static PrintOut console(Serial);
static EepromStorage eeprom;
static SerialLink link(console);
static Blinker led;
static Periodic sampler;
static Role shown_role = kRoleSingle;

#if IOTGW_PAIR_CACHE
static RecordLog cache(eeprom, IOTGW_EEPROM_BASE + kBootCounterBytes,
                       IOTGW_EEPROM_CACHE_BYTES ? IOTGW_EEPROM_CACHE_BYTES
                                                : E2END + 1 - IOTGW_EEPROM_BASE - kBootCounterBytes);
static Collector collector(kNode, cache, link, &console, IOTGW_ACK_TIMEOUT_MS, IOTGW_PERSIST_AFTER_MS);
// Sized by the protocol: the longest ack this node can get (section 5), whatever its names.
static AckReader<ack_line_capacity(IOTGW_DEVICE, IOTGW_NODE)> acks;
static_assert(ack_line_capacity(IOTGW_DEVICE, IOTGW_NODE) <= kMaxLine, "an ack line is at most 256 bytes");
static Status status(Role role) {
  Status st = {collector.boot(), role,        collector.cached(), collector.capacity(), collector.dropped(),
               last_reset(),     eeprom.errors, kClockNone,        IOTGW_SAMPLE_MS};
  return st;
}
#else
static uint32_t boot = 0;
static uint32_t seq = 0;
// No cache: nothing cached, no capacity, nothing dropped (a reading goes out at once or not at all).
static Status status(Role role) {
  Status st = {boot, role, 0, 0, 0, last_reset(), eeprom.errors, kClockNone, IOTGW_SAMPLE_MS};
  return st;
}
#endif
static Periodic status_timer;

#if defined(IOTGW_SECONDARY)
static SecondaryNode pair(kPairConfig);
// Filled by the I2C receive interrupt, consumed by loop(): the heartbeat write (register 0 + frame).
static volatile uint8_t rx_beat[kHeartbeatWriteLen];
static volatile uint8_t rx_len = 0;
static volatile uint32_t rx_at = 0;
static volatile bool rx_ready = false;
static volatile uint8_t reply_role = 0;  // register 3: what a primary reading back gets (0 standby, 1 active)

static void on_receive(int n) {
  uint8_t len = 0;
  while (Wire.available()) {
    uint8_t b = (uint8_t)Wire.read();
    if (len < kHeartbeatWriteLen) rx_beat[len] = b;
    ++len;
  }
  if (len == 1) return;  // a register pointer for the read that follows, not a beat
  rx_len = len;
  rx_at = millis();
  rx_ready = true;
  (void)n;
}

static void on_request() { Wire.write(reply_role); }
#else
static PrimaryNode pair(kPairConfig);
static bool bus_ok = true;
#endif

static void show_role(uint32_t now) {
  Role role = pair.role();
  if (role == shown_role) return;
  shown_role = role;
  console.str(role == kRoleActive ? IOTGW_TEXT("role active\n") : IOTGW_TEXT("role standby\n"));
  link.send_status(kNode, status(role));
  if (role == kRoleActive) sampler.start(now, IOTGW_SAMPLE_MS, true);  // first reading at once
}

void setup() {
  pinMode(IOTGW_LED_PIN, OUTPUT);
  Serial.begin(IOTGW_BAUD);
#if defined(IOTGW_SECONDARY)
  Wire.begin((uint8_t)IOTGW_I2C_ADDR);
  Wire.setWireTimeout(IOTGW_I2C_TIMEOUT_US, true);
  Wire.onReceive(on_receive);
  Wire.onRequest(on_request);
  console.str(IOTGW_TEXT("iotgw redundant_collector secondary dev=" IOTGW_DEVICE " node=" IOTGW_NODE "\n"));
#else
  Wire.begin();
  Wire.setWireTimeout(IOTGW_I2C_TIMEOUT_US, true);  // a stuck bus must not stop the loop
  console.str(IOTGW_TEXT("iotgw redundant_collector primary dev=" IOTGW_DEVICE " node=" IOTGW_NODE "\n"));
#endif
  uint32_t b = next_boot(eeprom, IOTGW_EEPROM_BASE, fresh_boot(0, noise_word()));
  console.str(IOTGW_TEXT("boot "));
  console.u32(b);
  console.nl();
  console.str(IOTGW_TEXT("reset "));
  console.str(reset_name(last_reset()));
  console.nl();
  uint32_t now = millis();
#if IOTGW_PAIR_CACHE
  collector.begin(b, now);
#else
  boot = b;
#endif
  pair.begin(now);
  show_role(now);
  status_timer.start(now, IOTGW_STATUS_MS, false);
  watchdog_start();
}

void loop() {
#if defined(IOTGW_SECONDARY)
  if (rx_ready) {
    uint8_t data[kHeartbeatWriteLen];
    noInterrupts();
    uint8_t len = rx_len;
    uint32_t at = rx_at;
    for (uint8_t i = 0; i < kHeartbeatWriteLen; ++i) data[i] = rx_beat[i];
    rx_ready = false;
    interrupts();
    Heartbeat hb;
    if (decode_heartbeat_write(data, len, &hb)) {
      pair.on_heartbeat(at, hb);
      led.pulse(at, IOTGW_LED_MS);
    }
  }
  uint32_t now = millis();  // read after the beat's timestamp, never before it
  pair.poll(now);
  reply_role = pair.role() == kRoleActive ? 1 : 0;
#else
  uint32_t now = millis();
  Heartbeat hb;
  if (pair.poll(now, &hb)) {
    uint8_t data[kHeartbeatWriteLen];
    encode_heartbeat_write(hb, data);
    Wire.beginTransmission((uint8_t)IOTGW_I2C_ADDR);
    Wire.write(data, kHeartbeatWriteLen);
    bool ok = Wire.endTransmission() == 0;
    if (ok != bus_ok) console.str(ok ? IOTGW_TEXT("heartbeat acked\n") : IOTGW_TEXT("heartbeat not acked\n"));  // changes only
    bus_ok = ok;
    led.pulse(now, IOTGW_LED_MS);
  }
#endif
  show_role(now);
  if (status_timer.due(now)) link.send_status(kNode, status(pair.role()));

  if (pair.role() == kRoleActive && sampler.due(now)) {
    int32_t mv = (int32_t)analogRead(IOTGW_ADC_PIN) * IOTGW_ADC_REF_MV / 1023;
    // No RTC on the pair: ts is null and the gateway records its receive time.
#if IOTGW_PAIR_CACHE
    collector.record(now, kNoTime, kSrcNone, mv);
#else
    Record r = {boot, seq++, kNoTime, kSrcNone, mv};
    link.send_reading(kNode, r, false);
#endif
  }
#if IOTGW_PAIR_CACHE
  Ack ack;
  if (acks.poll(Serial, &ack)) collector.on_ack(ack, now);
  collector.poll(now);  // the standby node still drains what it cached while active
#endif
  digitalWrite(IOTGW_LED_PIN, led.update(now) ? HIGH : LOW);
  watchdog_feed();  // this iteration finished: nothing hung
}
