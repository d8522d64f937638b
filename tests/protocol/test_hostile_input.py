"""Untrusted bytes through the protocol parsers: only Rejected ever comes out (never RecursionError, TypeError,
...), size is checked before parsing, depth and duplicate keys are refused, and an identity counts only on its
own device's topic. Statuses: any subset of the optional keys, unknown keys ignored; the status book is bounded."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import protocol
from gateway.device_status import DeviceStatus, StatusBook, parse_status
from gateway.protocol import Rejected, identity_of, loads_bounded, parse_reading

GOOD = protocol.encode_reading("dev1", "a", 1, 5, 1700000000000, "rtc", 1.5, "C").encode()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


def only_rejected(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Rejected as rej:
        return rej


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_ever_give_rejected(raw):
    only_rejected(parse_reading, raw, site="s", received_ms=1, topic_device="dev1")
    only_rejected(parse_status, raw, site="s", received_ms=1, topic_device="dev1")
    assert identity_of(raw) is None or isinstance(identity_of(raw), tuple)


def valid_for(key: str, value) -> bool:
    """The protocol's rule for one field of GOOD (src "rtc" with a ts, topic device "dev1"), written apart from it."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return {
        "v": is_int and value == 1,
        "dev": value == "dev1",
        "node": isinstance(value, str) and protocol.valid_name(value, "node"),
        "boot": is_int and 0 <= value <= protocol.U32_MAX,
        "seq": is_int and 0 <= value <= protocol.U32_MAX,
        "ts": is_int and 0 <= value <= protocol.TS_MAX,
        "src": value in ("rtc", "ntp"),
        "val": (is_int or isinstance(value, float)) and abs(value) != float("inf") and value == value,
        "unit": isinstance(value, str) and 1 <= len(value) <= 16 and all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in value),
        "cached": isinstance(value, bool),
    }[key]


@settings(max_examples=400, deadline=None)
@given(json_values, st.sampled_from(("v", "dev", "node", "boot", "seq", "ts", "src", "val", "unit", "cached")))
def test_any_json_value_in_any_field_is_stored_only_when_valid(value, key):
    obj = json.loads(GOOD)
    obj[key] = value
    payload = json.dumps(obj).encode()
    result = only_rejected(parse_reading, payload, site="s", received_ms=1, topic_device="dev1")
    if len(payload) > protocol.MAX_PAYLOAD:
        assert isinstance(result, Rejected) and result.reason == "too_large"
    else:
        assert isinstance(result, protocol.Reading) == valid_for(key, value), (key, value, result)


@pytest.mark.parametrize("depth", [5, 1000, 100_000, 1_000_000])
def test_deep_nesting_is_rejected_before_parsing(depth):
    raw = b"[" * depth
    rej = only_rejected(parse_reading, raw, site="s", received_ms=1)
    assert isinstance(rej, Rejected) and rej.reason == ("not_json" if depth <= protocol.MAX_PAYLOAD else "too_large")
    assert identity_of(raw) is None  # this raised RecursionError once
    with pytest.raises(Rejected, match="nested deeper"):
        loads_bounded(b"[" * 50 + b"]" * 50, 10_000)


def test_duplicate_keys_nan_and_huge_ints():
    dup = GOOD[:-1] + b',"seq":6}'
    assert only_rejected(parse_reading, dup, site="s", received_ms=1).reason == "not_json"
    nan = GOOD.replace(b'"val":1.5', b'"val":NaN')
    assert only_rejected(parse_reading, nan, site="s", received_ms=1).field == "val"
    huge = GOOD.replace(b'"seq":5', b'"seq":' + b"9" * 100)
    assert only_rejected(parse_reading, huge, site="s", received_ms=1).reason == "too_large"
    assert only_rejected(parse_reading, GOOD.replace(b'"seq":5', b'"seq":99999999999'), site="s",
                         received_ms=1).reason == "out_of_range"


