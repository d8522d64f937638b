"""The ingest connection's MQTT 5 packets: encodings checked against the specification's byte layouts, the
parser fed streams cut anywhere and hostile bytes (a real broker is in test_session.py)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest import wire

topics = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)
payloads = st.binary(max_size=300)


def test_puback_batch_is_one_packet_per_id_in_order():
    assert wire.pubacks([1, 258, 65535]) == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff"
    assert wire.pubacks([]) == b""


def test_connect_layout_carries_session_properties_and_credentials():
    pkt = wire.connect("gw-1", keepalive=10, clean_start=False, session_expiry=3600, receive_maximum=65535,
                       username="gw", password="s3cret")
    body = pkt[2:]  # one-byte remaining length for a packet this small
    assert pkt[0] == 0x10 and pkt[1] == len(body)
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0x80 | 0x40  # user name and password, no clean start
    assert body[8:10] == struct.pack(">H", 10)
    props = b"\x11" + struct.pack(">I", 3600) + b"\x21" + struct.pack(">H", 65535)
    assert body[10] == len(props) and body[11:11 + len(props)] == props
    rest = body[11 + len(props):]
    assert rest == b"\x00\x04gw-1" + b"\x00\x02gw" + b"\x00\x06s3cret"
    assert wire.connect("x", keepalive=5, clean_start=True)[9] == 0x02  # clean start, no credentials


def test_subscribe_layout():
    pkt = wire.subscribe(7, [("$share/g/t/+/+/reading", 1), ("$SYS/broker/publish/messages/dropped", 0)])
    assert pkt[0] == 0x82
    body = pkt[2:]
    assert body[:3] == b"\x00\x07\x00"  # packet id, no properties
    assert body[3:] == (b"\x00\x16$share/g/t/+/+/reading\x01"
                        b"\x00\x24$SYS/broker/publish/messages/dropped\x00")


@given(topics, payloads, st.integers(1, 65535), st.sampled_from([0, 1]))
def test_publish_round_trip(topic, payload, mid, qos):
    pkt = wire.publish(topic, payload, qos=qos, packet_id=mid)
    out, rest = wire.split(pkt)
    assert rest == b""
    assert out == [wire.Message(topic, payload, mid if qos else 0, qos, False)]


@given(st.lists(st.tuples(topics, payloads, st.integers(1, 65535)), min_size=1, max_size=30),
       st.lists(st.integers(1, 400), max_size=20))
def test_a_stream_cut_anywhere_gives_every_message_once_in_order(messages, cuts):
    stream = b"".join(wire.publish(t, p, qos=1, packet_id=m) for t, p, m in messages) + b"\xd0\x00"  # + PINGRESP
    got, rest, pos = [], b"", 0
    for cut in [*cuts, len(stream)]:
        chunk, pos = stream[pos:pos + cut], pos + cut
        packets, rest = wire.split(rest + chunk)
        got += packets
        if pos >= len(stream):
            break
    packets, rest = wire.split(rest + stream[pos:])
    got += packets
    assert rest == b""
    assert got[:-1] == [wire.Message(t, p, m, 1, False) for t, p, m in messages]
    assert got[-1] == wire.Packet(wire.PINGRESP, 0, b"")


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_hostile_bytes_parse_or_raise_malformed_only(data):
    try:
        packets, rest = wire.split(data)
    except wire.MalformedPacket:
        return
    assert len(rest) <= len(data)
    for p in packets:
        if isinstance(p, wire.Packet):
            for parse in (wire.connack, wire.suback, wire.puback_id, wire.disconnect_reason):
                try:
                    parse(p.body)
                except wire.MalformedPacket:
                    pass


@given(st.integers(0, wire.MAX_REMAINING))
def test_varint_round_trip(n):
    enc = wire.varint(n)
    assert 1 <= len(enc) <= 4
    assert wire._read_varint(enc, 0, len(enc)) == (n, len(enc))


def test_varint_of_five_bytes_is_malformed():
    with pytest.raises(wire.MalformedPacket):
        wire.split(b"\x30\xff\xff\xff\xff\x01")


def test_oversized_packet_is_refused_before_it_is_buffered():
    with pytest.raises(wire.MalformedPacket, match="larger"):
        wire.split(b"\x30" + wire.varint(2_000_000), limit=1_000_000)


def test_connack_properties_and_reason():
    props = b"\x21\x00\x14" + b"\x13\x00\x05" + b"\x26\x00\x01a\x00\x01b" + b"\x1f\x00\x02hi"
    body = b"\x01\x00" + wire.varint(len(props)) + props
    present, code, got = wire.connack(body)
    assert present and code == 0
    assert got[wire.RECEIVE_MAXIMUM] == 20 and got[wire.SERVER_KEEP_ALIVE] == 5
    assert got[0x26] == [("a", "b")] and got[wire.REASON_STRING] == "hi"
    assert wire.connack(b"\x00\x86") == (False, 0x86, {})  # MQTT 5 allows no properties on a refusal
    with pytest.raises(wire.MalformedPacket):
        wire.connack(b"\x00\x00\x03\x99\x00\x00")  # an unknown property id


def test_suback_and_disconnect():
    assert wire.suback(b"\x00\x07\x00\x01\x87") == (7, [1, 0x87])
    assert wire.disconnect_reason(b"") == (0, "")
    assert wire.disconnect_reason(b"\x93\x05\x1f\x00\x02rm") == (0x93, "rm")


# The C splitter (gateway.native, where built) against the Python one, which stays the authority.
NATIVE_SPLIT = wire._splitter if wire._splitter is not wire._split else None


def split_outcome(fn, data: bytes, limit: int) -> tuple:
    """Packets with their types, and the rest; or the MalformedPacket's message."""
    try:
        packets, rest = fn(data, limit)
    except wire.MalformedPacket as exc:
        return ("malformed", str(exc))
    return ("split", [(type(p).__name__, tuple(p)) for p in packets], rest)


