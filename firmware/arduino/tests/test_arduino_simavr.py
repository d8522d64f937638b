"""The AVR builds run: each sketch boots under simavr and speaks protocol v1 on its serial console.

Only a smoke test with short periods (build flags); the simulated-board rig in hil_tests/ drives the pair
over a TWI bridge, a DS1307 and persistent EEPROM. Here each board runs alone: the ft_collector has no RTC
and no gateway, so it must stamp null/none and resend after the ack timeout; a lone primary claims the
role after its heartbeats go unanswered; a lone secondary takes over after the timeout.
"""

from __future__ import annotations

import re
import select
import subprocess
import time
from pathlib import Path

from gateway.protocol import Rejected, parse_frame

FIRMWARE = Path(__file__).resolve().parents[1]



SHORT = "-DIOTGW_SAMPLE_MS=300 -DIOTGW_HEARTBEAT_MS=100 -DIOTGW_TIMEOUT_MS=400 -DIOTGW_ACK_TIMEOUT_MS=1000"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def frame_ok(line: str) -> bool:
    """A protocol v1 frame with a good CRC (judged by the gateway's own parser)."""
    try:
        return parse_frame(line) is not None
    except Rejected:
        return False


def run_until(elf, done, deadline_s=20.0) -> list[str]:
    """Run the ELF under simavr and collect console lines until done(lines) or the deadline."""
    proc = subprocess.Popen(["simavr", "-m", "atmega328p", "-f", "16000000", str(elf)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    buf = b""
    end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end and not done(lines):
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if not ready:
                continue
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                # simavr prints each UART line in colour and shows the '\n' as '.'
                text = ANSI.sub("", raw.decode("ascii", "replace")).strip()
                if text.endswith("."):
                    text = text[:-1]
                if text:
                    lines.append(text)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return lines


def test_sketches_boot_and_speak_protocol_under_simavr(tmp_path):
    # One test for the three boards: a shared fixture would be built once per xdist worker.
    envs = ["ft_uno", "pair_primary_uno", "pair_secondary_uno"]
    result = subprocess.run(["make", "-s", "-j2", f"BUILD_DIR={tmp_path}", f"EXTRA_FLAGS={SHORT}", *envs],
                            cwd=FIRMWARE, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    check_ft_collector(tmp_path / "ft_uno" / "ft_uno.elf")
    check_lone_primary(tmp_path / "pair_primary_uno" / "pair_primary_uno.elf")
    check_lone_secondary(tmp_path / "pair_secondary_uno" / "pair_secondary_uno.elf")


def blank_boot(lines: list[str]) -> int:
    """The boot number a blank EEPROM starts from: seeded (RTC or noise), never 1 (docs/firmware.md)."""
    m = re.fullmatch(r"boot (\d+)", lines[1])
    assert m, lines
    boot = int(m[1])
    assert 65536 <= boot < 2**31, boot
    return boot


def check_ft_collector(elf):
    """No RTC, no gateway: readings stamped null/none, resent as cached after the ack timeout."""
    lines = run_until(elf, lambda ls: any('"cached":true}' in x for x in ls))
    boot = blank_boot(lines)
    assert lines[:6] == ["iotgw ft_collector dev=ft-1 node=a", f"boot {boot}", "reset power", "rtc missing",
                         "cache open records=0", "role single"], lines
    frames = [x for x in lines if x.startswith("!")]
    assert frames and all(frame_ok(f) for f in frames), frames
    assert frames[0].startswith(f'!S {{"v":1,"dev":"ft-1","node":"a","boot":{boot},"state":"online","role":"single","cached":0,"cap":38,"dropped":0,"reset":"power","store_err":0,"clock":"none"')
    readings = [f for f in frames if f.startswith("!R")]
    assert readings[0].startswith(f'!R {{"v":1,"dev":"ft-1","node":"a","boot":{boot},"seq":0,"ts":null,"src":"none",')
    assert '"cached":false}' in readings[0]
    assert "cache append seq=0" in lines
    resend = lines.index("cache resend from seq=0")
    assert any('"seq":0,' in x and '"cached":true}' in x for x in lines[resend:]), lines
    assert all(not x.startswith("!") or x[:2] in ("!R", "!S") for x in lines)


def check_lone_primary(elf):
    """Nobody acknowledges its heartbeat: it claims for two beats, then turns active and records."""
    lines = run_until(elf, lambda ls: sum(x.startswith("!R") for x in ls) >= 2)
    assert lines[:4] == ["iotgw redundant_collector primary dev=pair-1 node=a", f"boot {blank_boot(lines)}",
                         "reset power", "role standby"], lines
    assert "heartbeat not acked" in lines
    active = lines.index("role active")
    assert active > lines.index("heartbeat not acked")
    first_reading = next(i for i, x in enumerate(lines) if x.startswith("!R"))
    assert first_reading > active and frame_ok(lines[first_reading])
    assert '"node":"a"' in lines[first_reading] and '"seq":0,' in lines[first_reading]


def check_lone_secondary(elf):
    """No heartbeat at all: it takes over after the timeout and records as node b."""
    lines = run_until(elf, lambda ls: sum(x.startswith("!R") for x in ls) >= 2)
    assert lines[:4] == ["iotgw redundant_collector secondary dev=pair-1 node=b", f"boot {blank_boot(lines)}",
                         "reset power", "role standby"], lines
    active = lines.index("role active")
    status = [x for x in lines if x.startswith("!S")]
    assert len(status) == 2 and '"role":"active"' in status[1] and all(frame_ok(s) for s in status)
    readings = [x for x in lines[active:] if x.startswith("!R")]
    assert readings and all(frame_ok(r) and '"node":"b"' in r for r in readings)
