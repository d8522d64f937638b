"""Write the protocol v1 test vectors (run: python3 shared/vectors/make_vectors.py).

This generator is deliberately independent of the gateway package (stdlib only), so the vectors are
a second, separate statement of protocol.md rather than a copy of one implementation's behaviour.
The JSON files it writes are committed; implementations load those files, never this script.
"""

from __future__ import annotations

import calendar
import json
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent


def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def fmt_val(milli: int) -> str:
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), 1000)
    text = f"{whole}.{frac:03d}".rstrip("0").rstrip(".")
    return sign + text


def reading(dev="greenhouse-1", node="a", boot=7, seq=42, ts=1700000000123, src="rtc",
            milli=21500, unit="C", cached=False) -> str:
    ts_text = "null" if ts is None else str(ts)
    return (f'{{"v":1,"dev":"{dev}","node":"{node}","boot":{boot},"seq":{seq},"ts":{ts_text},'
            f'"src":"{src}","val":{fmt_val(milli)},"unit":"{unit}","cached":{"true" if cached else "false"}}}')


def expect(dev="greenhouse-1", node="a", boot=7, seq=42, ts=1700000000123, src="rtc",
           milli=21500, unit="C", cached=False, clock="ok") -> dict:
    return {"device": dev, "node": node, "boot": boot, "seq": seq, "ts": ts, "src": src,
            "val": milli / 1000, "val_milli": milli, "unit": unit, "cached": cached, "clock": clock}


VALID = [
    ("basic", dict()),
    ("cached replay", dict(cached=True)),
    ("negative fraction", dict(milli=-250)),
    ("integer value", dict(milli=3000)),
    ("three decimals", dict(milli=1234)),
    ("zero", dict(milli=0)),
    ("no clock", dict(ts=None, src="none", )),
    ("ntp clock", dict(src="ntp")),
    ("rtc lost time, 2000-01-01", dict(ts=946684800000)),
    ("counting from 1970", dict(ts=5000)),
    ("seq and boot at maximum", dict(boot=4294967295, seq=4294967295)),
    ("seq zero", dict(seq=0, boot=0)),
    ("pair node b", dict(dev="pair-1", node="b", boot=3, seq=0)),
    ("long names", dict(dev="d" * 32, node="n" * 16, unit="u" * 16, milli=-2147483648)),
]
CLOCK_OF = {"no clock": "none", "rtc lost time, 2000-01-01": "unset", "counting from 1970": "unset"}


def valid_vectors() -> list[dict]:
    out = []
    for name, kw in VALID:
        payload = reading(**kw)
        assert len(payload.encode()) <= 192, (name, len(payload))
        out.append({"name": name, "topic": f"iot/site-1/{kw.get('dev', 'greenhouse-1')}/reading",
                    "received_ms": 1700000001000, "payload": payload, "canonical": True,
                    "expect": expect(clock=CLOCK_OF.get(name, "ok"), **kw)})
    # Accepted but not canonical: any key order, spaces, unknown keys, cached omitted, float ts-free values.
    extra = [
        ("keys in another order",
         '{"seq":1,"boot":2,"node":"a","dev":"greenhouse-1","v":1,"unit":"C","val":5,"src":"rtc","ts":1700000000000}',
         expect(seq=1, boot=2, milli=5000, ts=1700000000000)),
        ("unknown keys ignored, spaces allowed",
         '{ "v": 1, "dev": "greenhouse-1", "node": "a", "boot": 7, "seq": 42, "ts": 1700000000123, '
         '"src": "rtc", "val": 21.5, "unit": "C", "rssi": -60 }',
         expect()),
        ("future clock recorded, not rewritten",
         reading(ts=1700000001000 + 2 * 86400000),
         expect(ts=1700000001000 + 2 * 86400000, clock="future")),
        ("exponent value accepted", reading().replace('"val":21.5', '"val":2.15e1'), expect()),
    ]
    for name, payload, exp in extra:
        assert len(payload.encode()) <= 192, (name, len(payload))
        out.append({"name": name, "topic": "iot/site-1/greenhouse-1/reading", "received_ms": 1700000001000,
                    "payload": payload, "canonical": False, "expect": exp})
    return out


