"""Protocol v1 (shared/protocol.md) for a collector: reading/status payloads, topics, serial frames, acks.

The encoder writes the canonical form byte for byte (keys in order, no spaces) and refuses a value the
gateway would reject, naming the field, so a collector never sends what will be quarantined.
JSON is written by hand because ``json.dumps`` differs between interpreters (spaces, float digits).
"""

import json

from iotcollector.crc16 import crc16

VERSION = 1
MAX_PAYLOAD = 192
MAX_LINE = 256
U32_MAX = 4294967295
TS_MAX = 253402300799999  # 9999-12-31T23:59:59.999Z
MILLI_MIN = -2147483648  # the cache stores val as i32 thousandths
MILLI_MAX = 2147483647
SOURCES = ("none", "rtc", "ntp")
ROLES = ("active", "standby", "single")
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


class EncodeError(ValueError):
    """A value the protocol does not allow; ``reason`` and ``field`` use the gateway's quarantine names."""

    def __init__(self, reason: str, field=None) -> None:
        super().__init__("%s %s" % (reason, field))
        self.reason = reason
        self.field = field


class FrameError(ValueError):
    """A serial line that starts with ``!`` but is not a valid frame (``reason``: bad_frame, bad_checksum, unknown_type)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_int(value) -> bool:
    # type() rather than isinstance(): in CPython bool is an int, in MicroPython it is not; both reject it here.
    return type(value) is int


def check_name(field: str, value, max_len: int) -> None:
    """Raise EncodeError unless ``value`` is a 1..max_len name of letters, digits, ``_`` and ``-``."""
    if type(value) is not str:
        raise EncodeError("bad_type", field)
    if not 0 < len(value) <= max_len:
        raise EncodeError("out_of_range", field)
    for ch in value:
        if ch not in _NAME_CHARS:
            raise EncodeError("out_of_range", field)


def check_unit(value) -> None:
    """Raise EncodeError unless ``value`` is 1..16 printable ASCII characters without ``"`` or ``\\``."""
    if type(value) is not str:
        raise EncodeError("bad_type", "unit")
    if not 0 < len(value) <= 16:
        raise EncodeError("out_of_range", "unit")
    for ch in value:
        if not 32 <= ord(ch) <= 126 or ch in "\"\\":
            raise EncodeError("out_of_range", "unit")


def _check_u32(field: str, value) -> None:
    if not _is_int(value):
        raise EncodeError("bad_type", field)
    if not 0 <= value <= U32_MAX:
        raise EncodeError("out_of_range", field)


def to_milli(value) -> int:
    """Round a sensor value to integer thousandths; EncodeError for NaN, infinities, or beyond i32."""
    if _is_int(value):
        milli = value * 1000
    elif type(value) is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise EncodeError("bad_type", "val")
        milli = int(round(value * 1000))
    else:
        raise EncodeError("bad_type", "val")
    if not MILLI_MIN <= milli <= MILLI_MAX:
        raise EncodeError("out_of_range", "val")
    return milli


def format_milli(milli: int) -> str:
    """Thousandths as the protocol's decimal: at most 3 fractional digits, no trailing zeros (21500 -> 21.5)."""
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), 1000)
    if frac == 0:
        return sign + str(whole)
    text = "%03d" % frac
    while text.endswith("0"):
        text = text[:-1]
    return sign + str(whole) + "." + text


def encode_reading(dev: str, node: str, boot: int, seq: int, ts, src: str, milli: int, unit: str,
                   cached: bool = False) -> str:
    """The canonical reading payload (protocol section 3). ``ts`` is ms since 1970 or None."""
    check_name("dev", dev, 32)
    check_name("node", node, 16)
    _check_u32("boot", boot)
    _check_u32("seq", seq)
    if type(src) is not str:
        raise EncodeError("bad_type", "src")
    if src not in SOURCES or (ts is None) != (src == "none"):
        raise EncodeError("bad_clock")
    if ts is not None:
        if not _is_int(ts):
            raise EncodeError("bad_type", "ts")
        if not 0 <= ts <= TS_MAX:
            raise EncodeError("out_of_range", "ts")
    if not _is_int(milli):
        raise EncodeError("bad_type", "val")
    if not MILLI_MIN <= milli <= MILLI_MAX:
        raise EncodeError("out_of_range", "val")
    check_unit(unit)
    if type(cached) is not bool:
        raise EncodeError("bad_type", "cached")
    payload = '{"v":1,"dev":"%s","node":"%s","boot":%d,"seq":%d,"ts":%s,"src":"%s","val":%s,"unit":"%s","cached":%s}' % (
        dev, node, boot, seq, "null" if ts is None else str(ts), src, format_milli(milli), unit,
        "true" if cached else "false")
    if len(payload) > MAX_PAYLOAD:  # ASCII only, so characters == bytes
        raise EncodeError("too_large")
    return payload