control = st.sampled_from([b"\xd0\x00", b"\x40\x02\x00\x07", b"\x90\x04\x00\x01\x00\x01", b"\x20\x03\x00\x00\x00",
                           b"\xe0\x01\x8e", b"\xf0\x00", b"\xc0\x00", b"\x80\x00"])


@st.composite
def broker_streams(draw) -> bytes:  # noqa: ANN001
    """PUBLISHes (QoS 0/1, with and without properties, retained or not) and control packets, then edits."""
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            topic, payload, qos = draw(topics), draw(payloads), draw(st.sampled_from([0, 1]))
            pkt = bytearray(wire.publish(topic, payload, qos=qos, packet_id=draw(st.integers(1, 65535))))
            pkt[0] |= draw(st.sampled_from([0, 0, 0, 1, 6]))  # retain, or the QoS 3 no broker may send
            parts.append(bytes(pkt))
        else:
            parts.append(draw(control))
    data = bytearray(b"".join(parts))
    for pos, insert, delete in draw(st.lists(st.tuples(st.integers(0, 700), st.binary(max_size=4), st.integers(0, 3)),
                                             max_size=3)):
        pos = min(pos, len(data))
        data[pos:pos + delete] = insert
    return bytes(data)


@pytest.mark.skipif(NATIVE_SPLIT is None, reason="gateway.native is not built")
@settings(max_examples=1500)
@given(st.one_of(broker_streams(), st.binary(max_size=600)),
       st.sampled_from([wire.MAX_REMAINING, wire.MAX_REMAINING, wire.MAX_REMAINING, 64, 3, 0]))
def test_the_c_splitter_gives_exactly_what_the_python_one_gives(data, limit):
    assert split_outcome(NATIVE_SPLIT, data, limit) == split_outcome(wire._split, data, limit)


@pytest.mark.skipif(NATIVE_SPLIT is None, reason="gateway.native is not built")
def test_the_c_splitter_raises_what_the_python_one_raises():
    cases = {
        b"\x32\x02\x00\x00": "PUBLISH too short for its topic",
        b"\x30\x04\x00\x05ab": "PUBLISH topic longer than the packet",
        b"\x30\x04\x00\x01\xff\x00": "PUBLISH topic is not UTF-8",
        b"\x30\x06\x00\x03\xed\xa0\x80\x00": "PUBLISH topic is not UTF-8",  # an encoded surrogate
        b"\x32\x04\x00\x01t\x00": "PUBLISH without its packet identifier",
        b"\x30\x04\x00\x01t\x80": "PUBLISH properties cut short",
        b"\x30\x05\x00\x01t\x05x": "PUBLISH properties longer than the packet",
        b"\x30\x08\x00\x01t\xff\xff\xff\xff\x01": "variable byte integer longer than four bytes",
        b"\x30\xff\xff\xff\xff\x01": "variable byte integer longer than four bytes",
        b"\x36\x03\x00\x01t": "PUBLISH with QoS 3",
        b"\x10\x00": "unexpected packet type 1 from the broker",
    }
    for data, message in cases.items():
        assert split_outcome(wire._split, data, wire.MAX_REMAINING) == ("malformed", message), data
        assert split_outcome(NATIVE_SPLIT, data, wire.MAX_REMAINING) == ("malformed", message), data
    for data in (b"\x30", b"\x30\x80", b"\x30\x05\x00\x01t", b"\x30\x03\x00\x01t\x00\x00"):  # incomplete
        assert split_outcome(NATIVE_SPLIT, data, 100) == split_outcome(wire._split, data, 100)
    with_properties = {  # PUBLISHes carrying properties, skipped: the payload starts after them
        b"\x30\x08\x00\x01t\x02\x01\x01hi": ("t", b"hi", 0, 0, False),
        b"\x33\x0a\x00\x01t\x00\x07\x02\x01\x01hi": ("t", b"hi", 7, 1, True),
        b"\x30\x06\x00\x01t\x01\x01x": ("t", b"x", 0, 0, False),
    }
    for data, fields in with_properties.items():
        assert split_outcome(wire._split, data, 100) == ("split", [("Message", fields)], b"")
        assert split_outcome(NATIVE_SPLIT, data, 100) == ("split", [("Message", fields)], b"")


def test_the_c_splitter_is_built_here_and_used():
    from gateway import native  # noqa: PLC0415 - only this test needs it

    assert NATIVE_SPLIT is not None, native.PACKETS_WHY_NOT
