"""The canonical fast path of `parse_reading` against the general JSON path: whatever the fast path accepts, the
general path accepts with the very same reading (negative zero included), and `parse_reading` gives the general
path's outcome, reading or rejection, for every payload. The payloads are canonical-looking ones with hostile
fields, and mutations of them; the fast path must also really take the canonical payloads collectors send.
The fast path's C version (gateway.native, where built) gives exactly the Python fast path's result on all of them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import protocol
from gateway.protocol import Rejected, _parse_canonical, _parse_json, encode_reading, parse_reading

RECEIVED_MS = 1_700_000_000_000
# The C version of _parse_canonical, where gateway.native is built (tests/native checks that it is, here).
NATIVE = protocol._canonical if protocol._canonical is not _parse_canonical else None
NAME_CHARS = "abcXYZ019_-"


def field(valid, hostile):
    """Mostly a valid value (edges included), one time in five a hostile one: payloads with every field valid but
    one or two, where a wrong fast path would be caught."""
    return st.tuples(st.integers(0, 4), valid, hostile).map(lambda t: t[2] if t[0] == 0 else t[1])


def name(longest: int):
    return field(st.text(NAME_CHARS, min_size=1, max_size=longest) | st.just("x" * longest),
                 st.text(max_size=40) | st.just("x" * (longest + 1)) | st.just(""))


def integer(top: int):
    return field(st.integers(0, top).map(str) | st.sampled_from(["0", str(top)]),
                 st.integers(-5, 10**17).map(str) | st.sampled_from([str(top + 1), "00", "01", "-0", "1e3", "1.0",
                                                                      " 1", "null", "true", '"1"']))


val_texts = field(
    st.integers(-10**12, 10**12).map(lambda milli: protocol.format_value(milli / 1000))
    | st.sampled_from(["-0", "0", "-0.0", "0.000", "-0.25", "3", "1234567890123456.12345678901234567"]),
    st.floats().map(repr) | st.integers(-10**20, 10**20).map(str)
    | st.sampled_from(["1.", ".5", "01", "1e5", "NaN", "Infinity", "-", "12345678901234567", "1e400", "true"]),
)
units = field(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\'), min_size=1,
                      max_size=16),
              st.text(max_size=18) | st.sampled_from(["", "x" * 17, 'a\\"b', "a\\\\b", "é", "\\u0041"]))


@st.composite
def canonical_like(draw) -> tuple[bytes, str]:
    """A payload in the canonical layout with each field drawn from valid, edge and hostile values; and the topic's
    device (usually the payload's)."""
    dev, node = draw(name(32)), draw(name(16))
    src = draw(field(st.sampled_from(["rtc", "ntp", "none"]), st.sampled_from(["gps", "", "RTC"])))
    ts = draw(field(st.just("null") if src == "none" else integer(protocol.TS_MAX), integer(protocol.TS_MAX)
                    | st.just("null")))
    cached = draw(field(st.sampled_from([None, "true", "false"]), st.sampled_from(["1", '"true"', "null"])))
    version = draw(field(st.just("1"), st.sampled_from(["2", "1.0", "true", "01"])))
    text = (f'{{"v":{version},"dev":"{dev}","node":"{node}","boot":{draw(integer(protocol.U32_MAX))},'
            f'"seq":{draw(integer(protocol.U32_MAX))},"ts":{ts},"src":"{src}","val":{draw(val_texts)},'
            f'"unit":"{draw(units)}"' + ("" if cached is None else f',"cached":{cached}') + "}")
    topic_device = draw(field(st.just(dev), st.just("other")))
    return text.encode("utf-8", "surrogatepass"), topic_device


def outcome(fn, payload: bytes, topic_device: str | None) -> tuple:
    """A comparable result: the reading's repr (so -0.0 and 0.0 differ) or the rejection's reason and detail."""
    try:
        return ("stored", repr(fn(payload, site="s", received_ms=RECEIVED_MS, topic_device=topic_device)))
    except Rejected as rej:
        return ("rejected", rej.reason, rej.field, rej.detail)


def general(payload: bytes, *, site: str, received_ms: int, topic_device: str | None) -> protocol.Reading:
    return _parse_json(payload, site, received_ms, topic_device)


def check(payload: bytes, topic_device: str | None) -> None:
    fast = _parse_canonical(payload, "s", RECEIVED_MS, topic_device)
    if NATIVE is not None:
        assert repr(NATIVE(payload, "s", RECEIVED_MS, topic_device)) == repr(fast), payload
    expected = outcome(general, payload, topic_device)
    if fast is not None:
        assert expected == ("stored", repr(fast)), payload
    assert outcome(parse_reading, payload, topic_device) == expected, payload


@settings(max_examples=500, deadline=None)
@given(canonical_like())
def test_fast_path_agrees_with_the_general_path_on_canonical_layouts(case):
    payload, topic_device = case
    check(payload, topic_device)
    check(payload, None)  # serial: no topic device


@settings(max_examples=400, deadline=None)
@given(canonical_like(), st.lists(st.tuples(st.integers(0, 300), st.binary(max_size=3), st.integers(0, 3)),
                                  min_size=1, max_size=4))
def test_fast_path_agrees_with_the_general_path_on_mutated_payloads(case, edits):
    payload, topic_device = case
    data = bytearray(payload)
    for pos, insert, delete in edits:  # replace `delete` bytes at `pos` by `insert`
        pos = min(pos, len(data))
        data[pos:pos + delete] = insert
    check(bytes(data), topic_device)


@settings(max_examples=200, deadline=None)
@given(st.text(NAME_CHARS, min_size=1, max_size=32), st.text(NAME_CHARS, min_size=1, max_size=16),
       st.integers(0, protocol.U32_MAX), st.integers(0, protocol.U32_MAX),
       st.none() | st.integers(0, protocol.TS_MAX), st.sampled_from(["rtc", "ntp"]),
       st.integers(-10**12, 10**12).map(lambda milli: milli / 1000),
       st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\'), min_size=1,
               max_size=16),
       st.booleans())
