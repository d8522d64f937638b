"""The fault-tolerant collector on the real ``ft_collector`` firmware.

The test plays the gateway on the board's serial line (:class:`GatewayLink`: frames and acks per
protocol.md sections 4 and 5; what it holds stands in for the gateway's spool). Runs on the sim rig, and
the link-cut test also on a serial rig (there the cut is the link ignoring the line).
"""

from __future__ import annotations

import json

import pytest

from hil_tests.rig.board import Board
from hil_tests.rig.build import SHORT_PERIODS, build_firmware, c_string
from hil_tests.rig.cache import scan_records
from hil_tests.rig.link import GatewayLink
from hil_tests.rig.scenario import ADC_MV, RTC_EPOCH, Rig, needs
from hil_tests.rig.sim import BoardSpec

SAMPLE_MS = SHORT_PERIODS["IOTGW_SAMPLE_MS"]
DEVICE, NODE = "ft-1", "a"
UNO_CACHE_RECORDS = (1024 - 14 - 60) // 25  # EEPROM minus boot counter and trim state, in records


def boot_number(board: Board) -> int:
    return int(board.expect(r"^boot (\d+)$", 10, start=0).match[1])


def held_all(link: GatewayLink, boot: int, upto: int) -> bool:
    return all((DEVICE, NODE, boot, seq) in link.held for seq in range(upto + 1))


def wait_trimmed(board: Board, upto: int, timeout: float = 20) -> None:
    """Wait until the board says it trimmed its cache up to at least ``upto``."""
    while int(board.expect(r"^cache trim upto=(\d+)$", timeout).match[1]) < upto:
        pass


def test_link_cut_readings_cached_then_replayed_in_order(ft_rig: Rig) -> None:
    board = ft_rig.boards[0]
    with GatewayLink(board) as link:
        boot = boot_number(board)
        board.expect(r"^cache open records=", 10, start=0)
        # link up: readings arrive, are acknowledged and trimmed
        first = int(board.expect(r"^cache append seq=(\d+)$", 5).match[1])
        wait_trimmed(board, first)

        link.set_up(False)
        board.mark()
        appended = board.expect_all(r"^cache append seq=(\d+)$", 15, 2)  # 3 s of samples while cut
        seqs = [int(line.match[1]) for line in appended]
        assert seqs == list(range(seqs[0], seqs[0] + 15)), seqs
        cached_ts = {}
        if "eeprom" in board.capabilities:
            records = {r.seq: r for r in scan_records(board.eeprom()) if r.boot == boot}
            missing = [s for s in seqs if s not in records]
            board.check(not missing, f"readings taken while the link was down are not in EEPROM: {missing}")
            cached_ts = {s: records[s].ts for s in seqs}
            assert all(records[s].val_milli == pytest.approx(ADC_MV, abs=10) for s in seqs)
        replay_from = len(link.snapshot())

        link.set_up(True)
        link.wait_for(lambda lk: held_all(lk, boot, seqs[-1]), 60, f"boot {boot} seq 0..{seqs[-1]} after the link came back")
        wait_trimmed(board, seqs[-1])

        # After a reset the cache holds everything never acknowledged, plus possibly acknowledged records
        # behind the lazily persisted trim state (protocol section 8): at most half the ring.
        link.set_up(False)
        board.wait(0.05)
        if "freeze" in board.capabilities:
            board.freeze(True)  # no sample between reading the counts and the reset
        trimmed = int(board.lines_matching(r"^cache trim upto=(\d+)$")[-1].match[1])
        newest = int(board.lines_matching(r"^cache append seq=(\d+)$")[-1].match[1])
        board.reset()
        board.expect(rf"^boot {boot + 1}$", 10)
        opened = int(board.expect(r"^cache open records=(\d+)$", 10).match[1])
        assert newest - trimmed <= opened <= newest - trimmed + UNO_CACHE_RECORDS // 2 + 1, (trimmed, newest, opened)

    replayed = [r for r in link.snapshot()[replay_from:] if r.reading.seq in seqs and r.reading.boot == boot]
    # replayed oldest first (resends after an ack timeout may repeat some), marked cached, with the
    # timestamps they had when sampled
    order = [r.reading.seq for r in replayed]
    first_seen = list(dict.fromkeys(order))
    assert first_seen == seqs, f"replay order {order}"
    assert all(r.reading.cached for r in replayed)
    ts = {r.reading.seq: r.reading.ts for r in replayed}
    if cached_ts:
        assert ts == {s: cached_ts[s] for s in ts}, "replayed timestamps differ from the cached ones"
    for line in appended:  # stamped at sampling time (the RTC has 1 s resolution), not at replay
        seq = int(line.match[1])
        if ft_rig.harness is not None:
            expected = (RTC_EPOCH * 1000 + line.ms) // 1000 * 1000
            assert abs(ts[seq] - expected) <= 1000, (seq, ts[seq], expected)
        assert abs((ts[seq] - ts[seqs[0]]) - (line.ms - appended[0].ms)) <= 1500, (seq, ts)


