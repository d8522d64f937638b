#include "crc16.h"

namespace iotgw {

uint16_t crc16_update(uint16_t crc, uint8_t byte) {
  // Bitwise, no table: 512 bytes of table would not fit the RAM budget of a small board.
  crc ^= (uint16_t)((uint16_t)byte << 8);
  for (uint8_t i = 0; i < 8; ++i) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  return crc;
}

uint16_t crc16(const void* data, size_t n, uint16_t crc) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n--) crc = crc16_update(crc, *p++);
  return crc;
}

}  // namespace iotgw