def invalid_vectors() -> list[dict]:
    base = json.loads(reading())

    def without(key):
        d = dict(base)
        del d[key]
        return json.dumps(d, separators=(",", ":"))

    def with_(key, value):
        d = dict(base)
        d[key] = value
        return json.dumps(d, separators=(",", ":"))

    cases = [
        ("oversized", reading(unit="C") + " " * 80, "too_large", None),
        ("not utf-8", None, "not_utf8", None),
        ("not json", "temperature=21.5", "not_json", None),
        ("truncated json", reading()[:-10], "not_json", None),
        ("json array", "[1,2,3]", "not_object", None),
        ("json string", '"hello"', "not_object", None),
        ("empty payload", "", "not_json", None),
        ("version 2", with_("v", 2), "bad_version", None),
        ("version as string", with_("v", "1"), "bad_type", "v"),
        ("NaN value", reading().replace('"val":21.5', '"val":NaN'), "bad_type", "val"),
        ("infinite value", reading().replace('"val":21.5', '"val":1e999'), "bad_type", "val"),
        ("value as string", with_("val", "21.5"), "bad_type", "val"),
        ("value as bool", with_("val", True), "bad_type", "val"),
        ("negative seq", with_("seq", -1), "out_of_range", "seq"),
        ("seq too large", with_("seq", 4294967296), "out_of_range", "seq"),
        ("fractional seq", with_("seq", 1.5), "bad_type", "seq"),
        ("boot as bool", with_("boot", True), "bad_type", "boot"),
        ("boot too large", with_("boot", 4294967296), "out_of_range", "boot"),
        ("device with slash", with_("dev", "a/b"), "out_of_range", "dev"),
        ("device too long", with_("dev", "d" * 33), "out_of_range", "dev"),
        ("empty node", with_("node", ""), "out_of_range", "node"),
        ("node too long", with_("node", "n" * 17), "out_of_range", "node"),
        ("empty unit", with_("unit", ""), "out_of_range", "unit"),
        ("unit with quote", with_("unit", 'a"b'), "out_of_range", "unit"),
        ("unit too long", with_("unit", "u" * 17), "out_of_range", "unit"),
        ("negative ts", with_("ts", -5), "out_of_range", "ts"),
        ("ts as string", with_("ts", "2023-11-14"), "bad_type", "ts"),
        ("cached as int", with_("cached", 1), "bad_type", "cached"),
        ("src none with ts", with_("src", "none"), "bad_clock", None),
        ("rtc without ts", with_("ts", None), "bad_clock", None),
        ("unknown src", with_("src", "gps"), "bad_clock", None),
        ("src as number", with_("src", 1), "bad_type", "src"),
    ]
    for key in ("v", "dev", "node", "boot", "seq", "ts", "src", "val", "unit"):
        cases.append((f"missing {key}", without(key), "missing_field", key))
    out = []
    for name, payload, reason, field in cases:
        entry = {"name": name, "topic": "iot/site-1/greenhouse-1/reading", "reason": reason, "field": field}
        if payload is None:
            entry["payload_hex"] = (b'{"v":1,"dev":"\xff\xfe"}').hex()
        else:
            entry["payload"] = payload
        out.append(entry)
    out.append({"name": "device differs from topic", "topic": "iot/site-1/other-device/reading",
                "payload": reading(), "reason": "topic_mismatch", "field": None})
    out.append({"name": "topic without site", "topic": "iot/greenhouse-1/reading",
                "payload": reading(), "reason": "bad_topic", "field": None})
    out.append({"name": "topic with bad device name", "topic": "iot/site-1/green house/reading",
                "payload": reading(), "reason": "bad_topic", "field": None})
    return out


