"""The hardware-in-the-loop rig: one board interface over simulated boards (simavr) and real ones (serial).

- :mod:`.board`: the :class:`Board` interface every test uses (expect lines, send lines, reset, power).
- :mod:`.sim`: the simavr harness (``hil_tests/sim/harness.c``) and its :class:`SimBoard`.
- :mod:`.serial_rig`: :class:`SerialBoard`, a real board on a serial port.
- :mod:`.link`: :class:`GatewayLink`, the gateway's part of the serial protocol played by a test.
- :mod:`.build`: builds the harness, the test sketches and the firmware with make.
"""
