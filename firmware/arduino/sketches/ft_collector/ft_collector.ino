// Fault-tolerant data collector: samples the ADC, stamps each sample with the DS1307,
// keeps it in a power-loss-safe cache until the gateway acknowledges it end to end, resends after
// the ack timeout, and sets a clock that lost its time from the gateway's ack.
// All logic lives in the portable core (lib/iotgw_core); this file wires it to the board.
#include <Arduino.h>
#include <Wire.h>

#include "iotgw_board.h"
#include "iotgw_watchdog.h"
#include "ds1307_wire.h"
#if defined(IOTGW_WITH_SD)
#include "sd_storage.h"
#endif
#if defined(IOTGW_WITH_MQTT)
#include <Ethernet.h>
#include "mqtt_link.h"
#endif

using namespace iotgw;

static const NodeConfig kNode = {IOTGW_DEVICE, IOTGW_NODE, IOTGW_UNIT};
static_assert(config_ok(IOTGW_DEVICE, IOTGW_NODE, IOTGW_UNIT),
              "IOTGW_DEVICE/IOTGW_NODE: 1-32/1-16 of [A-Za-z0-9_-]; IOTGW_UNIT: 1-16 printable, no quote or "
              "backslash; together short enough for a 192-byte reading (protocol.md sections 2-3)");

static PrintOut console(Serial);
static EepromStorage eeprom;
static WireRtcBus rtc_bus;
static RtcClock rtc(rtc_bus);
static Blinker led;
static Periodic sampler;

#if defined(IOTGW_WITH_SD)
static SdStorage cache_storage;
static RecordLog cache(cache_storage, 0, IOTGW_SD_BYTES);
#else
static RecordLog cache(eeprom, IOTGW_EEPROM_BASE + kBootCounterBytes,
                       IOTGW_EEPROM_CACHE_BYTES ? IOTGW_EEPROM_CACHE_BYTES
                                                : E2END + 1 - IOTGW_EEPROM_BASE - kBootCounterBytes);
#endif

#if defined(IOTGW_WITH_MQTT)
static EthernetClient eth;
static PubSubClient mqtt(eth);
static MqttLink link(mqtt, kNode);
// The brokers (IOTGW_MQTT_HOST, and IOTGW_MQTT_HOST2 when set): a failed connection moves to the other.
static const uint8_t kBrokerIp[][4] = {{IOTGW_MQTT_HOST}
#if defined(IOTGW_MQTT_HOST2)
                                       , {IOTGW_MQTT_HOST2}
#endif
};
static const uint16_t kBrokerPort[] = {IOTGW_MQTT_PORT
#if defined(IOTGW_MQTT_HOST2)
                                       , IOTGW_MQTT_PORT2
#endif
};
static BrokerChoice brokers(sizeof kBrokerPort / sizeof kBrokerPort[0]);
static void use_broker() {
  const uint8_t* ip = kBrokerIp[brokers.current()];
  mqtt.setServer(IPAddress(ip[0], ip[1], ip[2], ip[3]), kBrokerPort[brokers.current()]);
}
#else
static SerialLink link(console);
// Sized by the protocol: the longest ack this node can get (section 5), whatever its names.
static AckReader<ack_line_capacity(IOTGW_DEVICE, IOTGW_NODE)> acks;
static_assert(ack_line_capacity(IOTGW_DEVICE, IOTGW_NODE) <= kMaxLine, "an ack line is at most 256 bytes");
#endif

static Collector collector(kNode, cache, link, &console, IOTGW_ACK_TIMEOUT_MS, IOTGW_PERSIST_AFTER_MS);

static Periodic status_timer;
static uint8_t clock_src = kSrcNone;  // the source of the last time read from the RTC

// The status of protocol section 6. store_err: the boot counter's EEPROM and the cache's storage.
static Status status() {
  uint32_t store_err = eeprom.errors;
#if defined(IOTGW_WITH_SD)
  store_err += cache_storage.errors;
#endif
  ClockState clock = clock_src == kSrcNone ? kClockNone : rtc.valid() ? kClockRtc : kClockLost;
  Status st = {collector.boot(), kRoleSingle, collector.cached(), collector.capacity(), collector.dropped(),
               last_reset(), store_err, clock, IOTGW_SAMPLE_MS};
  return st;
}

static void send_status() {
#if defined(IOTGW_WITH_MQTT)
  if (mqtt.connected()) link.send_status(status());
#else
  link.send_status(kNode, status());
#endif
}

static void apply_ack(const Ack& ack) {
  collector.on_ack(ack, millis());
  if (ack_names(ack, kNode) && rtc.set_if_lost(ack.t)) {
    console.str(IOTGW_TEXT("rtc set t="));
    console.i64(ack.t);
    console.nl();
  }
}