@pytest.mark.parametrize("k", [1, 12, 24])
def test_power_cut_mid_cache_write_loses_at_most_that_record(ft_rig: Rig, k: int) -> None:
    board = ft_rig.boards[0]
    needs(board, "eeprom")  # the cut after the k-th EEPROM byte needs the simulator
    h = ft_rig.harness
    assert h is not None
    with GatewayLink(board) as link:
        boot = boot_number(board)
        link.set_up(False)
        board.mark()
        board.expect_all(r"^cache append seq=(\d+)$", 3, 2)
        # Arm the cut between two samples, with the board frozen so that nothing moves meanwhile: slow
        # the simulation down, freeze right after a record was appended, check the freeze landed before
        # the next sample began (simulated times), snapshot the EEPROM, arm, and let the board go.
        h.pace(0.2)
        for _ in range(5):
            appended = board.expect(r"^cache append seq=(\d+)$", 2)
            frozen_at = float(h.command(f"stop {board.name}").split("=")[1])
            if frozen_at - appended.ms < SAMPLE_MS - 50:
                break
            board.freeze(False)
        else:
            board.check(False, "could not freeze the board between two samples")
        last = int(appended.match[1])
        before = [r for r in scan_records(board.eeprom()) if r.boot == boot]
        board.check(before and max(r.seq for r in before) == last, f"record {last} is the newest whole one before the cut")
        board.cut_power_after_eeprom_writes(k)
        h.pace(0)
        board.freeze(False)
        event = h.wait_event("a powercut")
        cut_image = board.eeprom()

        after = [r for r in scan_records(cut_image) if r.boot == boot]
        board.check(after[: len(before)] == before, f"records written before the cut changed ({event})")
        board.check(all(r.seq <= last + 1 for r in after), "records after the one being written")
        board.check(not any(r.seq == last + 1 for r in after) or k >= 25, f"seq {last + 1} is whole after {k} bytes")

        board.power(True)
        board.expect(rf"^boot {boot + 1}$", 10)
        opened = board.expect(r"^cache (open|torn record dropped,) records=(\d+)$", 10)
        link.set_up(True)
        link.wait_for(lambda lk: held_all(lk, boot, last), 60, f"boot {boot} seq 0..{last} replayed after the cut")
        link.wait_for(lambda lk: (DEVICE, NODE, boot + 1, 0) in lk.held, 30, "the new boot's first reading")

    got = {r.identity: r.reading for r in link.snapshot()}
    assert (DEVICE, NODE, boot, last + 1) not in got, "the record being written when the power went was replayed"
    # nothing corrupt came out of the cache; a line cut in two by unplugging the cable is rejected as such
    assert len(link.rejected) <= link.cuts and all(r.startswith(("bad_frame", "bad_checksum")) for r in link.rejected), link.rejected
    by_seq = {r.seq: r for r in before}
    for seq, rec in by_seq.items():  # replayed intact: same time and value as in EEPROM before the cut
        reading = got[(DEVICE, NODE, boot, seq)]
        assert reading.ts == rec.ts and round(reading.value * 1000) == rec.val_milli, (seq, reading, rec, opened.text)



def test_longest_names_acked_and_trimmed(make_harness, tmp_path) -> None:
    """A 32-character device and a 16-character node (the longest names, protocol section 2): the widest
    acks (15-digit ``t``) reach the board whole, trim its cache, and nothing is dropped or resent."""
    dev, node = "d" * 30 + "-9", "n" * 15 + "b"
    # The resend wait is jittered down to half the ack timeout (protocol section 10) and the gateway link
    # acks its first reading up to a second after the board starts: a 4 s timeout keeps every wait above that.
    elf = build_firmware(["ft_uno"], {**SHORT_PERIODS, "IOTGW_ACK_TIMEOUT_MS": 4000, "IOTGW_DEVICE": c_string(dev),
                                      "IOTGW_NODE": c_string(node)})
    h = make_harness([BoardSpec("a", elf["ft_uno"], eeprom=tmp_path / "long.eep", rtc_epoch=RTC_EPOCH)])
    board = h.boards["a"]
    board.set_adc(0, ADC_MV)
    with GatewayLink(board, clock=lambda: 253402300799999) as link:
        boot = boot_number(board)
        wait_trimmed(board, 10, timeout=30)
        link.wait_for(lambda lk: all((dev, node, boot, s) in lk.held for s in range(11)), 20, "seq 0..10 held")
        acks = list(link.acks)
    widest = max(len(json.dumps(a, separators=(",", ":"))) for a in acks)
    assert widest >= 82 + 32 + 16 - 12, widest  # boot and upto are short here; names and t are the widest
    assert not board.lines_matching(r"^cache resend from seq="), "an ack was lost: the board resent"
    assert not board.lines_matching(r"^cache full"), "the cache filled up"


