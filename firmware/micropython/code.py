"""CircuitPython entry point: runs the collector described by config.py (copy both to CIRCUITPY)."""

from iotboard.circuitpython_board import main

main()
