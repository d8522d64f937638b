"""The compiled parts, gateway.native: the drain's spool reader and INSERT renderer (`_values`), the ingest's
canonical reading parser (`_reading`) and MQTT packet splitter (`_packets`), in C.

Optional: without a C compiler, Python's headers (python3-dev) or SQLite's (libsqlite3-dev) the package installs
without them and the gateway runs the Python paths they shadow (gateway/native/__init__.py says which run).
Everything else is declared in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("gateway.native._values", ["gateway/native/values.c"], libraries=["sqlite3"], extra_compile_args=["-O2"],
              optional=True),
    Extension("gateway.native._reading", ["gateway/native/reading.c"], extra_compile_args=["-O2"], optional=True),
    Extension("gateway.native._packets", ["gateway/native/packets.c"], extra_compile_args=["-O2"], optional=True),
])
