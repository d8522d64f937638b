"""The gateway against the shared protocol v1 vectors (shared/vectors/*.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import protocol
from gateway.protocol import Rejected

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def load(name: str):
    return json.loads((VECTORS / name).read_text())


def payload_of(vec: dict) -> bytes:
    return bytes.fromhex(vec["payload_hex"]) if "payload_hex" in vec else vec["payload"].encode()


def parse_mqtt(topic: str, payload: bytes, received_ms: int = 1700000001000) -> protocol.Reading:
    site, device, kind = protocol.parse_topic(topic, "iot")
    assert kind == "reading"
    return protocol.parse_reading(payload, site=site, received_ms=received_ms, topic_device=device)


@pytest.mark.parametrize("vec", load("readings_valid.json"), ids=lambda v: v["name"])
def test_valid_reading(vec):
    r = parse_mqtt(vec["topic"], payload_of(vec), vec["received_ms"])
    exp = vec["expect"]
    assert (r.device, r.node, r.boot, r.seq) == (exp["device"], exp["node"], exp["boot"], exp["seq"])
    assert (r.ts, r.src, r.unit, r.cached, r.clock) == (exp["ts"], exp["src"], exp["unit"], exp["cached"], exp["clock"])
    assert r.value == pytest.approx(exp["val"])
    assert r.site == "site-1"
    if vec["canonical"]:
        again = protocol.encode_reading(r.device, r.node, r.boot, r.seq, r.ts, r.src, r.value, r.unit, r.cached)
        assert again == vec["payload"]


@pytest.mark.parametrize("vec", load("readings_invalid.json"), ids=lambda v: v["name"])
def test_invalid_reading(vec):
    with pytest.raises(Rejected) as info:
        parse_mqtt(vec["topic"], payload_of(vec))
    assert info.value.reason == vec["reason"]
    assert info.value.field == vec["field"]


SERIAL = load("serial_lines.json")


@pytest.mark.parametrize("case", SERIAL["crc16_ccitt_false"], ids=lambda c: c["text"] or "empty")
def test_crc(case):
    assert f"{protocol.crc16_ccitt_false(case['text'].encode()):04X}" == case["crc"]


@pytest.mark.parametrize("vec", SERIAL["lines"], ids=lambda v: v["name"])
def test_serial_line(vec):
    if vec["valid"]:
        kind, payload = protocol.parse_frame(vec["line"])
        assert (kind, payload) == (vec["type"], vec["payload"])
        assert protocol.frame(kind, payload) == vec["line"].rstrip("\r")[:-4] + vec["crc"]
        if "reading_reason" in vec:
            with pytest.raises(Rejected) as info:
                protocol.parse_reading(payload.encode(), site="s", received_ms=0)
            assert info.value.reason == vec["reading_reason"]
    elif vec.get("console"):
        assert protocol.parse_frame(vec["line"]) is None
    else:
        with pytest.raises(Rejected) as info:
            protocol.parse_frame(vec["line"])
        assert info.value.reason == vec["reason"]


@pytest.mark.parametrize("vec", load("acks.json")["acks"], ids=lambda v: v["name"])
def test_ack_encoding(vec):
    a = vec["ack"]
    ack = protocol.Ack(a["device"], a["node"], a["boot"], a["upto"], a["t"])
    assert ack.payload() == vec["payload"]
    assert protocol.frame("A", ack.payload()) == vec["serial_line"]
    assert protocol.parse_ack(vec["payload"]) == ack