def frame(kind: str, payload: str) -> str:
    body = f"!{kind} {payload}"
    return f"{body}*{crc16_ccitt_false(body.encode()):04X}"


def ack_payload(dev, node, boot, upto, t=None) -> str:
    text = f'{{"v":1,"dev":"{dev}","node":"{node}","boot":{boot},"upto":{upto}'
    return text + (f',"t":{t}}}' if t is not None else "}")


def serial_vectors() -> dict:
    good = reading(dev="ft-1", node="a", boot=1, seq=0, ts=946684800000, milli=1500, unit="V")
    status = '{"v":1,"dev":"pair-1","node":"b","boot":3,"state":"online","role":"standby","cached":0,"dropped":0}'
    ack = ack_payload("ft-1", "a", 1, 0, 1700000000500)
    lines = [
        {"name": "reading", "line": frame("R", good), "valid": True, "type": "R", "payload": good},
        {"name": "reading with CRLF", "line": frame("R", good) + "\r", "valid": True, "type": "R", "payload": good},
        {"name": "status", "line": frame("S", status), "valid": True, "type": "S", "payload": status},
        {"name": "ack", "line": frame("A", ack), "valid": True, "type": "A", "payload": ack},
        {"name": "lower-case crc accepted", "line": frame("R", good)[:-4] + frame("R", good)[-4:].lower(), "valid": True, "type": "R", "payload": good},
        {"name": "console text", "line": "[pair] role: standby -> active", "valid": False, "console": True},
        {"name": "bad checksum", "line": frame("R", good)[:-4] + "0000", "valid": False, "reason": "bad_checksum"},
        {"name": "flipped payload byte", "line": frame("R", good).replace('"seq":0', '"seq":1'), "valid": False,
         "reason": "bad_checksum"},
        {"name": "missing checksum", "line": "!R " + good, "valid": False, "reason": "bad_frame"},
        {"name": "short checksum", "line": frame("R", good)[:-1], "valid": False, "reason": "bad_frame"},
        {"name": "non-hex checksum", "line": frame("R", good)[:-4] + "ZZZZ", "valid": False, "reason": "bad_frame"},
        {"name": "no space after type", "line": "!R" + frame("R", good)[3:], "valid": False, "reason": "bad_frame"},
        {"name": "unknown type", "line": frame("X", good), "valid": False, "reason": "unknown_type"},
        {"name": "valid frame, invalid reading", "line": frame("R", '{"v":1}'), "valid": True, "type": "R",
         "payload": '{"v":1}', "reading_reason": "missing_field"},
    ]
    crc = [{"text": "123456789", "crc": "29B1"}, {"text": "", "crc": "FFFF"}, {"text": "!R {}", "crc":
           f"{crc16_ccitt_false(b'!R {}'):04X}"}]
    for entry in lines:
        if entry.get("type"):
            entry["crc"] = entry["line"].rstrip("\r").rsplit("*", 1)[1].upper()
    return {"crc16_ccitt_false": crc, "lines": lines, "max_line_bytes": 256}


def ack_vectors() -> dict:
    acks = [
        {"name": "with clock", "ack": {"device": "greenhouse-1", "node": "a", "boot": 7, "upto": 42,
                                        "t": 1700000000500},
         "payload": ack_payload("greenhouse-1", "a", 7, 42, 1700000000500)},
        {"name": "without clock", "ack": {"device": "pair-1", "node": "b", "boot": 3, "upto": 0, "t": None},
         "payload": ack_payload("pair-1", "b", 3, 0)},
        {"name": "maximum values", "ack": {"device": "d", "node": "n", "boot": 4294967295, "upto": 4294967295,
                                            "t": 253402300799999},
         "payload": ack_payload("d", "n", 4294967295, 4294967295, 253402300799999)},
    ]
    for a in acks:
        a["topic"] = f"iot/site-1/{a['ack']['device']}/ack"
        a["serial_line"] = frame("A", a["payload"])
    return {"acks": acks}


STATUS_KEYS = ("boot", "state", "role", "cached", "cap", "dropped", "reset", "store_err", "clock", "period")


def status_payload(dev: str, node: str, fields: dict) -> str:
    """The status of protocol section 6, keys in the canonical order, no spaces."""
    parts = [f'"v":1,"dev":"{dev}","node":"{node}"']
    for key in STATUS_KEYS:
        value = fields[key]
        parts.append(f'"{key}":' + (f'"{value}"' if isinstance(value, str) else str(value)))
    return "{" + ",".join(parts) + "}"


def status_vectors() -> dict:
    cases = [
        ("active node of a pair", "pair-1", "a",
         {"boot": 3, "state": "online", "role": "active", "cached": 12, "cap": 500, "dropped": 0, "reset": "wdt",
          "store_err": 0, "clock": "rtc", "period": 5000}),
        ("single collector after a cache-full episode, clock lost", "ft-1", "a",
         {"boot": 65537, "state": "online", "role": "single", "cached": 38, "cap": 38, "dropped": 7,
          "reset": "power", "store_err": 2, "clock": "lost", "period": 200}),
        ("standby node without a clock", "pair-1", "b",
         {"boot": 1, "state": "online", "role": "standby", "cached": 0, "cap": 0, "dropped": 0, "reset": "ext",
          "store_err": 0, "clock": "none", "period": 1000}),
        ("soft reset", "tank_3", "node-2",
         {"boot": 0, "state": "online", "role": "single", "cached": 1, "cap": 2000, "dropped": 0, "reset": "soft",
          "store_err": 0, "clock": "rtc", "period": 120000}),
        ("unknown reset", "tank_3", "n", {"boot": 9, "state": "online", "role": "active", "cached": 0, "cap": 160,
                                          "dropped": 0, "reset": "unknown", "store_err": 0, "clock": "rtc",
                                          "period": 60000}),
        ("widest: longest names, largest numbers", "D" * 32, "n" * 16,
         {"boot": 4294967295, "state": "online", "role": "standby", "cached": 65535, "cap": 65535,
          "dropped": 4294967295, "reset": "brownout", "store_err": 4294967295, "clock": "lost",
          "period": 4294967295}),
    ]
    out = []
    for name, dev, node, fields in cases:
        payload = status_payload(dev, node, fields)
        assert len(payload) <= 256, (name, len(payload))
        out.append({"name": name, "dev": dev, "node": node, "fields": fields, "payload": payload,
                    "serial_line": frame("S", payload), "topic": f"iot/site-1/{dev}/status",
                    "will": f'{{"v":1,"dev":"{dev}","node":"{node}","state":"offline"}}'})
    return {"max_payload_bytes": 256, "keys": ["v", "dev", "node", *STATUS_KEYS],
            "reset": ["power", "wdt", "ext", "brownout", "soft", "unknown"], "clock": ["rtc", "lost", "none"],
            "statuses": out}


# The pair's heartbeat (protocol section 9): an I2C write of register 0 + the 3-byte frame to the secondary.
HB_MAGIC, HB_CLAIMING, HB_ACTIVE = 0xB7, 0, 1
HB_ADDRESS, HB_FRAME_REGISTER, HB_REPLY_REGISTER = 0x42, 0, 3
HB_PERIOD_MS, HB_TIMEOUT_MS, HB_HANDBACK_BEATS = 1000, 3500, 3


def hb_secondary_model(timeout_ms: int, handback: int, events: list) -> list[str]:
    """The secondary's role after each event, by the rules of section 9 (an independent model)."""
    active, last_active, last_beat, streak, out = False, 0, None, 0, []
    for ev in events:
        t = ev["t"]
        if "beat" in ev:
            streak = streak + 1 if last_beat is not None and t - last_beat < timeout_ms else 1
            last_beat = t
            if ev["beat"] == "active":
                last_active = t
                if active and streak >= handback:
                    active = False
        elif not active and t - last_active >= timeout_ms:
            active = True
        out.append("active" if active else "standby")
    return out


def hb_primary_model(handback: int, replies: list) -> list[str]:
    """The state each beat of a (re)started primary says, given what it read back after each beat."""
    active, out = False, []
    for k, reply in enumerate(replies, start=1):
        if k >= handback:
            active = True
        out.append("active" if active else "claiming")
        if reply == "standby":
            active = True
    return out


def heartbeat_vectors() -> dict:
    def frame_case(name, state, counter):
        data = bytes((HB_MAGIC, state, counter))
        return {"name": name, "state": "active" if state else "claiming", "counter": counter, "frame_hex": data.hex(),
                "i2c_write_hex": bytes((HB_FRAME_REGISTER,)).hex() + data.hex()}

    frames = [frame_case("first beat of a claiming primary", HB_CLAIMING, 1),
              frame_case("active", HB_ACTIVE, 3), frame_case("counter wraps", HB_ACTIVE, 0),
              frame_case("counter 255", HB_CLAIMING, 255)]
    invalid = [{"name": "wrong magic", "frame_hex": "480101"}, {"name": "unknown state", "frame_hex": "b70201"},
               {"name": "too short", "frame_hex": "b701"}, {"name": "empty", "frame_hex": ""}]
    T, N = 600, 3  # the scenarios' timeout and hand-back count (a 200 ms period, as the HIL builds use)
    beats = lambda start, n, state, period=200: [{"t": start + i * period, "beat": state} for i in range(n)]  # noqa: E731
    sec = [
        ("no primary at all: takeover exactly one timeout after start",
         [{"t": 599, "poll": True}, {"t": 600, "poll": True}]),
        ("an active primary holds the secondary back",
         beats(0, 3, "active") + [{"t": 999, "poll": True}, {"t": 1000, "poll": True}]),
        ("a claiming primary does not hold it back (it does not record yet)",
         beats(0, 5, "claiming") + [{"t": 800, "poll": True}]),
        ("hand-back on the active beat that completes a run of N consecutive beats",
         [{"t": 600, "poll": True}] + beats(1000, 2, "claiming") + beats(1400, 1, "active")),
        ("a stray active beat does not hand back (hysteresis)",
         [{"t": 600, "poll": True}, {"t": 1000, "beat": "active"}, {"t": 1700, "poll": True},
          {"t": 2000, "beat": "active"}, {"t": 2700, "poll": True}]),
        ("a silence of one timeout restarts the count",
         [{"t": 600, "poll": True}] + beats(1000, 2, "active") + [{"t": 1800, "beat": "active"},
                                                                   {"t": 2000, "beat": "active"},
                                                                   {"t": 2200, "beat": "active"}]),
    ]
    secondary = [{"name": n, "timeout_ms": T, "handback_beats": N, "events": ev,
                  "roles": hb_secondary_model(T, N, ev)} for n, ev in sec]
    pri = [
        ("alone or with an unknown partner: active from beat N", ["none"] * 5),
        ("partner read back standby: active from the next beat", ["standby", "none", "none"]),
        ("partner active: claims N-1 beats, then active", ["active", "active", "active", "active"]),
    ]
    primary = [{"name": n, "handback_beats": N, "replies": r, "says": hb_primary_model(N, r)} for n, r in pri]
    return {"address": HB_ADDRESS, "frame_register": HB_FRAME_REGISTER, "reply_register": HB_REPLY_REGISTER,
            "reply": {"standby": 0, "active": 1}, "period_ms": HB_PERIOD_MS, "timeout_ms": HB_TIMEOUT_MS,
            "handback_beats": HB_HANDBACK_BEATS, "frames": frames, "invalid_frames": invalid,
            "secondary": secondary, "primary": primary}


