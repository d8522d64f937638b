"""DS1307 real-time clock: register codec (protocol section 7), epoch conversions, and a small driver.

Registers 0x00-0x06 are BCD seconds (bit 7 = CH, clock halt), minutes, hours (bit 6 = 12-hour mode,
bit 5 = PM), day of week (1-7, 1 = Sunday here), date, month, year 00-99 meaning 2000-2099.
Calendar arithmetic is done here (days from civil date) instead of with ``time.mktime``/``gmtime``,
because their epoch is 2000 on some MicroPython ports and 1970 on others.
"""

ADDRESS = 0x68
UNIX_2000 = 946684800  # 2000-01-01T00:00:00Z in seconds since 1970: what a reset DS1307 reads
UNIX_2001 = 978307200  # protocol: a clock before 2001-01-01 has lost its time
UNIX_2100 = 4102444800  # the DS1307's year register stops at 2099


def bcd2bin(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


def bin2bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days: int):
    """(year, month, day) of a day count since 1970-01-01."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def unix_from_epoch(seconds: int, epoch_year: int) -> int:
    """Seconds since 1970 from seconds since ``epoch_year`` (1970 or 2000, as ``time.time()`` counts per port)."""
    if epoch_year == 1970:
        return seconds
    if epoch_year == 2000:
        return seconds + UNIX_2000
    raise ValueError("epoch must be 1970 or 2000")


def epoch_from_unix(unix: int, epoch_year: int) -> int:
    """The inverse of unix_from_epoch."""
    return unix - unix_from_epoch(0, epoch_year)


def decode(regs):
    """``(unix_seconds, halted)`` from registers 0x00-0x06 (7 bytes). Reads 12- and 24-hour mode."""
    if len(regs) < 7:
        raise ValueError("need 7 registers")
    halted = bool(regs[0] & 0x80)
    sec = bcd2bin(regs[0] & 0x7F)
    minute = bcd2bin(regs[1] & 0x7F)
    hreg = regs[2]
    if hreg & 0x40:  # 12-hour mode: 12 AM is midnight, 12 PM is noon
        hour = bcd2bin(hreg & 0x1F) % 12
        if hreg & 0x20:
            hour += 12
    else:
        hour = bcd2bin(hreg & 0x3F)
    day = bcd2bin(regs[4] & 0x3F)
    month = bcd2bin(regs[5] & 0x1F)
    year = 2000 + bcd2bin(regs[6])
    days = days_from_civil(year, month, day)
    return ((days * 24 + hour) * 60 + minute) * 60 + sec, halted


def encode(unix: int) -> bytes:
    """Registers 0x00-0x06 for ``unix`` seconds, in 24-hour mode with the clock running (CH clear)."""
    if not UNIX_2000 <= unix < UNIX_2100:
        raise ValueError("the DS1307 holds 2000-2099 only")
    days, rem = divmod(unix, 86400)
    year, month, day = civil_from_days(days)
    dow = (days + 4) % 7 + 1  # 1970-01-01 was a Thursday (5 with 1 = Sunday)
    hour, rem = divmod(rem, 3600)
    minute, sec = divmod(rem, 60)
    return bytes((bin2bcd(sec), bin2bcd(minute), bin2bcd(hour), dow, bin2bcd(day), bin2bcd(month),
                  bin2bcd(year - 2000)))


def time_valid(unix: int, halted: bool) -> bool:
    """True when the clock runs and reads 2001 or later (protocol: otherwise it has lost its time)."""
    return not halted and unix >= UNIX_2001


class DS1307:
    """The chip on a ``machine.I2C``-style bus (``readfrom_mem``/``writeto_mem``)."""

    def __init__(self, i2c, address: int = ADDRESS) -> None:
        self.i2c = i2c
        self.address = address

    def read(self):
        """``(unix_seconds, halted)``."""
        return decode(self.i2c.readfrom_mem(self.address, 0, 7))

    def write(self, unix: int) -> None:
        """Set the time and start the oscillator (writing seconds clears CH)."""
        self.i2c.writeto_mem(self.address, 0, encode(unix))


class RtcClock:
    """The collector's clock from a DS1307: ``now_ms()`` -> ``(ts_ms, "rtc")``; set only when lost.

    The DS1307 counts whole seconds, so ``ts`` is a multiple of 1000 ms. An I2C error reads as "no clock"
    rather than stopping the collector.
    """

    def __init__(self, chip) -> None:
        self.chip = chip

    def now_ms(self):
        try:
            unix, halted = self.chip.read()
        except OSError:
            return None, "none"
        if halted:
            return None, "none"  # an oscillator that is stopped gives no time at all
        return unix * 1000, "rtc"

    def lost(self) -> bool:
        """True when the chip's time is not valid (halted, before 2001) or the chip does not answer."""
        try:
            unix, halted = self.chip.read()
        except OSError:
            return False  # nothing to set
        return not time_valid(unix, halted)

    def state(self) -> str:
        """The status's ``clock`` (protocol section 6): ``rtc`` with a valid time, ``lost`` when the chip
        lost it (or does not answer: its readings then carry no time until it is back)."""
        try:
            unix, halted = self.chip.read()
        except OSError:
            return "lost"
        return "rtc" if time_valid(unix, halted) else "lost"

    def set_ms(self, ms: int) -> bool:
        """Set the chip from a trusted clock (an ack's ``t``); False if the time does not fit the chip."""
        unix = ms // 1000
        if not UNIX_2001 <= unix < UNIX_2100:
            return False
        self.chip.write(unix)
        return True


class NoClock:
    """For a collector without any clock: readings carry ``ts: null`` and ``src: none``."""

    def now_ms(self):
        return None, "none"

    def lost(self) -> bool:
        return False

    def state(self) -> str:
        return "none"

    def set_ms(self, ms: int) -> bool:
        return False
