"""Helpers shared by the scenario tests under CPython (pytest) and MicroPython (mp_runner.py).

Only what both interpreters have: json, os, sys. Paths are found from this file's location, which the
MicroPython launcher mirrors (it copies the repository's files to the same relative places).
"""

import json
import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
PORT_DIR = HERE.rsplit("/", 1)[0]  # <repo>/firmware/micropython
REPO = HERE.rsplit("/", 3)[0]  # <repo>/firmware/micropython/tests -> <repo>
VECTORS = REPO + "/shared/vectors"
MICROPYTHON = sys.implementation.name == "micropython"

_counter = [0]


def vectors(name: str):
    with open(VECTORS + "/" + name) as f:
        return json.load(f)


def _exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _rmtree(path: str) -> None:
    for entry in os.listdir(path):
        full = path + "/" + entry
        if os.stat(full)[0] & 0x4000:
            _rmtree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def tmpdir() -> str:
    """A fresh, empty folder for one test."""
    if MICROPYTHON:
        base = "/tmp"
    else:
        import tempfile

        base = tempfile.gettempdir()
    _counter[0] += 1
    path = "%s/iotc-%d-%d" % (base, os.getpid() if hasattr(os, "getpid") else 0, _counter[0])
    if _exists(path):
        _rmtree(path)
    os.mkdir(path)
    return path


def raises(exc_type, fn, *args):
    """Call ``fn(*args)`` and return the exception it raises, which must be an ``exc_type``."""
    try:
        fn(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("%s did not raise %s" % (fn, exc_type))
