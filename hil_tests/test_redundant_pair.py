"""Redundant collector pair on the real ``redundant_collector`` builds.

Board a runs the primary, board b the secondary; they share an I2C bus (on the sim rig, the harness's
bridge). Each board's serial line goes to the gateway, played here by a :class:`GatewayLink` per board.
The test follows the issue: heartbeats every period; the primary stopped, so the secondary takes over
within the timeout plus one sample period; the primary restarted, so the roles are handed back after
the hysteresis; across both changes the pair's readings all reach the gateway, with no duplicate identity.
All times are board times (simulated ms on the sim rig).
"""

from __future__ import annotations

import json

from gateway.protocol import parse_frame
from hil_tests.rig.board import Board, Line
from hil_tests.rig.build import SHORT_PERIODS
from hil_tests.rig.link import GatewayLink
from hil_tests.rig.scenario import Rig, needs

HEARTBEAT_MS = SHORT_PERIODS["IOTGW_HEARTBEAT_MS"]
TIMEOUT_MS = SHORT_PERIODS["IOTGW_TIMEOUT_MS"]
SAMPLE_MS = SHORT_PERIODS["IOTGW_SAMPLE_MS"]
HANDBACK_BEATS = SHORT_PERIODS["IOTGW_HANDBACK_BEATS"]
DEVICE = "pair-1"
# A reading's frame leaves the UART about 12 ms after the sample (130 bytes at 115200 baud): timing
# bounds get this much slack, and no more.
SLACK_MS = 30


def identity(frame_line: str) -> tuple[str, str, int, int]:
    kind, payload = parse_frame(frame_line)
    r = json.loads(payload)
    return (r["dev"], r["node"], r["boot"], r["seq"])


def readings(board: Board, start: int = 0) -> list[Line]:
    """Fresh (not replayed) reading frames the board printed since line ``start``."""
    return board.lines_matching(r'^!R .*"cached":false', start)


def test_takeover_and_handback(pair_rig: Rig) -> None:
    a, b = pair_rig.boards
    needs(a, "freeze")
    h = pair_rig.harness
    with GatewayLink(a) as link_a, GatewayLink(b) as link_b:
        # steady state: a active, b standby
        a.expect(r"^role active$", 10, start=0)
        b.expect(r"^boot (\d+)$", 10, start=0)
        boot_a = int(a.expect(r"^boot (\d+)$", 10, start=0).match[1])
        a.expect_all(r'^!R .*"cached":false', 5, 2)

        # heartbeats every period (the sim rig sees the bus)
        if h is not None:
            beats = [w for w in h.i2c_log if w.src == "a" and w.dst == "b"]
            gaps = [y.ms - x.ms for x, y in zip(beats[1:], beats[2:], strict=False)]
            assert len(gaps) >= 3 and all(abs(g - HEARTBEAT_MS) <= 0.05 * HEARTBEAT_MS for g in gaps), gaps
            # protocol section 9: register 0, then B7 | state | counter
            assert all(w.data[:2] == b"\x00\xb7" and len(w.data) == 4 for w in beats), beats

        # stop the primary: the secondary takes over after the timeout, not earlier, not much later
        b.mark()
        a.freeze(True)
        take = b.expect(r"^role active$", 10)
        last_a = readings(a)[-1]
        first_b = b.expect(r'^!R .*"cached":false', 5)
        if h is not None:
            last_beat = [w for w in h.i2c_log if w.src == "a"][-1]
            waited = take.ms - last_beat.ms
            assert TIMEOUT_MS <= waited <= TIMEOUT_MS + SLACK_MS, f"took over {waited:.0f} ms after the last heartbeat"
        gap = first_b.ms - last_a.ms
        assert gap <= TIMEOUT_MS + SAMPLE_MS + SLACK_MS, f"coverage gap at takeover: {gap:.0f} ms"
        b.expect_all(r'^!R .*"cached":false', 3, 2)

        # restart the primary (a power cycle where the rig has one, a reset otherwise): it claims the
        # role back; the secondary hands back only after HANDBACK_BEATS heartbeats (hysteresis)
        a.mark()
        b.mark()
        restart_ms = b.now_ms()
        if "power" in a.capabilities:
            a.power(False)
            a.power(True)
        else:
            a.freeze(False)
            a.reset()
        a.expect(rf"^boot {boot_a + 1}$", 10)
        back = b.expect(r"^role standby$", 10)
        active_a = a.expect(r"^role active$", 10)
        assert back.ms - restart_ms >= (HANDBACK_BEATS - 1) * HEARTBEAT_MS, "handed back before the hysteresis"
        if h is not None:
            beats_after = [w for w in h.i2c_log if w.src == "a" and restart_ms <= w.ms <= back.ms]
            assert len(beats_after) >= HANDBACK_BEATS, beats_after
        first_a = a.expect(r'^!R .*"cached":false', 5)
        last_b = readings(b)[-1]
        overlap = last_b.ms - first_a.ms
        assert overlap <= HEARTBEAT_MS + SLACK_MS, f"both nodes reported for {overlap:.0f} ms at hand-back"
        assert abs(active_a.ms - back.ms) <= HEARTBEAT_MS + SLACK_MS
        a.expect_all(r'^!R .*"cached":false', 3, 2)

        # every reading either node printed reaches the gateway (a's unacknowledged ones after its restart,
        # from its EEPROM cache)
        printed = {identity(line.text) for board in (a, b) for line in board.lines_matching(r"^!R ")}
        for link in (link_a, link_b):
            mine = {i for i in printed if i[1] == link.board.name}
            link.wait_for(lambda lk, mine=mine: mine <= set(lk.held), 60,
                          lambda link=link, mine=mine: f"every reading node {link.board.name} printed; "
                                                       f"missing {sorted(mine - set(link.held))[:5]}")

    # no duplicate identity: every identity has one content, nodes and boots keep them apart
    received = link_a.snapshot() + link_b.snapshot()
    content: dict[tuple, tuple] = {}
    for got in received:
        r = got.reading
        assert r.device == DEVICE
        key = (r.ts, r.value, r.unit)
        assert content.setdefault(got.identity, key) == key, f"identity {got.identity} carried two readings"
    nodes = {ident[1] for ident in content}
    assert nodes == {"a", "b"}
    # each node's sequence has no gap within a boot
    for node in nodes:
        for boot in {ident[2] for ident in content if ident[1] == node}:
            seqs = sorted(ident[3] for ident in content if ident[1:3] == (node, boot))
            assert seqs == list(range(len(seqs))), (node, boot, seqs)
    assert {ident[2] for ident in content if ident[1] == "a"} >= {boot_a, boot_a + 1}
