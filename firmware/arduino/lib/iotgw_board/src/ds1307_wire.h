// The DS1307 on the I2C bus (address 0x68): registers 0x00-0x06 read and written in one transfer.
#ifndef IOTGW_DS1307_WIRE_H
#define IOTGW_DS1307_WIRE_H

#include <Wire.h>

#include "iotgw.h"

namespace iotgw {

class WireRtcBus : public RtcBus {
 public:
  bool read_regs(uint8_t regs[7]) override {
    Wire.beginTransmission(kDs1307Address);
    Wire.write((uint8_t)0);
    if (Wire.endTransmission() != 0) return false;
    if (Wire.requestFrom((uint8_t)kDs1307Address, (uint8_t)7) != 7) return false;
    for (uint8_t i = 0; i < 7; ++i) regs[i] = (uint8_t)Wire.read();
    return true;
  }
  bool write_regs(const uint8_t regs[7]) override {
    Wire.beginTransmission(kDs1307Address);
    Wire.write((uint8_t)0);
    Wire.write(regs, 7);
    return Wire.endTransmission() == 0;
  }
};

}  // namespace iotgw

#endif
