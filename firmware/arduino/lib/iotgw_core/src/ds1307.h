// DS1307 register codec (protocol section 7): registers 0x00-0x06 <-> Unix time, no I2C here.
#ifndef IOTGW_DS1307_H
#define IOTGW_DS1307_H

#include <stdint.h>

namespace iotgw {

const uint8_t kDs1307Address = 0x68;
const uint32_t kUnix2000 = 946684800UL;   // 2000-01-01T00:00:00Z, what a reset DS1307 reads
const uint32_t kUnix2001 = 978307200UL;   // protocol: earlier than this is an unset clock

struct Ds1307Time {
  uint32_t unix;     // seconds since 1970
  bool halted;       // CH bit: oscillator stopped, time not valid
  bool twelve_hour;  // register 2 bit 6
};

// False when a field is not valid BCD or out of range (a missing or broken chip reads as garbage).
bool ds1307_decode(const uint8_t regs[7], Ds1307Time* out);
// 24-hour mode, CH clear (writing starts the oscillator), day of week 1 = Sunday. Years 2000-2099.
bool ds1307_encode(uint32_t unix, uint8_t regs[7]);
// Whether the time may be used as is: running and not before 2001 (section 5: otherwise set it from an ack).
bool ds1307_time_valid(const Ds1307Time& t);

// Civil date helpers (proleptic Gregorian, days since 1970-01-01), exposed for tests.
int32_t days_from_civil(int16_t y, uint8_t m, uint8_t d);
void civil_from_days(int32_t z, int16_t* y, uint8_t* m, uint8_t* d);

}  // namespace iotgw

#endif