def test_hung_main_loop_watchdog_resets_and_resumes_without_loss(ft_rig: Rig) -> None:
    """The main loop hangs (as in a call stuck on a bus): the 8 s watchdog resets the board, which says
    why, resumes under a new boot, and every reading of the hung boot still reaches the gateway."""
    board = ft_rig.boards[0]
    needs(board, "hang")
    with GatewayLink(board) as link:
        boot = boot_number(board)
        assert board.expect(r"^reset (\w+)$", 10, start=0).match[1] == "power"
        link.set_up(False)  # readings of this boot stay in the cache: the reset must not lose them
        board.mark()
        first_unacked = int(board.expect_all(r"^cache append seq=(\d+)$", 5, 3)[0].match[1])
        board.freeze(True)
        last = int(board.lines_matching(r"^cache append seq=(\d+)$")[-1].match[1])
        hung_at = board.now_ms()
        board.hang()
        board.freeze(False)
        new_boot = board.expect(rf"^boot {boot + 1}$", 30)
        assert board.expect(r"^reset (\w+)$", 5).match[1] == "wdt"
        # reset by the watchdog's 8 s, not sooner (and not much later: the AVR's oscillator is exact here)
        assert 8000 <= new_boot.ms - hung_at <= 8000 + 500, new_boot.ms - hung_at
        assert not [ln for ln in board.lines_matching(r"^cache append seq=") if hung_at < ln.ms < new_boot.ms]
        opened = int(board.expect(r"^cache open records=(\d+)$", 5).match[1])
        assert opened >= last - first_unacked + 1, (opened, first_unacked, last)  # all never acknowledged
        link.set_up(True)
        link.wait_for(lambda lk: held_all(lk, boot, last), 60, f"boot {boot} seq 0..{last} after the watchdog reset")
        link.wait_for(lambda lk: (DEVICE, NODE, boot + 1, 0) in lk.held, 30, "the new boot's first reading")


def test_write_behind_default_writes_only_what_the_gateway_did_not_acknowledge(make_harness, tmp_path) -> None:
    """The EEPROM cache's default build (write-behind, 1 s): acknowledged readings never reach the EEPROM,
    which is what makes it last (docs/firmware.md, "EEPROM wear"); while the link is down every reading is
    written, at the latest before the next sample; nothing is lost when the link returns."""
    flags = {k: v for k, v in SHORT_PERIODS.items() if k != "IOTGW_PERSIST_AFTER_MS"}
    # A 1 s sample period: an ack has the whole write-behind delay to come back, even on a loaded host.
    flags["IOTGW_SAMPLE_MS"] = 1000
    elf = build_firmware(["ft_uno"], flags)["ft_uno"]
    h = make_harness([BoardSpec("a", elf, eeprom=tmp_path / "wb.eep", rtc_epoch=RTC_EPOCH)])
    board = h.boards["a"]
    board.set_adc(0, ADC_MV)
    with GatewayLink(board) as link:
        boot = boot_number(board)
        wait_trimmed(board, 0)
        written_before = board.eeprom_writes()
        wait_trimmed(board, 8, timeout=60)
        written = board.eeprom_writes() - written_before
        # Written through, 8 records are at least 8 x 10 changed bytes; written behind, none at all.
        assert written == 0, f"{written} EEPROM bytes written for 8 promptly acknowledged readings"
        assert not [r for r in scan_records(board.eeprom()) if r.boot == boot and r.seq >= 1]

        link.set_up(False)
        board.mark()
        seqs = [int(ln.match[1]) for ln in board.expect_all(r"^cache append seq=(\d+)$", 4, 30)]
        if "freeze" in board.capabilities:
            board.freeze(True)
        on_eeprom = {r.seq for r in scan_records(board.eeprom()) if r.boot == boot}
        # the newest may still wait in RAM (up to 1 s, or until the next sample); every older one is written
        assert set(seqs[:-1]) <= on_eeprom, (seqs, sorted(on_eeprom))
        board.freeze(False)
        newer = int(board.expect(r"^cache append seq=(\d+)$", 10).match[1])
        assert seqs[-1] in {r.seq for r in scan_records(board.eeprom()) if r.boot == boot}, "not written before the next sample"

        link.set_up(True)
        link.wait_for(lambda lk: held_all(lk, boot, newer), 60, f"boot {boot} seq 0..{newer} after the link came back")
