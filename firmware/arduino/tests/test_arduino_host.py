"""The portable core's doctest suite (tests/host/test_core.cpp), built with g++ and run on the host."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[1]


def test_host_doctest_suite_passes(tmp_path):
    result = subprocess.run(
        ["make", "-s", f"BUILD_DIR={tmp_path}", "host-test"],
        cwd=FIRMWARE, capture_output=True, text=True, timeout=240, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = re.search(r"test cases:\s+(\d+) \|\s+(\d+) passed \|\s+(\d+) failed", output)
    assert summary, output
    total, passed, failed = map(int, summary.groups())
    assert failed == 0 and passed == total
    assert total >= 30, "the suite lost test cases"
    assert "Status: SUCCESS!" in output
