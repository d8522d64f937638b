// probe: a tiny sketch that exercises every harness feature the rig relies on.
// Console lines (115200 baud):
//   "probe boot=<n>"            at start; n is a boot counter kept in EEPROM byte 0
//   "rtc <unix s> ch=<0|1>"     the DS1307 time, every 500 ms
//   "adc <raw>"                 analogRead(A0), every 500 ms
//   "echo <line>"               every line received
//   "wrote <n>"                 after "w <n>": n EEPROM bytes written at 16.. (value = index)
#include <Arduino.h>
#include <EEPROM.h>
#include <Wire.h>

static char buf[64];
static uint8_t len;
static unsigned long last;

static uint8_t unbcd(uint8_t v) { return (v >> 4) * 10 + (v & 0x0F); }

static unsigned long days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  long era = y / 400;
  long yoe = y - era * 400;
  long doy = (153L * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097L + doe - 719468L;
}

static void print_rtc() {
  Wire.beginTransmission(0x68);
  Wire.write((uint8_t)0);
  if (Wire.endTransmission() != 0) { Serial.println(F("rtc error")); return; }
  if (Wire.requestFrom((uint8_t)0x68, (uint8_t)7) != 7) { Serial.println(F("rtc short")); return; }
  uint8_t r[7];
  for (uint8_t i = 0; i < 7; i++) r[i] = Wire.read();
  unsigned long days = days_from_civil(2000 + unbcd(r[6]), unbcd(r[5]), unbcd(r[4]));
  unsigned long s = days * 86400UL + unbcd(r[2] & 0x3F) * 3600UL + unbcd(r[1]) * 60UL + unbcd(r[0] & 0x7F);
  Serial.print(F("rtc "));
  Serial.print(s);
  Serial.print(F(" ch="));
  Serial.println((r[0] & 0x80) ? 1 : 0);
}

void setup() {
  Serial.begin(115200);
  Wire.begin();
  uint8_t boot = EEPROM.read(0) + 1;
  EEPROM.write(0, boot);
  Serial.print(F("probe boot="));
  Serial.println(boot);
}

void loop() {
  while (Serial.available()) {
    char c = Serial.read();
    if (c == '\n' || c == '\r') {
      if (!len) continue;
      buf[len] = 0;
      Serial.print(F("echo "));
      Serial.println(buf);
      if (buf[0] == 'w' && buf[1] == ' ') {
        int n = atoi(buf + 2);
        for (int i = 0; i < n; i++) EEPROM.write(16 + i, (uint8_t)i);
        Serial.print(F("wrote "));
        Serial.println(n);
      }
      len = 0;
    } else if (len < sizeof(buf) - 1) {
      buf[len++] = c;
    }
  }
  if (millis() - last >= 500) {
    last += 500;
    print_rtc();
    Serial.print(F("adc "));
    Serial.println(analogRead(A0));
  }
}
