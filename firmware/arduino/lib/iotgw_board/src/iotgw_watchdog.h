// The AVR watchdog (8 s) and the reason of the last reset. Include from exactly one file (the sketch):
// it places a function in the start-up code.
//
// After a watchdog reset the watchdog stays enabled with its shortest period (about 15 ms), so it must
// be turned off before the C runtime's initialisation, or a long one would reset the board again:
// `iotgw_capture_reset` runs in .init3 (before the constructors), saves MCUSR and clears it. With a
// bootloader that cleared MCUSR itself (optiboot 8 passes the flags in r2), r2 is used instead.
#ifndef IOTGW_WATCHDOG_H
#define IOTGW_WATCHDOG_H

#include <avr/io.h>
#include <avr/wdt.h>

#include "iotgw.h"

namespace iotgw {

uint8_t g_reset_flags __attribute__((section(".noinit")));
bool g_reset_flags_known __attribute__((section(".noinit")));

extern "C" void iotgw_capture_reset(void) __attribute__((naked, used, section(".init3")));
extern "C" void iotgw_capture_reset(void) {
  uint8_t from_bootloader;
  __asm__ __volatile__("mov %0, r2" : "=r"(from_bootloader));
  uint8_t flags = MCUSR;
  MCUSR = 0;
  wdt_disable();
  g_reset_flags_known = flags != 0 || (from_bootloader & 0x0F) != 0;
  g_reset_flags = flags ? flags : (uint8_t)(from_bootloader & 0x0F);
}

inline ResetReason last_reset() { return reset_from_avr_flags(g_reset_flags, g_reset_flags_known); }

// Started at the end of setup(); fed at the end of each loop() iteration only, so any call that hangs
// (a bus, a card, a network stack) resets the board after 8 s and it resumes under a new boot.
inline void watchdog_start() { wdt_enable(WDTO_8S); }
inline void watchdog_feed() { wdt_reset(); }

}  // namespace iotgw

#endif
