"""pytest setup for the MicroPython port's tests: put the port's folders on sys.path as a board would."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Not the port folder itself: its code.py (CircuitPython entry) would shadow the stdlib module `code`.
for folder in (HERE.parent / "lib", HERE.parent / "host", HERE / "fakes", HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