RESETS = ("power", "wdt", "ext", "brownout", "soft", "unknown")
CLOCKS = ("rtc", "lost", "none")


def encode_status(dev: str, node: str, boot: int, role: str, cached: int = 0, cap: int = 0, dropped: int = 0,
                  reset: str = "unknown", store_err: int = 0, clock: str = "none", period: int = 0) -> str:
    """The online status payload (protocol section 6, canonical key order), published retained on connect,
    on role changes and periodically; at most 256 bytes."""
    check_name("dev", dev, 32)
    check_name("node", node, 16)
    for field, value in (("boot", boot), ("dropped", dropped), ("store_err", store_err), ("period", period)):
        _check_u32(field, value)
    for field, value in (("cached", cached), ("cap", cap)):
        _check_u32(field, value)
        if value > 65535:
            raise EncodeError("out_of_range", field)
    for field, value, allowed in (("role", role, ROLES), ("reset", reset, RESETS), ("clock", clock, CLOCKS)):
        if value not in allowed:
            raise EncodeError("out_of_range", field)
    return ('{"v":1,"dev":"%s","node":"%s","boot":%d,"state":"online","role":"%s","cached":%d,"cap":%d,'
            '"dropped":%d,"reset":"%s","store_err":%d,"clock":"%s","period":%d}') % (
        dev, node, boot, role, cached, cap, dropped, reset, store_err, clock, period)


def encode_will(dev: str, node: str) -> str:
    """The last-will payload: the broker publishes it (retained) when the collector vanishes."""
    check_name("dev", dev, 32)
    check_name("node", node, 16)
    return '{"v":1,"dev":"%s","node":"%s","state":"offline"}' % (dev, node)


def topic(prefix: str, site: str, dev: str, kind: str) -> str:
    """``P/<site>/<device>/<kind>`` with kind ``reading``, ``status`` or ``ack``."""
    return "%s/%s/%s/%s" % (prefix, site, dev, kind)


def frame(kind: str, payload: str) -> str:
    """A serial frame ``!<kind> <payload>*<CRC>`` (without the line terminator)."""
    body = "!%s %s" % (kind, payload)
    return "%s*%04X" % (body, crc16(body.encode()))


_HEX = "0123456789abcdefABCDEF"


def parse_line(line):
    """Split a serial line into ``(kind, payload)``; None for console text; FrameError for a broken frame."""
    if isinstance(line, (bytes, bytearray)):
        line = bytes(line).decode()
    while line.endswith("\n") or line.endswith("\r"):
        line = line[:-1]
    if not line.startswith("!"):
        return None
    if len(line) > MAX_LINE:
        raise FrameError("bad_frame")
    star = line.rfind("*")
    if star < 0 or len(line) - star - 1 != 4 or len(line) < 3 or line[2] != " ":
        raise FrameError("bad_frame")
    crc_text = line[star + 1:]
    for ch in crc_text:
        if ch not in _HEX:
            raise FrameError("bad_frame")
    if int(crc_text, 16) != crc16(line[:star].encode()):
        raise FrameError("bad_checksum")
    kind = line[1]
    if kind not in "RSA":
        raise FrameError("unknown_type")
    return kind, line[3:star]


class Ack:
    """An end-to-end ack: every reading of ``(dev, node, boot)`` with seq <= ``upto`` is durably held."""

    def __init__(self, dev: str, node: str, boot: int, upto: int, t=None) -> None:
        self.dev = dev
        self.node = node
        self.boot = boot
        self.upto = upto
        self.t = t

    def __repr__(self) -> str:
        return "Ack(%s,%s,%d,%d,%s)" % (self.dev, self.node, self.boot, self.upto, self.t)


def parse_ack(payload):
    """Parse an ack payload (str or bytes) into an Ack, or None when it is not a usable v1 ack."""
    try:
        if isinstance(payload, (bytes, bytearray)):
            payload = bytes(payload).decode()
        data = json.loads(payload)
    except (ValueError, UnicodeError):
        return None
    if type(data) is not dict or data.get("v") != 1:
        return None
    dev, node, boot, upto, t = data.get("dev"), data.get("node"), data.get("boot"), data.get("upto"), data.get("t")
    if type(dev) is not str or type(node) is not str:
        return None
    if not (_is_int(boot) and _is_int(upto) and 0 <= boot <= U32_MAX and 0 <= upto <= U32_MAX):
        return None
    if t is not None and not (_is_int(t) and 0 <= t <= TS_MAX):
        t = None  # a bad clock field must not cost us the ack itself
    return Ack(dev, node, boot, upto, t)
