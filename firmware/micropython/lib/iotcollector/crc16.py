"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR), protocol sections 4 and 8."""


def crc16(data, crc: int = 0xFFFF) -> int:
    """CRC of ``data`` (bytes, bytearray or memoryview); pass ``crc`` to continue a running CRC."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc
