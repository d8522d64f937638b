"""A seeded generator of hostile collector messages (MQTT topic + payload, or serial lines), every one of which
the gateway must quarantine or refuse: none is a valid reading or status.

Hostile readings name devices `h<N>` (or, for dev ≠ topic, a good device on a hostile topic), so a rejected
message that carries a valid identity never touches a good device's stream.
"""

from __future__ import annotations

import json
import random

from gateway import protocol

FIELDS = ("v", "dev", "node", "boot", "seq", "ts", "src", "val", "unit", "cached")
WRONG = {  # per field: values of a wrong type or out of range
    "v": ["1", 1.0, True, None, [], {}, 2, 0, -1],
    "dev": [1, None, True, [], {}, "", "a" * 33, "bad dev", "dév", "x/y", "\u0000"],
    "node": [1, None, False, [], "", "n" * 17, "a b"],
    "boot": ["1", 1.5, True, None, -1, 2**32, 10**30, [], {}],
    "seq": ["0", 0.5, False, None, -5, 2**32, 10**40, [1]],
    "ts": ["1700000000000", 1.7e12, True, [], {}, -1, protocol.TS_MAX + 1, 10**25],
    "src": [1, None, True, [], "gps", ""],
    "val": ["1.5", True, None, [], {}, "NaN"],
    "unit": [1, None, [], "", "u" * 17, 'a"b', "\u00b0C", "\t"],
    "cached": [1, 0, "true", None, [], {}],
}


def reading_obj(dev: str, seq: int) -> dict:
    return {"v": 1, "dev": dev, "node": "a", "boot": 1, "seq": seq, "ts": 1700000000000 + seq, "src": "rtc",
            "val": 1.25, "unit": "C", "cached": False}


