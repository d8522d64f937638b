// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR): protocol sections 4 and 8.
#ifndef IOTGW_CRC16_H
#define IOTGW_CRC16_H

#include <stddef.h>
#include <stdint.h>

namespace iotgw {

const uint16_t kCrcInit = 0xFFFF;

uint16_t crc16_update(uint16_t crc, uint8_t byte);
uint16_t crc16(const void* data, size_t n, uint16_t crc = kCrcInit);

}  // namespace iotgw

#endif