def watermark_vectors() -> list[dict]:
    def run(arrivals):
        held, upto, out = set(), -1, []
        for s in arrivals:
            held.add(s)
            while upto + 1 in held:
                upto += 1
            out.append(upto if upto >= 0 else None)
        return out

    cases = [
        ("in order", [0, 1, 2, 3]),
        ("seq 0 lost then resent", [1, 2, 3, 0]),
        ("gap in the middle filled later", [0, 1, 3, 4, 2, 5]),
        ("duplicates repeat the ack", [0, 1, 1, 0, 2, 2]),
        ("out of order replay", [4, 3, 2, 1, 0]),
        ("never starts without seq 0", [5, 6, 7]),
    ]
    return [{"name": n, "arrivals": a, "upto_after_each": run(a),
             "note": "null means no ack is sent yet for this (device, node, boot)"} for n, a in cases]


def bcd(n: int) -> int:
    return ((n // 10) << 4) | (n % 10)


def ds1307_vectors() -> list[dict]:
    out = []
    samples = [
        ("2000-01-01 reset value", (2000, 1, 1, 0, 0, 0), False, False),
        ("2023-11-14 22:13:20", (2023, 11, 14, 22, 13, 20), False, False),
        ("2099-12-31 23:59:59", (2099, 12, 31, 23, 59, 59), False, False),
        ("2024-02-29 leap day", (2024, 2, 29, 12, 0, 0), False, False),
        ("clock halted", (2000, 1, 1, 0, 0, 0), True, False),
        ("12-hour mode 10 PM", (2023, 11, 14, 22, 13, 20), False, True),
        ("12-hour mode 12 AM is midnight", (2023, 11, 14, 0, 5, 0), False, True),
        ("12-hour mode 12 PM is noon", (2023, 11, 14, 12, 5, 0), False, True),
    ]
    for name, (y, mo, d, h, mi, s), halted, twelve in samples:
        unix = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
        dow = ((unix // 86400 + 4) % 7) + 1  # 1 = Sunday; 1970-01-01 was a Thursday (5)
        if twelve:
            pm = h >= 12
            h12 = h % 12 or 12
            hour_reg = 0x40 | (0x20 if pm else 0) | bcd(h12)
        else:
            hour_reg = bcd(h)
        regs = [bcd(s) | (0x80 if halted else 0), bcd(mi), hour_reg, dow, bcd(d), bcd(mo), bcd(y - 2000)]
        out.append({"name": name, "registers": regs, "registers_hex": bytes(regs).hex(),
                    "datetime": f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z", "unix": unix,
                    "halted": halted, "twelve_hour": twelve,
                    "writes_as": None if twelve or halted else regs})
    return out


def cache_record_vectors() -> list[dict]:
    src_code = {"none": 0, "rtc": 1, "ntp": 2}
    out = []
    for name, boot, seq, ts, src, milli in [
        ("rtc reading", 7, 42, 1700000000123, "rtc", 21500),
        ("no clock", 1, 0, None, "none", -250),
        ("extremes", 4294967295, 4294967295, 946684800000, "ntp", -2147483648),
    ]:
        body = struct.pack("<IIqBi", boot, seq, -1 if ts is None else ts, src_code[src], milli)
        head = bytes([len(body)])
        crc = crc16_ccitt_false(head + body)
        record = b"\xA5" + head + body + struct.pack(">H", crc)
        out.append({"name": name, "boot": boot, "seq": seq, "ts": ts, "src": src, "val_milli": milli,
                    "record_hex": record.hex()})
    return out


# -- resend timer (protocol section 10), as the firmware ports keep it ---------------------------------------
# The ports draw the jitter from a 16-bit xorshift (shifts 7, 9, 8) started from the high half of
# seed * 2654435761 (0 taken as 1); a wait is T/2 + floor(T/2 * draw / 65536). A draw is taken when the timer
# is armed: at the first reading sent while none is waiting for an ack, at every ack that acknowledges cached
# records (T back to the base), and at every expiry (T doubled first, up to the cap). The scenario is polled
# every 10 ms; events at a time happen before that poll.

RESEND_POLL_MS = 10


class _Xorshift16:
    def __init__(self, seed: int) -> None:
        self.x = ((seed * 2654435761) & 0xFFFFFFFF) >> 16 or 1

    def draw(self) -> int:
        x = self.x
        x ^= (x << 7) & 0xFFFF
        x ^= x >> 9
        x ^= (x << 8) & 0xFFFF
        self.x = x
        return x


def resend_model(seed: int, base: int, cap: int, window: int, events: list[dict], end: int) -> list[dict]:
    """The resend rounds of a scenario: at each expiry, the seqs resent (the `window` oldest sent and
    unacknowledged), and the timeout and wait drawn for the next round."""
    rng = _Xorshift16(seed)
    timeout, wait, since, waiting = base, 0, 0, False
    unacked: list[int] = []  # sent, not yet acknowledged, oldest first
    next_seq = 0
    rounds = []

    def arm(now: int) -> None:
        nonlocal wait, since
        half = timeout // 2
        wait = half + ((half * rng.draw()) >> 16)
        since = now

    for now in range(0, end, RESEND_POLL_MS):
        for ev in events:
            if ev["t"] != now:
                continue
            if "record" in ev:
                for _ in range(ev["record"]):
                    unacked.append(next_seq)
                    next_seq += 1
                if not waiting:
                    waiting = True
                    arm(now)
            elif "ack" in ev:
                covered = [s for s in unacked if s <= ev["ack"]]
                if covered:
                    unacked = [s for s in unacked if s > ev["ack"]]
                    timeout = base
                    arm(now)
                    waiting = bool(unacked)
        if waiting and unacked and now - since >= wait:
            timeout = cap if timeout >= cap // 2 else timeout * 2
            arm(now)
            rounds.append({"t": now, "seqs": unacked[:window], "timeout_ms": timeout, "wait_ms": wait})
    return rounds


def resend_vectors() -> dict:
    base, cap, window = 5000, 60000, 8
    scenarios = [
        ("steady progress: acks within the shortest wait, never a resend", 11,
         [{"t": 0, "record": 20}] + [{"t": 2400 * (k + 1), "ack": k} for k in range(20)], 60000),
        ("a stalled gateway: the oldest window, at doubling jittered intervals up to the cap", 3,
         [{"t": 0, "record": 20}], 400000),
        ("progress resets the back-off; the next window starts at the new oldest record", 42,
         [{"t": 0, "record": 12}, {"t": 40000, "ack": 5}, {"t": 41000, "record": 3}], 120000),
        ("everything acknowledged: the timer stops", 7,
         [{"t": 0, "record": 4}, {"t": 30000, "ack": 3}], 90000),
    ]
    cases = []
    for name, seed, events, end in scenarios:
        cases.append({"name": name, "seed": seed, "end_ms": end, "events": events,
                      "rounds": resend_model(seed, base, cap, window, events, end)})
    return {"base_ms": base, "cap_ms": cap, "window": window, "poll_ms": RESEND_POLL_MS, "cases": cases}


def main() -> None:
    files = {
        "readings_valid.json": valid_vectors(),
        "readings_invalid.json": invalid_vectors(),
        "serial_lines.json": serial_vectors(),
        "acks.json": ack_vectors(),
        "status.json": status_vectors(),
        "heartbeat.json": heartbeat_vectors(),
        "ack_watermark.json": watermark_vectors(),
        "ds1307.json": ds1307_vectors(),
        "cache_records.json": cache_record_vectors(),
        "resend_timer.json": resend_vectors(),
    }
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, indent=1) + "\n")
        print("wrote", name)


if __name__ == "__main__":
    main()