def test_identity_only_on_its_own_topic():
    bad_value = GOOD.replace(b'"val":1.5', b'"val":"x"')
    assert identity_of(bad_value, topic_device="dev1") == ("dev1", "a", 1, 5)
    assert identity_of(bad_value, topic_device="evil") is None
    rej = only_rejected(parse_reading, bad_value, site="s", received_ms=1, topic_device="evil")
    assert rej.reason == "topic_mismatch"  # checked before the other fields


def test_status_subsets_unknown_keys_and_rejections():
    full = {"v": 1, "dev": "pair-1", "node": "a", "boot": 3, "state": "online", "role": "active", "cached": 12,
            "cap": 500, "dropped": 0, "reset": "wdt", "store_err": 0, "clock": "rtc", "period": 5000, "new": [1]}
    s = parse_status(json.dumps(full).encode(), site="s1", received_ms=7, topic_device="pair-1")
    assert (s.cap, s.reset, s.period_ms, s.received_ms, s.key) == (500, "wdt", 5000, 7, ("s1", "pair-1", "a"))
    lwt = parse_status(b'{"v":1,"dev":"pair-1","node":"a","state":"offline"}', site="s1", received_ms=1)
    assert lwt.state == "offline" and lwt.dropped is None and lwt.boot is None
    for key, value, reason in (("reset", "zap", "out_of_range"), ("dropped", -1, "out_of_range"),
                               ("clock", 1, "bad_type"), ("state", "maybe", "out_of_range")):
        rej = only_rejected(parse_status, json.dumps({**full, key: value}).encode(), site="s", received_ms=1)
        assert (rej.reason, rej.field) == (reason, key)
    assert only_rejected(parse_status, json.dumps(full).encode(), site="s", received_ms=1,
                         topic_device="other").reason == "topic_mismatch"
    assert only_rejected(parse_status, b"{" + b" " * 300 + b"}", site="s", received_ms=1).reason == "too_large"


def test_status_book_is_bounded_and_reports_changes():
    book = StatusBook(max_entries=3)
    mk = lambda dev, dropped, t=1: DeviceStatus("s", dev, "a", 1, "online", None, None, None, dropped, None,  # noqa: E731
                                                None, None, None, t)
    assert book.update(mk("d1", 0)) and not book.update(mk("d1", 0, t=2))  # the receive time alone is no change
    assert book.update(mk("d1", 5))
    for i in range(2, 6):
        book.update(mk(f"d{i}", 0))
    assert len(book) == 3 and book.evicted == 2
    assert [s.device for s in book.snapshot()] == ["d3", "d4", "d5"]
    changed = book.take_changed()
    assert {s.device for s in changed} == {"d3", "d4", "d5"} and book.take_changed() == []
    book.put_back(changed)
    assert len(book.take_changed()) == 3


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=3000), min_size=1, max_size=4), st.text(max_size=5000))
def test_the_name_and_topic_memory_stays_small_whatever_comes(segments, name):
    # Topics and names seen are remembered with their verdicts; hostile ones (an MQTT topic may be 64 KiB) must
    # not make that memory large: only short names and the topics of a reading or a status are kept.
    only_rejected(protocol.parse_topic, "p/" + "/".join(segments), "p")
    protocol.valid_name(name, "dev")
    assert len(protocol._topics_seen) <= protocol._SEEN_MAX and len(protocol._names_seen) <= protocol._SEEN_MAX
    assert all(len(text) <= 32 for _kind, text in protocol._names_seen)
    assert all(len(topic) <= 2 + 32 + 32 + 8 + 3 for _prefix, topic in protocol._topics_seen)


def test_a_remembered_topic_or_name_gets_the_same_verdict():
    for _ in range(2):  # the second time from memory
        assert protocol.parse_topic("p/site1/dev1/reading", "p") == ("site1", "dev1", "reading")
        assert protocol.valid_name("dev1", "dev") and not protocol.valid_name("x" * 17, "node")
        with pytest.raises(Rejected):
            protocol.parse_topic("p/bad site/dev1/reading", "p")
