"""Options for the whole suite, registered here at the repository root so that pytest knows them before it
splits the command line (`pytest --rig serial --port /dev/ttyACM0` from the root works)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop rig (hil_tests)")
    group.addoption("--rig", choices=("sim", "serial"), default="sim",
                    help="sim: simulated boards (simavr, default); serial: real boards on --port/--port2")
    group.addoption("--port", default=None, help="serial port of the first real board (--rig serial)")
    group.addoption("--port2", default=None, help="serial port of the second real board (the pair's slave)")
    group.addoption("--power-cmd", default=None,
                    help='shell command that switches a real board\'s power, e.g. "usbrelay R1={state} # {port}"')
