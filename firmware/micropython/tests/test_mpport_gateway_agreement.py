"""The port and the gateway (gateway/protocol.py) agree beyond the shared vectors: for generated readings,
the gateway accepts what the port encodes and reads back the same values, both encoders give the same
bytes, and frames and acks round-trip between the two. CPython only (hypothesis)."""

from gateway import protocol as gw
from hypothesis import given, settings
from hypothesis import strategies as st
from iotcollector import protocol as port

NAME = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=16)
UNIT = st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters='"\\'), min_size=1,
               max_size=16)
U32 = st.integers(0, port.U32_MAX)
MILLI = st.integers(port.MILLI_MIN, port.MILLI_MAX)
CLOCK = st.one_of(st.tuples(st.none(), st.just("none")),
                  st.tuples(st.integers(0, port.TS_MAX), st.sampled_from(["rtc", "ntp"])))


@settings(max_examples=300, deadline=None)
@given(dev=NAME, node=NAME, boot=U32, seq=U32, clock=CLOCK, milli=MILLI, unit=UNIT, cached=st.booleans())
def test_gateway_accepts_what_the_port_encodes(dev, node, boot, seq, clock, milli, unit, cached):
    ts, src = clock
    try:
        payload = port.encode_reading(dev, node, boot, seq, ts, src, milli, unit, cached)
    except port.EncodeError as exc:
        assert exc.reason == "too_large"  # long names and values together can exceed 192 bytes
        assert len(gw.encode_reading(dev, node, boot, seq, ts, src, milli / 1000, unit, cached)) > gw.MAX_PAYLOAD
        return
    r = gw.parse_reading(payload.encode(), site="s", received_ms=1700000000000, topic_device=dev)
    assert (r.device, r.node, r.boot, r.seq, r.ts, r.src, r.unit, r.cached) == (dev, node, boot, seq, ts, src, unit,
                                                                                cached)
    assert round(r.value * 1000) == milli
    assert gw.encode_reading(dev, node, boot, seq, ts, src, milli / 1000, unit, cached) == payload
    line = port.frame("R", payload)
    assert gw.parse_frame(line + "\r\n") == ("R", payload)


@settings(max_examples=200, deadline=None)
@given(dev=NAME, node=NAME, boot=U32, upto=U32, t=st.one_of(st.none(), st.integers(0, port.TS_MAX)))
def test_port_reads_the_gateways_acks(dev, node, boot, upto, t):
    payload = gw.Ack(dev, node, boot, upto, t).payload()
    for source in (payload, payload.encode(), port.parse_line(gw.frame("A", payload))[1]):
        ack = port.parse_ack(source)
        assert (ack.dev, ack.node, ack.boot, ack.upto, ack.t) == (dev, node, boot, upto, t)


def test_overlong_line_is_a_bad_frame_on_both_sides():
    line = port.frame("R", "x" * 260)
    for parse, error in ((port.parse_line, port.FrameError), (gw.parse_frame, gw.Rejected)):
        try:
            parse(line)
            raise AssertionError("accepted a line over 256 bytes")
        except error as exc:
            assert exc.reason == "bad_frame"
