"""Run PlatformIO's offline environments without any network access.

PlatformIO needs two things it would normally download: its SCons build engine (the ``tool-scons``
core package) and a development platform. This script provides the first from PyPI's ``scons`` (already
installed in this Python) as a core package in a private core folder, and platformio.ini's ``*_offline``
environments use the local platform in ``firmware/arduino/platform`` for the second (Debian's avr-gcc and
Arduino core). It is idempotent, so tests and CI call it on every run.

    python firmware/arduino/tools/pio_offline.py setup
    python firmware/arduino/tools/pio_offline.py run -e ft_uno_offline -e pair_primary_uno_offline
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CORE_DIR = REPO / "firmware" / "arduino" / "build" / "pio-core"
# PlatformIO 6.1 asks for tool-scons ~4.41101.0, its encoding of SCons 4.11.1 (what PyPI's scons is).
SCONS_PACKAGE_VERSION = "4.41101.0"
SCONS_LAUNCHER = '''"""tool-scons made by iotgw's pio_offline.py: runs the SCons installed in PlatformIO's Python."""
import sys

from SCons.Script import main

if __name__ == "__main__":
    sys.exit(main())
'''


def arduino_libs() -> Path | None:
    """The real SD/Ethernet/PubSubClient libraries: shared/third_party/arduino-libraries next to the
    repository (or next to its worktree folder), or IOTGW_ARDUINO_LIBS; None when they are not there."""
    given = os.environ.get("IOTGW_ARDUINO_LIBS")
    candidates = [Path(given)] if given else []
    candidates += [REPO.parent / "shared/third_party/arduino-libraries",
                   REPO.parents[1] / "shared/third_party/arduino-libraries"]
    return next((c for c in candidates if (c / "SD").is_dir()), None)


def needs_arduino_libs(env: str) -> bool:
    return "_sd" in env or "_mqtt" in env


def offline_envs(ini: Path = REPO / "platformio.ini") -> list[str]:
    """Names of the offline environments declared in platformio.ini (the SD/MQTT ones only where the real
    libraries are: without them they cannot build)."""
    names = []
    have_libs = arduino_libs() is not None
    for line in ini.read_text().splitlines():
        line = line.strip()
        if line.startswith("[env:") and line.endswith("_offline]"):
            name = line[5:-1]
            if have_libs or not needs_arduino_libs(name):
                names.append(name)
    return names


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic: parallel setups never see a half-written file


def setup(core_dir: Path = DEFAULT_CORE_DIR) -> Path:
    """Create (or check) the tool-scons package in ``core_dir``; returns ``core_dir``."""
    try:
        import SCons  # noqa: F401  (the launcher imports it in this same interpreter)
    except ImportError as exc:  # pragma: no cover - environment problem, reported clearly
        raise SystemExit("PyPI's scons is not installed in this Python: pip install scons") from exc
    pkg = core_dir / "packages" / "tool-scons"
    pkg.mkdir(parents=True, exist_ok=True)
    _write_if_changed(pkg / "scons.py", SCONS_LAUNCHER)
    manifest = {"name": "tool-scons", "version": SCONS_PACKAGE_VERSION, "description": "SCons from PyPI"}
    _write_if_changed(pkg / "package.json", json.dumps(manifest, indent=1) + "\n")
    # The owner must be "platformio", or PlatformIO does not recognise it as its core package.
    meta = {
        "type": "tool",
        "name": "tool-scons",
        "version": SCONS_PACKAGE_VERSION,
        "spec": {"owner": "platformio", "id": None, "name": "tool-scons", "requirements": None, "uri": None},
    }
    _write_if_changed(pkg / ".piopm", json.dumps(meta) + "\n")
    return core_dir


def environment(core_dir: Path, build_dir: Path | None = None) -> dict[str, str]:
    """Process environment for an offline ``pio`` run: private core folder, nothing that phones home."""
    env = dict(os.environ)
    env.update(
        PLATFORMIO_CORE_DIR=str(core_dir),
        PLATFORMIO_SETTING_ENABLE_TELEMETRY="no",
        PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL="36500",
        PLATFORMIO_SETTING_CHECK_PRUNE_SYSTEM_THRESHOLD="0",
        PLATFORMIO_DISABLE_PROGRESSBAR="true",
        PLATFORMIO_NO_ANSI="true",
    )
    if build_dir is not None:
        env["PLATFORMIO_BUILD_DIR"] = str(build_dir)
    libs = arduino_libs()
    if libs is not None:
        env["IOTGW_ARDUINO_LIBS"] = str(libs)
    return env


def run(envs: list[str], core_dir: Path = DEFAULT_CORE_DIR, build_dir: Path | None = None,
        extra_flags: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``pio run`` for offline environments only (refuses registry ones: they would hang on the network)."""
    bad = [e for e in envs if not e.endswith("_offline")]
    if bad:
        raise ValueError(f"not offline environments: {bad}")
    env = environment(setup(core_dir), build_dir)
    if extra_flags:
        env["PLATFORMIO_BUILD_FLAGS"] = extra_flags
    cmd = [sys.executable, "-m", "platformio", "run", "-d", str(REPO)]
    for e in envs:
        cmd += ["-e", e]
    # cwd matters: the symlink:// platform path in platformio.ini is relative to the repository.
    return subprocess.run(cmd, cwd=REPO, env=env, text=True, capture_output=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--core-dir", type=Path, default=DEFAULT_CORE_DIR)
    parser.add_argument("--build-dir", type=Path, default=None, help="default: .pio/build in the repository")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup", help="prepare the core folder and print the environment to use it by hand")
    sub.add_parser("list", help="list the offline environments")
    p_run = sub.add_parser("run", help="build offline environments (all of them without -e)")
    p_run.add_argument("-e", "--environment", action="append", default=[])
    p_run.add_argument("--flags", default="", help="extra build flags, e.g. -DIOTGW_SAMPLE_MS=200")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        print("\n".join(offline_envs()))
        return 0
    if args.cmd == "setup":
        setup(args.core_dir)
        print(f"export PLATFORMIO_CORE_DIR={args.core_dir}")
        return 0
    result = run(args.environment or offline_envs(), args.core_dir, args.build_dir, args.flags)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
