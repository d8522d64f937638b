"""Build what the rig runs (the simavr harness, the test sketches, the firmware) with make, once.

pytest-xdist runs several workers at once; each build runs under an exclusive file lock, so two workers
never run the same make at the same time (make then finds everything up to date for the second).
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

HIL = Path(__file__).resolve().parents[1]
REPO = HIL.parent
SIM = HIL / "sim"
HARNESS = SIM / "build" / "harness"
TESTFW = SIM / "testfw"
TESTFW_BUILD = TESTFW / "build"


class BuildError(RuntimeError):
    """make failed; the message holds the end of its output."""


def make(directory: Path, targets: Sequence[str] = (), variables: dict[str, str] | None = None,
         timeout: float = 600, lock_dir: Path | None = None) -> None:
    """``make -C directory targets VAR=value...`` under the lock ``.make.lock`` in ``lock_dir`` (default
    ``directory``: the folder the build writes to)."""
    argv = ["make", "-C", str(directory), *targets, *(f"{k}={v}" for k, v in (variables or {}).items())]
    lock_path = (lock_dir or directory) / ".make.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "MAKEFLAGS": ""})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")


def build_harness() -> Path:
    """Compile ``hil_tests/sim/harness.c`` against Debian's libsimavr; return the binary."""
    make(SIM)
    return HARNESS


def build_testfw() -> Path:
    """Build the harness's own test sketches (``hil_tests/sim/testfw``); return their build folder."""
    make(TESTFW, ["all"])
    return TESTFW_BUILD


FIRMWARE = REPO / "firmware" / "arduino"

# Build flags the scenarios use: the firmware's own periods scaled down (seconds to a fraction of a
# second), so a takeover, a hand-back or an outage takes a few simulated seconds (docs/firmware.md
# lists the flags). One build folder per flag set: make does not track flags, a folder does.
SHORT_PERIODS = {
    "IOTGW_SAMPLE_MS": 200,
    "IOTGW_ACK_TIMEOUT_MS": 1000,
    "IOTGW_HEARTBEAT_MS": 200,
    "IOTGW_TIMEOUT_MS": 600,
    "IOTGW_HANDBACK_BEATS": 3,
    # The scenarios check the write-through guarantees (every record in EEPROM before it is sent); the
    # EEPROM cache's default, write-behind, has a scenario of its own in test_ft_collector.py.
    "IOTGW_PERSIST_AFTER_MS": 0,
}


def c_string(text: str) -> str:
    """A -D value that is a C string literal, escaped for the shell make runs the compiler in."""
    return '\\"' + text + '\\"'


def build_firmware(envs: Sequence[str], flags: dict[str, int | str] | None = None) -> dict[str, Path]:
    """Build firmware environments (``ft_uno``, ``pair_primary_uno``...) with ``-D`` flags; return their .elf.

    Uses ``firmware/arduino/Makefile`` with a build folder of our own under ``hil_tests/sim/build``.
    A string define is given with its quotes escaped for the shell: ``{"IOTGW_DEVICE": c_string("tank-3")}``.
    """
    flags = dict(SHORT_PERIODS if flags is None else flags)
    tag = "-".join(f"{k.removeprefix('IOTGW_').lower()}{v}" for k, v in sorted(flags.items())) or "default"
    tag = re.sub(r"[^A-Za-z0-9_.-]", "", tag)  # string values carry shell-escaped quotes
    out = SIM / "build" / "fw" / tag
    out.mkdir(parents=True, exist_ok=True)
    extra = " ".join(f"-D{k}={v}" for k, v in sorted(flags.items()))
    make(FIRMWARE, list(envs), {"BUILD_DIR": str(out), "EXTRA_FLAGS": extra}, lock_dir=out)
    return {env: out / env / f"{env}.elf" for env in envs}
