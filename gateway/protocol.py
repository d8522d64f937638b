"""Protocol v1 (see shared/protocol.md): parse and validate readings, frame serial lines, encode acks.

Shared by the ingest paths and the simulator, so what we send and what we accept cannot drift apart.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from gateway import native

VERSION = 1
MAX_PAYLOAD = 192
MAX_STATUS = 256
MAX_LINE = 256
MAX_DEPTH = 4  # a reading is one flat object; a status too: anything deeper is hostile
U32_MAX = 4294967295
TS_MAX = 253402300799999
CLOCK_VALID_FROM_MS = 978307200000  # 2001-01-01: a DS1307 that lost its time restarts at 2000-01-01
CLOCK_FUTURE_SLACK_MS = 86_400_000
SOURCES = ("rtc", "ntp", "none")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_NAME_MAX = {"site": 32, "dev": 32, "node": 16}


class Rejected(ValueError):
    """A message that breaks protocol v1: `reason` is one of the codes in protocol.md, `field` names the key."""

    def __init__(self, reason: str, field: str | None = None, detail: str = "") -> None:
        self.reason = reason
        self.field = field
        self.detail = detail or (f"{reason}: {field}" if field else reason)
        super().__init__(self.detail)


class Reading(NamedTuple):
    """One validated reading; identity is (device, node, boot, seq).

    A named tuple rather than a frozen dataclass: one is made for every reading on the ingest path, and a frozen
    dataclass's constructor sets each of its twelve fields through `object.__setattr__` (three times slower)."""

    device: str
    node: str
    boot: int
    seq: int
    site: str
    ts: int | None
    src: str
    value: float
    unit: str
    cached: bool
    clock: str
    received_ms: int

    @property
    def stream(self) -> tuple[str, str, int]:
        """The (device, node, boot) that end-to-end acks are kept per."""
        return (self.device, self.node, self.boot)


@dataclass(frozen=True, slots=True)
class Ack:
    """End-to-end ack: every reading of (device, node, boot) with seq <= upto is durably held."""

    device: str
    node: str
    boot: int
    upto: int
    t: int | None = None

    def payload(self) -> str:
        text = f'{{"v":1,"dev":"{self.device}","node":"{self.node}","boot":{self.boot},"upto":{self.upto}'
        return text + (f',"t":{self.t}}}' if self.t is not None else "}")


# Names and topics seen lately, with their verdicts: the same few come with every reading (a dict lookup is a
# fraction of a regex match and a split). Bounded in entries (emptied when full, so unique hostile names only cost
# the check) and in size: only names up to the longest valid one and topics of a reading or a status are kept.
_SEEN_MAX = 4096
_names_seen: dict[tuple[str, str], bool] = {}
_topics_seen: dict[tuple[str, str], tuple[str, str, str]] = {}
_LONGEST_NAME = max(_NAME_MAX.values())


def valid_name(text: str, kind: str) -> bool:
    """True if `text` is a valid site/dev/node name."""
    if len(text) > _LONGEST_NAME:
        return False
    key = (kind, text)
    ok = _names_seen.get(key)
    if ok is None:
        ok = bool(_NAME.fullmatch(text)) and len(text) <= _NAME_MAX[kind]
        if len(_names_seen) >= _SEEN_MAX:
            _names_seen.clear()
        _names_seen[key] = ok
    return ok


def parse_topic(topic: str, prefix: str) -> tuple[str, str, str]:
    """Split `prefix/site/device/kind` into (site, device, kind), or raise Rejected('bad_topic')."""
    key = (prefix, topic)
    parsed = _topics_seen.get(key)
    if parsed is None:
        parsed = _split_topic(topic, prefix)  # raises for a bad one: only good topics are kept
        if parsed[2] in ("reading", "status") and len(prefix) <= 256:
            if len(_topics_seen) >= _SEEN_MAX:
                _topics_seen.clear()
            _topics_seen[key] = parsed
    return parsed


