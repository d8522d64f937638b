#include "ds1307.h"

namespace iotgw {

namespace {

bool from_bcd(uint8_t b, uint8_t lo, uint8_t hi, uint8_t* out) {
  if ((b & 0x0F) > 9 || (b >> 4) > 9) return false;
  uint8_t v = (uint8_t)((b >> 4) * 10 + (b & 0x0F));
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

uint8_t to_bcd(uint8_t v) { return (uint8_t)(((v / 10) << 4) | (v % 10)); }

uint8_t days_in_month(int16_t y, uint8_t m) {
  static const uint8_t kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return (uint8_t)(kDays[m - 1] + (m == 2 && leap));
}

}  // namespace

// Howard Hinnant's days_from_civil, in 32-bit arithmetic.
int32_t days_from_civil(int16_t y, uint8_t m, uint8_t d) {
  y -= m <= 2;
  int32_t era = (y >= 0 ? y : y - 399) / 400;
  uint32_t yoe = (uint32_t)(y - era * 400);
  uint32_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  uint32_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int32_t)doe - 719468;
}

void civil_from_days(int32_t z, int16_t* y, uint8_t* m, uint8_t* d) {
  z += 719468;
  int32_t era = (z >= 0 ? z : z - 146096) / 146097;
  uint32_t doe = (uint32_t)(z - era * 146097);
  uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  uint32_t mp = (5 * doy + 2) / 153;
  *d = (uint8_t)(doy - (153 * mp + 2) / 5 + 1);
  *m = (uint8_t)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int16_t)((int32_t)yoe + era * 400 + (*m <= 2));
}

bool ds1307_decode(const uint8_t regs[7], Ds1307Time* out) {
  uint8_t sec, min, hour, date, month, year;
  if (!from_bcd(regs[0] & 0x7F, 0, 59, &sec) || !from_bcd(regs[1], 0, 59, &min)) return false;
  bool twelve = regs[2] & 0x40;
  if (twelve) {
    if (!from_bcd(regs[2] & 0x1F, 1, 12, &hour)) return false;
    hour = (uint8_t)(hour % 12 + ((regs[2] & 0x20) ? 12 : 0));  // 12 AM is 0 h, 12 PM is 12 h
  } else if (!from_bcd(regs[2] & 0x3F, 0, 23, &hour)) {
    return false;
  }
  if (!from_bcd(regs[4], 1, 31, &date) || !from_bcd(regs[5], 1, 12, &month) || !from_bcd(regs[6], 0, 99, &year))
    return false;
  if (date > days_in_month((int16_t)(2000 + year), month)) return false;
  int32_t days = days_from_civil((int16_t)(2000 + year), month, date);
  out->unix = (uint32_t)days * 86400UL + hour * 3600UL + min * 60UL + sec;
  out->halted = regs[0] & 0x80;
  out->twelve_hour = twelve;
  return true;
}

bool ds1307_encode(uint32_t unix, uint8_t regs[7]) {
  if (unix < kUnix2000 || unix > 4102444799UL) return false;  // the chip holds 2000-2099 only
  int32_t days = (int32_t)(unix / 86400UL);
  uint32_t secs = unix % 86400UL;
  int16_t y;
  uint8_t m, d;
  civil_from_days(days, &y, &m, &d);
  regs[0] = to_bcd((uint8_t)(secs % 60));  // CH bit clear
  regs[1] = to_bcd((uint8_t)(secs / 60 % 60));
  regs[2] = to_bcd((uint8_t)(secs / 3600));  // 24-hour mode
  regs[3] = (uint8_t)((days + 4) % 7 + 1);  // 1970-01-01 was a Thursday (5 with Sunday = 1)
  regs[4] = to_bcd(d);
  regs[5] = to_bcd(m);
  regs[6] = to_bcd((uint8_t)(y - 2000));
  return true;
}

bool ds1307_time_valid(const Ds1307Time& t) { return !t.halted && t.unix >= kUnix2001; }

}  // namespace iotgw
