// pair: the smallest I2C heartbeat pair, to prove the harness's TWI bridge.
// Built twice: -DPAIR_MASTER (sends a heartbeat to address 8 every 200 ms and prints
// "hb sent <n> rc=<endTransmission result>") and without it (slave at address 8:
// prints "hb got <n>", and "takeover" once no heartbeat came for 1000 ms, "handback"
// when they resume).
#include <Arduino.h>
#include <Wire.h>

#ifdef PAIR_MASTER
static unsigned long last;
static uint8_t n;
void setup() {
  Serial.begin(115200);
  Wire.begin();
  Serial.println(F("pair master"));
}
void loop() {
  if (millis() - last >= 200) {
    last = millis();
    Wire.beginTransmission(8);
    Wire.write(n);
    uint8_t rc = Wire.endTransmission();
    Serial.print(F("hb sent "));
    Serial.print(n++);
    Serial.print(F(" rc="));
    Serial.println(rc);
  }
}
#else
static volatile bool got;
static volatile uint8_t value;
static unsigned long last_hb;
static bool active;
static void on_receive(int count) {
  while (Wire.available()) value = Wire.read();
  got = true;
}
void setup() {
  Serial.begin(115200);
  Wire.begin(8);
  Wire.onReceive(on_receive);
  last_hb = millis();
  Serial.println(F("pair slave"));
}
void loop() {
  if (got) {
    got = false;
    last_hb = millis();
    Serial.print(F("hb got "));
    Serial.println(value);
    if (active) { active = false; Serial.println(F("handback")); }
  }
  if (!active && millis() - last_hb >= 1000) {
    active = true;
    Serial.println(F("takeover"));
  }
}
#endif