def _split_topic(topic: str, prefix: str) -> tuple[str, str, str]:
    parts = topic.split("/")
    want = prefix.split("/") if prefix else []
    if len(parts) != len(want) + 3 or parts[: len(want)] != want:
        raise Rejected("bad_topic", detail=f"bad_topic: {topic!r} is not {prefix}/<site>/<device>/<kind>")
    site, device, kind = parts[len(want):]
    if not valid_name(site, "site") or not valid_name(device, "dev"):
        raise Rejected("bad_topic", detail=f"bad_topic: invalid site or device name in {topic!r}")
    return site, device, kind


def classify_clock(ts: int | None, received_ms: int) -> str:
    """The `clock` column: ok, none, unset (before 2001) or future (over a day ahead). Never rewrites ts."""
    if ts is None:
        return "none"
    if ts < CLOCK_VALID_FROM_MS:
        return "unset"
    if ts > received_ms + CLOCK_FUTURE_SLACK_MS:
        return "future"
    return "ok"


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _v in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise Rejected("not_json", detail=f"not_json: duplicate key {dup!r}")
    return obj


# One decoder for every message: `json.loads(text, object_pairs_hook=...)` builds a new one per call, which
# cost as much as the parse of a reading.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _depth(text: str) -> int:
    """The deepest nesting of arrays/objects in `text`, brackets inside strings not counted (linear scan)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_bounded(payload: bytes, max_bytes: int, *, max_depth: int = MAX_DEPTH) -> object:
    """Decode untrusted JSON with its size checked first and its nesting depth checked before parsing.

    Never raises anything but Rejected: `too_large` (over `max_bytes`, nothing else looked at), `not_utf8`,
    `not_json` (syntax, nesting deeper than `max_depth`, duplicate keys, numbers Python refuses).
    NaN/Infinity are returned as floats: the field checks reject them as `bad_type`.
    """
    if len(payload) > max_bytes:
        raise Rejected("too_large", detail=f"too_large: {len(payload)} bytes > {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("not_utf8") from None
    # Nesting is never deeper than the brackets are many: the character scan runs only when it could matter
    # (a reading has one brace; the scan costs more than the whole JSON parse).
    if text.count("[") + text.count("{") > max_depth and _depth(text) > max_depth:
        raise Rejected("not_json", detail=f"not_json: nested deeper than {max_depth}")
    try:
        return _DECODER.decode(text)
    except Rejected:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError cannot happen after the depth check
        raise Rejected("not_json", detail=f"not_json: {str(exc)[:80]}") from None


def _int_field(obj: dict, key: str, lo: int, hi: int) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected("bad_type", key)
    if not lo <= value <= hi:
        raise Rejected("out_of_range", key)
    return value


def _name_field(obj: dict, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise Rejected("bad_type", key)
    if not valid_name(value, key):
        raise Rejected("out_of_range", key)
    return value


# The field checks, shared with the status parser (gateway.device_status) so both apply the same rules.
int_field = _int_field
name_field = _name_field


# 1 to 16 printable ASCII characters (0x20-0x7E) other than '"' and '\\'.
_UNIT = re.compile(r'[\x20\x21\x23-\x5b\x5d-\x7e]{1,16}')


def _unit_ok(unit: str) -> bool:
    return _UNIT.fullmatch(unit) is not None


_REQUIRED_ORDER = ("v", "dev", "node", "boot", "seq", "ts", "src", "val", "unit")
_REQUIRED = frozenset(_REQUIRED_ORDER)


# The canonical form every collector emits (keys in order, no spaces; shared/protocol.md section 3), with the
# field rules a regular expression can hold: names and unit from their character sets (no escapes possible),
# integers without leading zeros, `val` a plain decimal. A payload it matches is read in one C call; the
# ranges the digits cannot express are checked after, and anything else takes the general path (`_parse_json`),
# which stays the one authority: the fast path accepts only payloads the general path accepts, with the same
# result (a property test holds them to that).
_CANONICAL = re.compile(
    r'\{"v":1,"dev":"([A-Za-z0-9_-]{1,32})","node":"([A-Za-z0-9_-]{1,16})","boot":(0|[1-9][0-9]{0,9}),'
    r'"seq":(0|[1-9][0-9]{0,9}),"ts":(null|0|[1-9][0-9]{0,14}),"src":"(rtc|ntp|none)",'
    r'"val":(-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,17})?),"unit":"([\x20\x21\x23-\x5b\x5d-\x7e]{1,16})"'
    r'(?:,"cached":(true|false))?\}')


def _parse_canonical(payload: bytes, site: str, received_ms: int, topic_device: str | None) -> Reading | None:
    """The reading of a canonical, valid payload; None for anything else (then the general path decides)."""
    if len(payload) > MAX_PAYLOAD:
        return None
    m = _CANONICAL.fullmatch(payload.decode("utf-8", "replace"))  # not UTF-8: U+FFFD never matches
    if m is None:
        return None
    device, node, boot, seq, ts, src, val, unit, cached = m.groups()
    if topic_device is not None and device != topic_device:
        return None
    boot, seq = int(boot), int(seq)
    if boot > U32_MAX or seq > U32_MAX:
        return None
    if ts == "null":
        if src != "none":
            return None
        ts = None
    else:
        ts = int(ts)
        if ts > TS_MAX or src == "none":
            return None
    value = float(val)
    if not value and "." not in val:
        value = 0.0  # JSON reads "-0" as the integer 0: no negative zero (but "-0.0" is one)
    return Reading(device, node, boot, seq, site, ts, src, value, unit, cached == "true",
                   classify_clock(ts, received_ms), received_ms)


# The same in C where gateway.native is built (one pass, no regular expression; held equal to _parse_canonical by
# the property tests), otherwise _parse_canonical itself.
_canonical = native.reading_parser(Reading, MAX_PAYLOAD, U32_MAX, TS_MAX, CLOCK_VALID_FROM_MS,
                                   CLOCK_FUTURE_SLACK_MS) or _parse_canonical


def parse_reading(payload: bytes, *, site: str, received_ms: int, topic_device: str | None = None) -> Reading:
    """Validate one reading payload (MQTT message body or serial `R` frame payload).

    `topic_device` is the device named by the MQTT topic (None on serial). Raises Rejected.
    """
    reading = _canonical(payload, site, received_ms, topic_device)
    if reading is not None:
        return reading
    return _parse_json(payload, site, received_ms, topic_device)


def _parse_json(payload: bytes, site: str, received_ms: int, topic_device: str | None) -> Reading:
    """The general path: any key order, whitespace and unknown keys; every rule checked on the decoded object."""
    obj = loads_bounded(payload, MAX_PAYLOAD)
    if not isinstance(obj, dict):
        raise Rejected("not_object")
    if not _REQUIRED.issubset(obj):  # one C call; the loop only names the first missing key
        for key in _REQUIRED_ORDER:
            if key not in obj:
                raise Rejected("missing_field", key)
    v = obj["v"]
    if isinstance(v, bool) or not isinstance(v, int):
        raise Rejected("bad_type", "v")
    if v != VERSION:
        raise Rejected("bad_version", detail=f"bad_version: {v}")
    device = _name_field(obj, "dev")
    if topic_device is not None and device != topic_device:  # before any other field: see identity_of
        raise Rejected("topic_mismatch", detail=f"topic_mismatch: payload dev {device!r}, topic {topic_device!r}")
    node = _name_field(obj, "node")
    boot = _int_field(obj, "boot", 0, U32_MAX)
    seq = _int_field(obj, "seq", 0, U32_MAX)
    ts = obj["ts"]
    if ts is not None:
        ts = _int_field(obj, "ts", 0, TS_MAX)
    src = obj["src"]
    if not isinstance(src, str):
        raise Rejected("bad_type", "src")
    value = obj["val"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Rejected("bad_type", "val")
    unit = obj["unit"]
    if not isinstance(unit, str):
        raise Rejected("bad_type", "unit")
    if not _unit_ok(unit):
        raise Rejected("out_of_range", "unit")
    cached = obj.get("cached", False)
    if not isinstance(cached, bool):
        raise Rejected("bad_type", "cached")
    if src not in SOURCES or (src == "none") != (ts is None):
        raise Rejected("bad_clock", detail=f"bad_clock: src={src!r} ts={ts!r}")
    return Reading(device, node, boot, seq, site, ts, src, float(value), unit, cached,
                   classify_clock(ts, received_ms), received_ms)


def identity_of(payload: bytes, topic_device: str | None = None) -> tuple[str, str, int, int] | None:
    """Best-effort (device, node, boot, seq) of a rejected reading, or None when it has no valid identity.

    A quarantined reading is durably held too, so its identity advances the end-to-end ack: otherwise one
    bad reading (say a broken sensor's value) would stop its collector's acks for good. On MQTT the identity
    counts only when the topic's device (`topic_device`) is the payload's `dev`: a client must not move
    another device's ack by naming it (shared/protocol.md section 5). Size is checked before any parsing.
    """
    try:
        obj = loads_bounded(payload, MAX_PAYLOAD)
        if not isinstance(obj, dict):
            return None
        ident = (_name_field(obj, "dev"), _name_field(obj, "node"), _int_field(obj, "boot", 0, U32_MAX),
                 _int_field(obj, "seq", 0, U32_MAX))
    except (KeyError, Rejected):
        return None
    if topic_device is not None and ident[0] != topic_device:
        return None
    return ident


def format_value(value: float) -> str:
    """A value as collectors print it: at most 3 decimals, no exponent, no trailing zeros."""
    milli = round(value * 1000)
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), 1000)
    return sign + f"{whole}.{frac:03d}".rstrip("0").rstrip(".")


def encode_reading(device: str, node: str, boot: int, seq: int, ts: int | None, src: str, value: float,
                   unit: str, cached: bool = False) -> str:
    """The canonical reading payload (what collectors send)."""
    ts_text = "null" if ts is None else str(ts)
    return (f'{{"v":1,"dev":"{device}","node":"{node}","boot":{boot},"seq":{seq},"ts":{ts_text},'
            f'"src":"{src}","val":{format_value(value)},"unit":"{unit}","cached":{"true" if cached else "false"}}}')


def parse_ack(payload: bytes | str) -> Ack:
    """Parse an ack payload (used by collectors: the simulator and the tests)."""
    obj = json.loads(payload)
    return Ack(obj["dev"], obj["node"], int(obj["boot"]), int(obj["upto"]), obj.get("t"))


# --- serial framing -------------------------------------------------------------------------------

def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): check value 0x29B1 for b'123456789'."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def frame(kind: str, payload: str) -> str:
    """One serial frame without the line terminator: `!<kind> <payload>*<CRC>`."""
    body = f"!{kind} {payload}"
    return f"{body}*{crc16_ccitt_false(body.encode()):04X}"


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_frame(line: str) -> tuple[str, str] | None:
    """Split a serial line into (type, payload). None for console text; raises Rejected for a bad frame."""
    line = line.rstrip("\r\n")
    if not line.startswith("!"):
        return None
    if len(line) > MAX_LINE:
        raise Rejected("bad_frame", detail=f"bad_frame: line of {len(line)} bytes > {MAX_LINE}")
    body, star, crc = line.rpartition("*")
    if not star or len(crc) != 4 or not set(crc) <= _HEX or len(body) < 3 or body[2] != " ":
        raise Rejected("bad_frame", detail=f"bad_frame: {line[:40]!r}")
    if int(crc, 16) != crc16_ccitt_false(body.encode()):
        raise Rejected("bad_checksum")
    kind = body[1]
    if kind not in "RSA":
        raise Rejected("unknown_type", detail=f"unknown_type: {kind!r}")
    return kind, body[3:]
