"""Runs the same scenario tests on real MicroPython 1.27 (WebAssembly, under Node) and checks that every
scenario pytest collects also passed there, plus the MicroPython-only ones. CPython only."""

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PORT = TESTS.parent
REPO = PORT.parent.parent
WASM = PORT / "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"


def _expected_names() -> set[str]:
    """``module::function`` of every test function in the shared scenario modules (read with ast, so
    MicroPython-only modules need not import under CPython)."""
    names = set()
    for path in sorted(TESTS.glob("test_upy_*.py")) + sorted(TESTS.glob("upy_native_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(f"{path.stem}::{node.name}")
    return names


def _ensure_wasm() -> None:
    if WASM.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm not found: install Node 20 and npm to run the MicroPython tests")
    proc = subprocess.run([npm, "ci", "--prefix", str(PORT), "--no-audit", "--no-fund"], capture_output=True,
                          text=True, timeout=240)
    if proc.returncode != 0 or not WASM.exists():
        pytest.fail(f"`npm ci --prefix {PORT}` failed (is the npm registry reachable?):\n{proc.stderr[-2000:]}")


@pytest.mark.timeout(300)
def test_scenarios_pass_on_micropython():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: Node 20 is needed to run MicroPython (WebAssembly)")
    _ensure_wasm()
    proc = subprocess.run([node, str(TESTS / "run_micropython.mjs"), str(REPO)], capture_output=True, text=True,
                          timeout=240)
    out = proc.stdout
    passed = set(re.findall(r"^PASS (\S+)$", out, re.M))
    failed = set(re.findall(r"^FAIL (\S+)$", out, re.M))
    summary = re.search(r"^SUMMARY passed=(\d+) failed=(\d+)$", out, re.M)
    assert summary, f"no summary from MicroPython:\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    assert not failed, f"failed on MicroPython: {sorted(failed)}\n{out[-6000:]}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = _expected_names()
    assert passed == expected, f"missing: {sorted(expected - passed)}; unexpected: {sorted(passed - expected)}"
    assert int(summary.group(1)) == len(expected) >= 50
    assert "MicroPython v1.27" in out, "the runner did not report MicroPython 1.27"
