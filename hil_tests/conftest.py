"""pytest wiring for the hardware-in-the-loop rig.

Options (registered here: pytest loads this conftest at start-up because ``hil_tests`` is in ``testpaths``):

- ``--rig sim`` (default): simulated boards under ``hil_tests/sim/harness`` (simavr), built by the run.
- ``--rig serial --port /dev/ttyACM0 [--port2 /dev/ttyACM1] [--power-cmd "relay {state} {port}"]``:
  real boards. Tests that need a port skip, naming ``--port``, when none is given; tests that need what
  only the simulator can do (freeze a CPU, cut power after the k-th EEPROM byte) skip on the serial rig.

When a test fails, the last lines of every board it used (and the harness log) are added to the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil_tests.rig.board import Board, Unsupported
from hil_tests.rig.build import build_firmware
from hil_tests.rig.scenario import ADC_MV, RTC_EPOCH, Rig
from hil_tests.rig.sim import BoardSpec, Harness

_BOARDS = pytest.StashKey[list[Board]]()
_HARNESSES = pytest.StashKey[list[Harness]]()



@pytest.fixture(scope="session")
def rig(pytestconfig: pytest.Config) -> str:
    """Which rig this run uses: "sim" or "serial"."""
    return pytestconfig.getoption("--rig")


@pytest.fixture
def sim_only(rig: str) -> None:
    """Skip unless on the sim rig (the test drives the simulator's own controls)."""
    if rig != "sim":
        pytest.skip("needs the simulated rig (--rig sim): it drives simulator-only controls")


@pytest.fixture
def make_harness(request: pytest.FixtureRequest, tmp_path: Path, rig: str) -> Iterator[Callable[..., Harness]]:
    """``make_harness([BoardSpec, ...], pace=0.0)`` starts a harness; all are closed after the test."""
    if rig != "sim":
        pytest.skip("needs the simulated rig (--rig sim)")
    started: list[Harness] = []

    def make(specs: list[BoardSpec], pace: float = 0.0) -> Harness:
        h = Harness(specs, tmp_path / f"harness{len(started)}", pace=pace).start()
        started.append(h)
        request.node.stash.setdefault(_HARNESSES, []).append(h)
        request.node.stash.setdefault(_BOARDS, []).extend(h.boards.values())
        return h

    yield make
    for h in started:
        h.close()


@pytest.fixture
def serial_boards(request: pytest.FixtureRequest, pytestconfig: pytest.Config, rig: str) -> Iterator[list[Board]]:
    """The real boards given with --port (and --port2), opened; skips cleanly without --port."""
    if rig != "serial":
        pytest.skip("serial-rig test: run with --rig serial --port /dev/ttyACM0")
    port = pytestconfig.getoption("--port")
    if not port:
        pytest.skip("no real board: pass --port /dev/ttyACM0 (and --port2 for a pair) with --rig serial")
    import serial

    from hil_tests.rig.serial_rig import SerialBoard

    power = pytestconfig.getoption("--power-cmd")
    boards: list[Board] = []
    for name, option in (("a", "--port"), ("b", "--port2")):
        path = pytestconfig.getoption(option)
        if not path:
            continue
        try:
            boards.append(SerialBoard(name, path, power_cmd=power))
        except (serial.SerialException, OSError) as e:
            for b in boards:
                b.close()
            pytest.fail(f"{option} {path}: cannot open the port: {e}", pytrace=False)
    request.node.stash.setdefault(_BOARDS, []).extend(boards)
    for b in boards:  # every test starts from a fresh boot, as on the sim rig
        try:
            b.reset()
        except Unsupported:
            pass  # a port without DTR (a pty): whoever provides it resets the board
    yield boards
    for b in boards:
        b.close()


@pytest.fixture
def ft_rig(request: pytest.FixtureRequest, rig: str, tmp_path: Path) -> Rig:
    """One board running ``ft_collector`` (built with the short periods of ``rig.build.SHORT_PERIODS``)."""
    if rig == "serial":
        return Rig(request.getfixturevalue("serial_boards")[:1], None)
    elf = build_firmware(["ft_uno"])["ft_uno"]
    h = request.getfixturevalue("make_harness")([BoardSpec("a", elf, eeprom=tmp_path / "ft.eep", rtc_epoch=RTC_EPOCH)])
    h.boards["a"].set_adc(0, ADC_MV)
    return Rig([h.boards["a"]], h)


@pytest.fixture
def pair_rig(request: pytest.FixtureRequest, rig: str, tmp_path: Path) -> Rig:
    """The redundant pair: board a runs the primary build, board b the secondary (``-DSLAVE``)."""
    if rig == "serial":
        boards = request.getfixturevalue("serial_boards")
        if len(boards) < 2:
            pytest.skip("the pair needs two boards: pass --port2 for the secondary")
        return Rig(boards[:2], None)
    fw = build_firmware(["pair_primary_uno", "pair_secondary_uno"])
    h = request.getfixturevalue("make_harness")([
        BoardSpec("a", fw["pair_primary_uno"], eeprom=tmp_path / "a.eep", rtc_epoch=RTC_EPOCH),
        BoardSpec("b", fw["pair_secondary_uno"], eeprom=tmp_path / "b.eep", rtc_epoch=RTC_EPOCH),
    ])
    for board in h.boards.values():
        board.set_adc(0, ADC_MV)
    return Rig(list(h.boards.values()), h)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:
        for board in item.stash.get(_BOARDS, []):
            report.sections.append((f"board {board.name}: last lines", board.last_output(40)))
        for h in item.stash.get(_HARNESSES, []):
            report.sections.append((f"harness log {h.workdir}", h.log_tail(30)))
            if h.events:
                report.sections.append(("harness events", "\n".join(h.events[-20:])))
    return report

