"""Read the collector's cache records out of an EEPROM image (protocol.md section 8).

``A5 | len | body | CRC-16/CCITT-FALSE over len and body (big-endian)``, body little-endian:
boot u32, seq u32, ts i64 (ms, -1 for none), src u8, val i32 (thousandths). The scan looks for every
whole record anywhere in the image, so it needs no knowledge of the firmware's EEPROM layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.protocol import crc16_ccitt_false

__all__ = ["CachedRecord", "scan_records"]

BODY = struct.Struct("<IIqBi")


@dataclass(frozen=True)
class CachedRecord:
    offset: int
    boot: int
    seq: int
    ts: int | None
    src: int
    val_milli: int


def scan_records(image: bytes) -> list[CachedRecord]:
    """Every whole record (marker, length 21, matching CRC) in ``image``, in address order."""
    out = []
    i = 0
    while i + 2 + BODY.size + 2 <= len(image):
        if image[i] == 0xA5 and image[i + 1] == BODY.size:
            end = i + 2 + BODY.size
            if crc16_ccitt_false(image[i + 1:end]) == int.from_bytes(image[end:end + 2], "big"):
                boot, seq, ts, src, val = BODY.unpack(image[i + 2:end])
                out.append(CachedRecord(i, boot, seq, None if ts == -1 else ts, src, val))
                i = end + 2
                continue
        i += 1
    return out