class HostileGen:
    """`next()` → (kind, topic, payload); `kind` names the case (for failure messages)."""

    def __init__(self, seed: int, prefix: str, size_limit: int, good_devices: list[str]) -> None:
        self.rng = random.Random(seed)
        self.prefix, self.size_limit, self.good_devices = prefix, size_limit, good_devices
        self.n = 0

    def _topic(self, dev: str, kind: str = "reading") -> str:
        return f"{self.prefix}/s1/{dev}/{kind}"

    def next(self) -> tuple[str, str, bytes]:  # noqa: C901 - one branch per case, read as a table
        r = self.rng
        self.n += 1
        dev = f"h{r.randrange(50)}"
        seq = r.randrange(1000)
        case = r.choice(("deep", "deep", "at_limit", "not_utf8", "nul", "nonfinite", "huge_int", "duplicate",
                         "wrong_type", "wrong_type", "wrong_type", "missing", "dev_not_topic", "odd_topic",
                         "bad_status", "big_random", "not_object"))
        if case == "deep":
            depth = r.choice((5, 5, 50, 50, 1000, 5000, 5000, 100_000, self.size_limit // 2))
            opener, closer = r.choice((("[", "]"), ('{"a":', "}")))
            payload = (opener * depth + "1" + closer * r.choice((0, depth))).encode()[: self.size_limit]
            return case, self._topic(dev, r.choice(("reading", "status"))), payload
        if case == "at_limit":  # one in five exactly at the broker's limit, the others large
            size = self.size_limit if r.random() < 0.2 else r.randrange(193, 65536)
            return case, self._topic(dev), bytes([r.choice(b'[{"a,1 ')]) * size
        if case == "big_random":
            return case, self._topic(dev), r.randbytes(r.randrange(193, 4096))
        if case == "not_utf8":
            body = json.dumps(reading_obj(dev, seq)).encode()
            cut = r.randrange(len(body))
            return case, self._topic(dev), body[:cut] + r.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80")) + body[cut:]
        if case == "nul":
            body = json.dumps(reading_obj(dev, seq))
            cut = r.randrange(len(body))
            return case, self._topic(dev), (body[:cut] + "\x00" + body[cut:]).encode()
        if case == "nonfinite":
            body = json.dumps(reading_obj(dev, seq)).replace('"val": 1.25', f'"val": {r.choice(("NaN", "Infinity", "-Infinity", "1e999"))}')
            return case, self._topic(dev), body.encode()
        if case == "huge_int":
            key = r.choice(("seq", "boot", "ts", "v"))
            body = json.dumps(reading_obj(dev, seq)).replace(f'"{key}": ', f'"{key}": {"9" * r.choice((20, 200, 5000))}0 and ', 1)
            body = body.replace(" and ", "")  # the old value's digits follow: one huge integer
            return case, self._topic(dev), body.encode()[: self.size_limit]
        if case == "duplicate":
            obj = reading_obj(dev, seq)
            key = r.choice(FIELDS)
            text = json.dumps(obj)
            return case, self._topic(dev), (text[:-1] + f', "{key}": {json.dumps(obj[key])}}}').encode()
        if case == "wrong_type":
            obj = reading_obj(dev, seq)
            key = r.choice(FIELDS)
            obj[key] = r.choice(WRONG[key])
            topic_dev = obj["dev"] if key == "dev" and isinstance(obj["dev"], str) and protocol.valid_name(obj["dev"], "dev") else dev
            return case, self._topic(topic_dev), json.dumps(obj).encode()
        if case == "missing":
            obj = reading_obj(dev, seq)
            del obj[r.choice([f for f in FIELDS if f != "cached"])]
            return case, self._topic(dev), json.dumps(obj).encode()
        if case == "dev_not_topic":  # a valid reading of a good device, published on a hostile device's topic
            victim = r.choice(self.good_devices)
            return case, self._topic(dev), protocol.encode_reading(victim, "a", 1, r.randrange(500), 1700000000000,
                                                                   "rtc", 1.0, "C").encode()
        if case == "odd_topic":
            level = r.choice(("", "s p", "é", "a" * 40, "a.b"))  # NUL in a topic: the broker drops the client
            topic = r.choice((f"{self.prefix}/{level}/{dev}/reading", f"{self.prefix}/s1/{level}/reading",
                              f"{self.prefix}/s1/{dev}/readings", f"{self.prefix}/s1/{dev}/reading/x",
                              f"{self.prefix}/s1/{dev}"))
            return case, topic, protocol.encode_reading(dev, "a", 1, seq, 1700000000000, "rtc", 1.0, "C").encode()
        if case == "bad_status":
            obj = {"v": 1, "dev": dev, "node": "a", "state": "online", "cached": 1}
            key = r.choice(("v", "dev", "node", "state", "cached", "reset", "clock", "period"))
            obj[key] = r.choice((None, [], "x" * 300, "a b") if key == "node" else (None, [], "x" * 300, -1, "zzz", 1.5))
            return case, self._topic(dev, "status"), json.dumps(obj).encode()
        return case, self._topic(dev), r.choice((b"[]", b"1", b'"x"', b"null", b"true", b"[{}]"))

    def serial_line(self) -> bytes:
        """One hostile serial line (always newline-terminated, so the next good frame starts a line)."""
        r = self.rng
        case = r.choice(("garbage", "long", "overlong", "noise", "bad_crc", "hostile_frame", "unknown_type"))
        if case == "garbage":
            return b"!" + r.randbytes(r.randrange(1, 200)).replace(b"\n", b"") + b"\n"
        if case == "long":
            return b"!R " + b"x" * r.randrange(260, 1000) + b"\n"
        if case == "overlong":
            return b"!R {" + b"[" * r.randrange(2000, 20000) + b"\n"
        if case == "noise":
            return b"!" + bytes(r.randrange(256) for _ in range(r.randrange(1, 300))).replace(b"\n", b"") + b"\n"
        if case == "bad_crc":
            line = protocol.frame("R", protocol.encode_reading(f"h{r.randrange(9)}", "a", 1, 0, None, "none", 1, "C"))
            return (line[:-4] + "0000" if not line.endswith("0000") else line[:-4] + "0001").encode() + b"\n"
        if case == "unknown_type":
            return protocol.frame("Z", "{}").encode() + b"\n"
        _kind, _topic, payload = self.next()
        while _kind in ("dev_not_topic", "odd_topic", "bad_status"):  # serial has no topic; statuses differ
            _kind, _topic, payload = self.next()
        text = payload[:240].decode("latin-1").replace("\n", " ").replace("\r", " ")
        return protocol.frame("R", text).encode("latin-1") + b"\n"
