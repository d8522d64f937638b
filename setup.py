"""The one compiled part: gateway.native._values (the drain's spool reader and INSERT renderer, in C).

Optional: without a C compiler, Python's headers (python3-dev) or SQLite's (libsqlite3-dev) the package installs
without it and the drain renders every batch in Python (gateway/native/__init__.py says which path runs).
Everything else is declared in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gateway.native._values", ["gateway/native/values.c"], libraries=["sqlite3"],
                             extra_compile_args=["-O2"], optional=True)])
