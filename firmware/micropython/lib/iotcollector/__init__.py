"""iotcollector: the hardware-free logic of the MicroPython/CircuitPython collectors (protocol v1).

Every module here imports only what MicroPython, CircuitPython and CPython all have (struct, json), and
takes its clock, buses, storage and MQTT client as arguments, so the same code runs on a board, under
pytest, and on MicroPython in the test suite. Board glue lives in ``board/``.
"""

VERSION = "0.1.0"
