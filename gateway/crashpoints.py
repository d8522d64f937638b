"""Crash-point hooks: tests kill the gateway at an exact point of its code, not at a guessed time.

Set `IOTGW_CRASH_AT=name` (or `name:N` for the N-th time the point is reached) in the gateway's environment;
when the point is hit the process SIGKILLs itself, exactly as `kill -9` would. Unset, a hit costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_target = os.environ.get("IOTGW_CRASH_AT", "")
_name, _, _nth = _target.partition(":")
_remaining = int(_nth) if _nth.isdigit() else 1
POINTS = ("spool.before_commit", "spool.after_commit", "mqtt.after_ack", "drain.after_write", "drain.before_delete")


def hit(name: str) -> None:
    """Die here with SIGKILL if this is the configured crash point (and its count is reached)."""
    global _remaining
    if name != _name:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
