"""MQTT 5 packets for the gateway's ingest connection: the few the gateway sends, and a parser for what a
broker sends back (OASIS MQTT Version 5.0, section 2 and 3).

Only what a subscriber with QoS 1 needs: CONNECT, SUBSCRIBE, PUBLISH (QoS 0/1), PUBACK, PINGREQ and DISCONNECT
out; CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP and DISCONNECT in. Pure functions on bytes, so the parser can be
fed hostile input in tests; everything about sockets lives in `gateway.ingest.session`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from gateway import native

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT, AUTH = 12, 13, 14, 15

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # reason 0 (normal): the broker keeps a session that has an expiry

# Property identifiers used here, and the wire type of every MQTT 5 property (section 2.2.2.2), so that a
# property this client does not use is skipped correctly.
SESSION_EXPIRY, SERVER_KEEP_ALIVE, REASON_STRING, RECEIVE_MAXIMUM = 0x11, 0x13, 0x1F, 0x21
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _STR, 0x08: _STR, 0x09: _BIN, 0x0B: _VARINT, 0x11: _U32, 0x12: _STR,
    0x13: _U16, 0x15: _STR, 0x16: _BIN, 0x17: _BYTE, 0x18: _U32, 0x19: _BYTE, 0x1A: _STR, 0x1C: _STR,
    0x1F: _STR, 0x21: _U16, 0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}
MAX_REMAINING = 268_435_455  # the largest remaining length four varint bytes can carry


class MalformedPacket(ValueError):
    """The broker sent bytes that are not a valid MQTT 5 packet: the connection cannot continue."""


class Message(NamedTuple):
    """A PUBLISH received: `mid` is its packet identifier (0 for QoS 0)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool = False


# A Message built straight from its fields: the named tuple's own constructor is a Python-level call, paid by every
# reading on the ingest path.
_new_tuple = tuple.__new__


class Packet(NamedTuple):
    """A control packet other than PUBLISH: its type, first byte's flags and body (after the fixed header)."""

    kind: int
    flags: int
    body: bytes


# --- encoding -------------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    """The MQTT variable byte integer (1-4 bytes)."""
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError(f"cannot encode {n} as a variable byte integer")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"string of {len(raw)} bytes is too long for MQTT (at most 65535)")
    return struct.pack(">H", len(raw)) + raw


