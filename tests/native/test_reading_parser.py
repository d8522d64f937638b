"""The ingest's native reading parser (gateway.native._reading) is built here and is what parse_reading uses; its
equality with the Python fast path on generated payloads is in tests/protocol/test_canonical_fast_path.py."""

from __future__ import annotations

from gateway import native, protocol
from gateway.protocol import encode_reading

RECEIVED_MS = 1_700_000_000_000


def test_the_reading_parser_is_built_here_and_used() -> None:
    assert protocol._canonical is not protocol._parse_canonical, native.READING_WHY_NOT


def test_a_canonical_payload_reads_as_the_python_fast_path_reads_it() -> None:
    payload = encode_reading("d-1", "a", 7, 42, RECEIVED_MS - 5, "rtc", -21.25, "°C".encode().decode()).encode()
    # a non-ASCII unit is outside the canonical layout: both say None and the general path decides
    assert protocol._canonical(payload, "s", RECEIVED_MS, "d-1") is None
    assert protocol._parse_canonical(payload, "s", RECEIVED_MS, "d-1") is None
    payload = encode_reading("d-1", "a", 7, 42, RECEIVED_MS - 5, "rtc", -21.25, "C", True).encode()
    got = protocol._canonical(payload, "s", RECEIVED_MS, "d-1")
    assert type(got) is protocol.Reading and repr(got) == repr(protocol._parse_canonical(payload, "s", RECEIVED_MS, "d-1"))
    assert got == protocol.Reading("d-1", "a", 7, 42, "s", RECEIVED_MS - 5, "rtc", -21.25, "C", True, "ok", RECEIVED_MS)


def test_what_it_cannot_judge_goes_to_the_python_path() -> None:
    payload = encode_reading("d", "a", 1, 1, None, "none", 1.0, "C").encode()
    assert protocol._canonical(bytearray(payload), "s", RECEIVED_MS, "d") is None  # not bytes
    assert protocol._canonical(payload, "s", 2**70, "d") is None  # an arrival time no C integer holds
    assert protocol.parse_reading(bytearray(payload), site="s", received_ms=2**70, topic_device="d").seq == 1
