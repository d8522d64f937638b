"""MicroPython entry point: runs the collector described by config.py (copy both to the board's root)."""

from iotboard.micropython_board import main

main()
