// String literals kept in program memory on AVR (where plain literals are copied into the 2 KB of
// RAM at start), ordinary literals elsewhere. avr-libc's pgmspace is not an Arduino header, so the
// core stays portable: on the host IOTGW_TEXT("x") is just "x".
#ifndef IOTGW_FLASH_TEXT_H
#define IOTGW_FLASH_TEXT_H

namespace iotgw {
class FlashText;  // never defined: only pointers to it exist, so flash and RAM strings cannot be mixed up
}

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define IOTGW_TEXT(s) (reinterpret_cast<const ::iotgw::FlashText*>(PSTR(s)))
#define IOTGW_TEXT_BYTE(p) ((char)pgm_read_byte(p))
#else
#define IOTGW_TEXT(s) (reinterpret_cast<const ::iotgw::FlashText*>(s))
#define IOTGW_TEXT_BYTE(p) (*(p))
#endif

#endif