def binary(raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise ValueError(f"binary field of {len(raw)} bytes is too long for MQTT (at most 65535)")
    return struct.pack(">H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def connect(client_id: str, *, keepalive: int, clean_start: bool, session_expiry: int = 0,
            receive_maximum: int = 0, username: str = "", password: str = "") -> bytes:
    """CONNECT with protocol level 5 and the session properties the gateway uses."""
    flags = (0x02 if clean_start else 0) | (0x80 if username else 0) | (0x40 if username and password else 0)
    props = b""
    if session_expiry:
        props += bytes((SESSION_EXPIRY,)) + struct.pack(">I", session_expiry)
    if receive_maximum:
        props += bytes((RECEIVE_MAXIMUM,)) + struct.pack(">H", receive_maximum)
    body = utf8("MQTT") + bytes((5, flags)) + struct.pack(">H", keepalive) + varint(len(props)) + props
    body += utf8(client_id)
    if username:
        body += utf8(username)
        if password:
            body += binary(password.encode("utf-8"))
    return _packet(0x10, body)


def subscribe(packet_id: int, topics: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE to (filter, maximum QoS) pairs; `$share/<group>/...` filters are plain filters here."""
    body = struct.pack(">H", packet_id) + b"\x00"
    for topic, qos in topics:
        body += utf8(topic) + bytes((qos & 0x03,))
    return _packet(0x82, body)


def publish(topic: str, payload: bytes, *, qos: int, packet_id: int = 0) -> bytes:
    """PUBLISH with no properties."""
    body = utf8(topic) + (struct.pack(">H", packet_id) if qos else b"") + b"\x00" + payload
    return _packet(0x30 | (qos << 1), body)


_PUBACK = struct.Struct(">BBH")


def pubacks(mids: list[int]) -> bytes:
    """PUBACKs (reason: success, no properties: remaining length 2) for many packet ids, as one write."""
    pack = _PUBACK.pack
    return b"".join([pack(0x40, 2, mid) for mid in mids])


# --- decoding -------------------------------------------------------------------------------------
def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(value, position after it), None if more bytes are needed; MalformedPacket beyond four bytes."""
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= end:
            return None
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MalformedPacket("variable byte integer longer than four bytes")


def split(data: bytes, limit: int = MAX_REMAINING) -> tuple[list[Message | Packet], bytes]:
    """Every complete packet at the start of `data`, and the bytes left over (the start of the next packet).

    PUBLISH packets become Messages (topic decoded, properties skipped); the others stay raw Packets.
    `limit`: the largest remaining length accepted (the client's maximum packet size). Raises MalformedPacket.
    In C where gateway.native is built (`_splitter`), otherwise `_split`: the same result either way.
    """
    return _splitter(data, limit)


def _split(data: bytes, limit: int = MAX_REMAINING) -> tuple[list[Message | Packet], bytes]:
    """`split` in Python: the authority the C version is tested against."""
    out: list[Message | Packet] = []
    pos, end = 0, len(data)
    while end - pos >= 2:
        first, b1 = data[pos], data[pos + 1]
        if b1 < 0x80:  # a one-byte remaining length (acks, small packets)
            length, start = b1, pos + 2
        elif end - pos >= 3 and data[pos + 2] < 0x80:  # two bytes: a reading's PUBLISH (128 B to 16 KiB)
            length, start = (b1 & 0x7F) | (data[pos + 2] << 7), pos + 3
        else:
            got = _read_varint(data, pos + 1, end)
            if got is None:
                break
            length, start = got
        if length > limit:
            raise MalformedPacket(f"packet of {length} bytes is larger than the {limit} accepted")
        stop = start + length
        if stop > end:
            break
        kind = first >> 4
        if kind == PUBLISH:
            out.append(_publish(first, data, start, stop))
        elif kind in (CONNACK, PUBACK, SUBACK, PINGRESP, DISCONNECT, AUTH):
            out.append(Packet(kind, first & 0x0F, data[start:stop]))
        else:
            raise MalformedPacket(f"unexpected packet type {kind} from the broker")
        pos = stop
    return out, data[pos:]


def _publish(first: int, data: bytes, start: int, stop: int) -> Message:
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    if stop - start < 3:
        raise MalformedPacket("PUBLISH too short for its topic")
    tlen = (data[start] << 8) | data[start + 1]
    p = start + 2 + tlen
    if p > stop:
        raise MalformedPacket("PUBLISH topic longer than the packet")
    try:
        topic = data[start + 2:p].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("PUBLISH topic is not UTF-8") from None
    mid = 0
    if qos:
        if p + 2 > stop:
            raise MalformedPacket("PUBLISH without its packet identifier")
        mid = (data[p] << 8) | data[p + 1]
        p += 2
    if p < stop and data[p] == 0:  # no properties, the usual case
        p += 1
    else:
        got = _read_varint(data, p, stop)
        if got is None:
            raise MalformedPacket("PUBLISH properties cut short")
        plen, p = got
        p += plen
        if p > stop:
            raise MalformedPacket("PUBLISH properties longer than the packet")
    return _new_tuple(Message, (topic, data[p:stop], mid, qos, bool(first & 0x01)))


_splitter = native.packet_splitter(Message, Packet, MalformedPacket) or _split


def properties(body: bytes, pos: int) -> tuple[dict[int, object], int]:
    """The properties starting at `pos` (length first) as {identifier: value}, and the position after them.

    User properties (0x26) are gathered in a list; an unknown identifier is malformed (its length is unknown)."""
    got = _read_varint(body, pos, len(body))
    if got is None:
        raise MalformedPacket("properties cut short")
    length, p = got
    end = p + length
    if end > len(body):
        raise MalformedPacket("properties longer than the packet")
    out: dict[int, object] = {}
    while p < end:
        ident = body[p]
        kind = PROPERTY_TYPES.get(ident)
        p += 1
        if kind is None:
            raise MalformedPacket(f"unknown property 0x{ident:02x}")
        if kind == _BYTE:
            size = 1
            value: object = body[p] if p < end else None
        elif kind == _U16:
            size = 2
            value = int.from_bytes(body[p:p + 2], "big")
        elif kind == _U32:
            size = 4
            value = int.from_bytes(body[p:p + 4], "big")
        elif kind == _VARINT:
            got = _read_varint(body, p, end)
            if got is None:
                raise MalformedPacket("property cut short")
            value, after = got
            size = after - p
        elif kind in (_STR, _BIN):
            n = int.from_bytes(body[p:p + 2], "big")
            size = 2 + n
            raw = body[p + 2:p + 2 + n]
            value = raw.decode("utf-8", "replace") if kind == _STR else raw
        else:  # a user property: two strings
            n1 = int.from_bytes(body[p:p + 2], "big")
            n2 = int.from_bytes(body[p + 2 + n1:p + 4 + n1], "big")
            size = 4 + n1 + n2
            value = (body[p + 2:p + 2 + n1].decode("utf-8", "replace"),
                     body[p + 4 + n1:p + 4 + n1 + n2].decode("utf-8", "replace"))
        if p + size > end:
            raise MalformedPacket(f"property 0x{ident:02x} cut short")
        p += size
        if kind == _PAIR:
            out.setdefault(ident, []).append(value)  # type: ignore[union-attr]
        else:
            out[ident] = value
    return out, end


def connack(body: bytes) -> tuple[bool, int, dict[int, object]]:
    """(session present, reason code, properties) of a CONNACK body."""
    if len(body) < 2:
        raise MalformedPacket("CONNACK too short")
    props, _ = properties(body, 2) if len(body) > 2 else ({}, 2)
    return bool(body[0] & 0x01), body[1], props


def suback(body: bytes) -> tuple[int, list[int]]:
    """(packet identifier, one reason code per filter) of a SUBACK body."""
    if len(body) < 3:
        raise MalformedPacket("SUBACK too short")
    _props, p = properties(body, 2)
    return (body[0] << 8) | body[1], list(body[p:])


def puback_id(body: bytes) -> int:
    """The packet identifier a PUBACK acknowledges (its reason code, if any, is not needed here)."""
    if len(body) < 2:
        raise MalformedPacket("PUBACK too short")
    return (body[0] << 8) | body[1]


def disconnect_reason(body: bytes) -> tuple[int, str]:
    """(reason code, reason string) of a DISCONNECT the broker sent."""
    if not body:
        return 0, ""
    props, _ = properties(body, 1) if len(body) > 1 else ({}, 1)
    return body[0], str(props.get(REASON_STRING, ""))