def test_collectors_canonical_payloads_take_the_fast_path(dev, node, boot, seq, ts, src, value, unit, cached):
    payload = encode_reading(dev, node, boot, seq, ts, "none" if ts is None else src, value, unit, cached).encode()
    if len(payload) > protocol.MAX_PAYLOAD:
        assert _parse_canonical(payload, "s", RECEIVED_MS, dev) is None
        assert NATIVE is None or NATIVE(payload, "s", RECEIVED_MS, dev) is None
        return
    fast = _parse_canonical(payload, "s", RECEIVED_MS, dev)
    assert fast is not None, payload
    assert repr(fast) == repr(_parse_json(payload, "s", RECEIVED_MS, dev))
    if NATIVE is not None:
        assert repr(NATIVE(payload, "s", RECEIVED_MS, dev)) == repr(fast), payload


CANONICAL = encode_reading("d", "a", 7, 42, RECEIVED_MS, "rtc", 21.5, "C").encode().decode()
EDGES = {  # per field: the values at and just past each rule's edge, and look-alikes of valid values
    '"dev":"d"': ['"dev":"' + "d" * 32 + '"', '"dev":"' + "d" * 33 + '"', '"dev":""', '"dev":"d "', '"dev":"\\u0064"'],
    '"node":"a"': ['"node":"' + "a" * 16 + '"', '"node":"' + "a" * 17 + '"', '"node":""', '"node":"a/b"'],
    '"boot":7': [f'"boot":{protocol.U32_MAX}', f'"boot":{protocol.U32_MAX + 1}', '"boot":9999999999', '"boot":07',
                 '"boot":-1', '"boot":7.0', '"boot":7e0'],
    '"seq":42': [f'"seq":{protocol.U32_MAX}', f'"seq":{protocol.U32_MAX + 1}', '"seq":0', '"seq":00', '"seq":-0'],
    f'"ts":{RECEIVED_MS}': [f'"ts":{protocol.TS_MAX}', f'"ts":{protocol.TS_MAX + 1}', '"ts":999999999999999',
                            '"ts":0', '"ts":null', '"ts":-1', f'"ts":{RECEIVED_MS}.0'],
    '"src":"rtc"': ['"src":"ntp"', '"src":"none"', '"src":"gps"', '"src":"RTC"', '"src":""'],
    '"val":21.5': ['"val":-0', '"val":-0.0', '"val":0', '"val":1e3', '"val":01', '"val":1.', '"val":.5',
                   '"val":9999999999999999', '"val":99999999999999999', '"val":1.00000000000000000',
                   '"val":1.000000000000000000', '"val":NaN', '"val":-Infinity', '"val":true'],
    '"unit":"C"': ['"unit":"' + "u" * 16 + '"', '"unit":"' + "u" * 17 + '"', '"unit":""', '"unit":"~ !"',
                   '"unit":"\\u0043"', '"unit":"a\\\\b"', '"unit":"\x7f"', '"unit":"é"'],
    '"cached":false': ['"cached":true', '"cached":0', '"cached":null', '"cached":false,"cached":true'],
    '"v":1': ['"v":2', '"v":1.0', '"v":true', '"v":01'],
}


def test_fast_path_agrees_at_every_fields_edges():
    for part, variants in EDGES.items():
        assert part in CANONICAL, part
        for variant in variants:
            payload = CANONICAL.replace(part, variant).encode()
            for topic_device in ("d", "other", None):
                check(payload, topic_device)
    without_cached = CANONICAL.replace(',"cached":false', "")
    for text in (without_cached, CANONICAL + " ", " " + CANONICAL, CANONICAL.replace(":", ": ", 1)):
        check(text.encode(), "d")


def test_negative_zero_is_read_as_json_reads_it():
    base = '{"v":1,"dev":"d","node":"a","boot":1,"seq":1,"ts":null,"src":"none","val":%s,"unit":"C"}'
    assert repr(parse_reading((base % "-0").encode(), site="s", received_ms=1).value) == "0.0"
    assert repr(parse_reading((base % "-0.0").encode(), site="s", received_ms=1).value) == "-0.0"
