"""Hardware-in-the-loop tests: the same scenarios on simulated boards (simavr) or real ones (serial)."""