#if defined(IOTGW_WITH_MQTT)
static void on_mqtt(char* topic, uint8_t* payload, unsigned int len) {
  Ack ack;
  if (link.ack_from(topic, payload, len, &ack)) apply_ack(ack);
}
#endif

void setup() {
  pinMode(IOTGW_LED_PIN, OUTPUT);
  Serial.begin(IOTGW_BAUD);
  Wire.begin();
  Wire.setWireTimeout(IOTGW_I2C_TIMEOUT_US, true);  // a stuck bus must not stop the loop
  console.str(IOTGW_TEXT("iotgw ft_collector dev=" IOTGW_DEVICE " node=" IOTGW_NODE "\n"));
  // A blank EEPROM starts the boot counter from the clock (or noise), not at 1 (docs/firmware.md).
  int64_t ts0;
  uint8_t src0;
  rtc.now(&ts0, &src0);
  uint32_t rtc_s = src0 != kSrcNone && rtc.valid() ? (uint32_t)(ts0 / 1000) : 0;
  uint32_t boot = next_boot(eeprom, IOTGW_EEPROM_BASE, fresh_boot(rtc_s, noise_word()));
  console.str(IOTGW_TEXT("boot "));
  console.u32(boot);
  console.nl();
  console.str(IOTGW_TEXT("reset "));
  console.str(reset_name(last_reset()));
  console.nl();
#if defined(IOTGW_WITH_SD)
  // The shield's W5100 shares the SPI bus: deselect it (pin 10 high) before the card starts, or both
  // answer. On a Mega the hardware SS (53) must also be an output for SPI to stay master.
  pinMode(IOTGW_W5100_CS_PIN, OUTPUT);
  digitalWrite(IOTGW_W5100_CS_PIN, HIGH);
#if defined(__AVR_ATmega2560__)
  pinMode(53, OUTPUT);
#endif
  if (!cache_storage.begin(IOTGW_SD_CS_PIN, IOTGW_SD_FILE, IOTGW_SD_BYTES)) console.str(IOTGW_TEXT("sd failed\n"));
#endif
#if defined(IOTGW_WITH_MQTT)
  static const uint8_t kMac[] = {IOTGW_MAC};
  Ethernet.begin(const_cast<uint8_t*>(kMac));
  use_broker();
  // Well inside the 8 s watchdog: PubSubClient waits 15 s for a broker's answer by default, which would
  // reset the board on a slow or silent broker instead of reporting "mqtt down".
  mqtt.setSocketTimeout(4);
  eth.setConnectionTimeout(2000);
  mqtt.setCallback(on_mqtt);
  link.begin();
#endif
  int64_t ts;
  rtc.now(&ts, &clock_src);
  console.str(clock_src == kSrcNone ? IOTGW_TEXT("rtc missing\n") : rtc.valid() ? IOTGW_TEXT("rtc ok\n") : IOTGW_TEXT("rtc unset\n"));
  collector.begin(boot, millis());
  console.str(IOTGW_TEXT("role single\n"));
  send_status();  // over MQTT: at every connect
  sampler.start(millis(), IOTGW_SAMPLE_MS, true);
  status_timer.start(millis(), IOTGW_STATUS_MS, false);
  watchdog_start();
}

void loop() {
  // Inputs first (acks restart the ack timer with millis()), then `now` for everything after them.
#if defined(IOTGW_WITH_MQTT)
  static Periodic reconnect;
  if (!mqtt.connected() && reconnect.due(millis())) {
    reconnect.start(millis(), 5000, false);
    if (link.connect(status())) {
      console.str(IOTGW_TEXT("mqtt connected\n"));
    } else {
      console.str(IOTGW_TEXT("mqtt down\n"));
      brokers.failed();  // the next attempt goes to the other broker, if there is one
      use_broker();
    }
  }
  mqtt.loop();
#else
  Ack ack;
  if (acks.poll(Serial, &ack)) apply_ack(ack);
#endif
  uint32_t now = millis();
  if (sampler.due(now)) {
    int64_t ts;
    rtc.now(&ts, &clock_src);
    int32_t mv = (int32_t)analogRead(IOTGW_ADC_PIN) * IOTGW_ADC_REF_MV / 1023;
    collector.record(now, ts, clock_src, mv);  // millivolts are thousandths of the unit V
  }
  collector.poll(now);
  if (status_timer.due(now)) send_status();
  static uint32_t recorded = 0;
  if (collector.next_seq() != recorded) {  // blink once per recorded sample
    recorded = collector.next_seq();
    led.pulse(now, IOTGW_LED_MS);
  }
  digitalWrite(IOTGW_LED_PIN, led.update(now) ? HIGH : LOW);
  watchdog_feed();  // this iteration finished: nothing hung
}
