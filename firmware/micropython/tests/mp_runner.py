"""Runs the scenario tests on MicroPython (launched by run_micropython.mjs; CPython runs them with pytest).

Imports every ``test_upy_*.py`` module (and the MicroPython-only ``upy_native_*.py``) in this folder, calls
each ``test_*`` function, prints ``PASS``/``FAIL`` per test and a final ``SUMMARY`` line that the pytest
side checks against its own count.
"""

import os
import sys

TESTS = __file__.rsplit("/", 1)[0]
PORT = TESTS.rsplit("/", 1)[0]
for folder in (PORT + "/lib", PORT + "/host", TESTS + "/fakes", TESTS):
    if folder not in sys.path:
        sys.path.insert(0, folder)


def run_all():
    names = sorted(n[:-3] for n in os.listdir(TESTS)
                   if n.endswith(".py") and (n.startswith("test_upy_") or n.startswith("upy_native_")))
    passed = failed = 0
    print("INTERPRETER %s" % sys.version)
    for name in names:
        module = __import__(name)
        for attr in sorted(dir(module)):
            fn = getattr(module, attr)
            if not attr.startswith("test_") or not callable(fn):
                continue
            try:
                fn()
            except Exception as exc:  # report every failure, keep going
                failed += 1
                print("FAIL %s::%s" % (name, attr))
                sys.print_exception(exc)
            else:
                passed += 1
                print("PASS %s::%s" % (name, attr))
    print("SUMMARY passed=%d failed=%d" % (passed, failed))


run_all()
