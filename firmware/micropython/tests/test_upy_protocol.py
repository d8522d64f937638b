"""Protocol v1 encoder, frames and ack parser against shared/vectors (CPython and MicroPython)."""

import json

from _support import raises, vectors
from iotcollector import protocol
from iotcollector.crc16 import crc16
from iotcollector.protocol import EncodeError, FrameError


def _encode(e, cached=None):
    return protocol.encode_reading(e["device"], e["node"], e["boot"], e["seq"], e["ts"], e["src"], e["val_milli"],
                                   e["unit"], e["cached"] if cached is None else cached)


def test_canonical_readings_byte_exact():
    n = 0
    for v in vectors("readings_valid.json"):
        if not v["canonical"]:
            continue
        assert _encode(v["expect"]) == v["payload"], v["name"]
        assert len(v["payload"].encode()) <= protocol.MAX_PAYLOAD
        n += 1
    assert n >= 14


def test_val_from_float_matches_vectors():
    for v in vectors("readings_valid.json"):
        e = v["expect"]
        assert protocol.to_milli(e["val"]) == e["val_milli"], v["name"]
    assert protocol.format_milli(21500) == "21.5"
    assert protocol.format_milli(-250) == "-0.25"
    assert protocol.format_milli(3000) == "3"
    assert protocol.format_milli(-2147483648) == "-2147483.648"


# Invalid vectors the collector can produce from its own values: the encoder must refuse them with the
# gateway's reason and field. (Parsing problems such as not_json or too_large are the gateway's side.)
COLLECTOR_SIDE = ("out_of_range", "bad_clock", "bad_type")


def test_invalid_vectors_refused_by_encoder():
    checked = 0
    for v in vectors("readings_invalid.json"):
        if v["reason"] not in COLLECTOR_SIDE or "payload" not in v:
            continue
        try:
            d = json.loads(v["payload"])
        except ValueError:
            continue  # NaN / 1e999: not representable as a JSON value on every interpreter
        if type(d) is not dict:
            continue
        field = v["field"]
        if field in ("v",):
            continue  # the collector always writes v=1
        e = {"device": d.get("dev"), "node": d.get("node"), "boot": d.get("boot"), "seq": d.get("seq"),
             "ts": d.get("ts"), "src": d.get("src"), "val_milli": d.get("val"), "unit": d.get("unit"),
             "cached": d.get("cached")}
        if field == "val":
            exc = raises(EncodeError, protocol.to_milli, d["val"])
        else:
            if type(e["val_milli"]) in (int, float):
                e["val_milli"] = protocol.to_milli(e["val_milli"])
            exc = raises(EncodeError, _encode, e)
        assert exc.reason == v["reason"], (v["name"], exc.reason)
        assert exc.field == field, (v["name"], exc.field)
        checked += 1
    assert checked >= 20, checked


def test_non_finite_values_refused():
    assert raises(EncodeError, protocol.to_milli, float("nan")).field == "val"
    assert raises(EncodeError, protocol.to_milli, float("inf")).reason == "bad_type"
    assert raises(EncodeError, protocol.to_milli, True).reason == "bad_type"
    assert raises(EncodeError, protocol.to_milli, 2147484.0).reason == "out_of_range"


def test_crc_check_values():
    for c in vectors("serial_lines.json")["crc16_ccitt_false"]:
        assert "%04X" % crc16(c["text"].encode()) == c["crc"], c["text"]


def test_serial_lines():
    data = vectors("serial_lines.json")
    for v in data["lines"]:
        line = v["line"]
        if v.get("console"):
            assert protocol.parse_line(line) is None
        elif v["valid"]:
            kind, payload = protocol.parse_line(line)
            assert kind == v["type"] and payload == v["payload"], v["name"]
            if not line.endswith("\r") and line[-4:] == line[-4:].upper():
                assert protocol.frame(kind, payload) == line, v["name"]
        else:
            exc = raises(FrameError, protocol.parse_line, line)
            assert exc.reason == v["reason"], (v["name"], exc.reason)


def test_serial_frame_of_reading_vector():
    for v in vectors("serial_lines.json")["lines"]:
        if v["name"] == "reading":
            assert protocol.frame("R", v["payload"]) == v["line"]
            assert len(v["line"]) <= vectors("serial_lines.json")["max_line_bytes"]


def test_acks_parse():
    for v in vectors("acks.json")["acks"]:
        a = v["ack"]
        for source in (v["payload"], v["payload"].encode(), protocol.parse_line(v["serial_line"])[1]):
            ack = protocol.parse_ack(source)
            assert ack is not None, v["name"]
            assert (ack.dev, ack.node, ack.boot, ack.upto, ack.t) == (a["device"], a["node"], a["boot"], a["upto"],
                                                                       a["t"]), v["name"]
        assert v["topic"] == protocol.topic("iot", "site-1", a["device"], "ack")


def test_bad_acks_ignored():
    for payload in ("", "nope", "[1]", '{"v":2,"dev":"d","node":"n","boot":1,"upto":1}',
                    '{"v":1,"dev":"d","node":"n","boot":1}', '{"v":1,"dev":"d","node":"n","boot":-1,"upto":1}',
                    '{"v":1,"dev":"d","node":"n","boot":true,"upto":1}', b"\xff\xfe"):
        assert protocol.parse_ack(payload) is None, payload
    ack = protocol.parse_ack('{"v":1,"dev":"d","node":"n","boot":1,"upto":2,"t":"later"}')
    assert ack.upto == 2 and ack.t is None  # a bad clock never costs the ack itself


def test_status_and_will_match_protocol():
    spec = vectors("status.json")
    for case in spec["statuses"]:
        f = case["fields"]
        payload = protocol.encode_status(case["dev"], case["node"], f["boot"], f["role"], f["cached"], f["cap"],
                                         f["dropped"], f["reset"], f["store_err"], f["clock"], f["period"])
        assert payload == case["payload"], case["name"]
        assert len(payload.encode()) <= spec["max_payload_bytes"]
        assert protocol.frame("S", payload) == case["serial_line"], case["name"]
        assert protocol.encode_will(case["dev"], case["node"]) == case["will"]
    assert protocol.encode_will("pair-1", "b") == '{"v":1,"dev":"pair-1","node":"b","state":"offline"}'
    assert raises(EncodeError, protocol.encode_status, "pair-1", "b", 3, "boss").field == "role"
    assert raises(EncodeError, protocol.encode_status, "pair-1", "b", 3, "single", 0, 0, 0, "crash").field == "reset"
    assert raises(EncodeError, protocol.encode_status, "pair-1", "b", 3, "single", 65536).field == "cached"
