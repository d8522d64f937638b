"""Shared helpers of the firmware tests: paths, and the tools folder on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[1]
REPO = FIRMWARE.parents[1]
sys.path.insert(0, str(FIRMWARE / "tools"))
