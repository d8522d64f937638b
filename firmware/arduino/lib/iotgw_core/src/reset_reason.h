// Why the board (re)started, as the status reports it (protocol section 6: power|wdt|ext|brownout|soft|unknown).
#ifndef IOTGW_RESET_REASON_H
#define IOTGW_RESET_REASON_H

#include <stdint.h>

#include "flash_text.h"

namespace iotgw {

enum ResetReason : uint8_t { kResetUnknown, kResetPower, kResetWatchdog, kResetExternal, kResetBrownout, kResetSoft };

// From the AVR's MCUSR flags (PORF bit 0, EXTRF 1, BORF 2, WDRF 3; several may be set, power-on wins
// because it implies the others). 0 means a jump to the reset vector (a soft reset) when the flags
// are read before anything cleared them; with a bootloader that cleared them and passed nothing on,
// the caller passes `known = false` and gets unknown.
ResetReason reset_from_avr_flags(uint8_t mcusr, bool known = true);
const FlashText* reset_name(ResetReason r);

}  // namespace iotgw

#endif
