#include "reset_reason.h"

namespace iotgw {

ResetReason reset_from_avr_flags(uint8_t mcusr, bool known) {
  if (mcusr & 0x01) return kResetPower;
  if (mcusr & 0x08) return kResetWatchdog;
  if (mcusr & 0x04) return kResetBrownout;
  if (mcusr & 0x02) return kResetExternal;
  return known ? kResetSoft : kResetUnknown;
}

const FlashText* reset_name(ResetReason r) {
  switch (r) {
    case kResetPower: return IOTGW_TEXT("power");
    case kResetWatchdog: return IOTGW_TEXT("wdt");
    case kResetExternal: return IOTGW_TEXT("ext");
    case kResetBrownout: return IOTGW_TEXT("brownout");
    case kResetSoft: return IOTGW_TEXT("soft");
    default: return IOTGW_TEXT("unknown");
  }
}

}  // namespace iotgw
