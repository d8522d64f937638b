"""CircuitPython boot.py: make the flash writable for code (boot counter, flash cache) unless pin D0 is
grounded at reset, which keeps it writable over USB for editing instead. (MicroPython ignores this file.)"""

try:
    import board
    import digitalio
    import storage

    guard = digitalio.DigitalInOut(getattr(board, "D0", None) or board.GP0)
    guard.switch_to_input(pull=digitalio.Pull.UP)
    if guard.value:
        storage.remount("/", readonly=False)
except ImportError:  # not CircuitPython
    pass
