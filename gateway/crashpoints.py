"""Crash-point hooks: tests kill the gateway at an exact point of its code, not at a guessed time.

Set `IOTGW_CRASH_AT=name` (or `name:N` for the N-th time the point is reached) in the gateway's environment;
when the point is hit the process SIGKILLs itself, exactly as `kill -9` would. Unset, a hit costs one dict lookup.

`IOTGW_FAULT_AT=name[:N]` instead raises InjectedFault at a `fault(name)` point: a worker thread dying of an
unexpected exception, for the liveness tests (the process itself lives on).
"""

from __future__ import annotations

import os
import signal

_target = os.environ.get("IOTGW_CRASH_AT", "")
_name, _, _nth = _target.partition(":")
_remaining = int(_nth) if _nth.isdigit() else 1
_fault_target = os.environ.get("IOTGW_FAULT_AT", "")
_fault_name, _, _fault_nth = _fault_target.partition(":")
_fault_remaining = int(_fault_nth) if _fault_nth.isdigit() else 1
FAULT_POINTS = ("mqtt.loop", "mqtt.message", "serial.loop", "serial.line", "writer.commit", "drain.step")

POINTS = ("spool.before_commit", "spool.after_commit", "mqtt.after_ack", "drain.after_write", "drain.before_delete")


def hit(name: str) -> None:
    """Die here with SIGKILL if this is the configured crash point (and its count is reached)."""
    global _remaining
    if name != _name:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)


class InjectedFault(RuntimeError):
    """The exception `fault()` raises at the configured point."""


def fault(name: str) -> None:
    """Raise InjectedFault here, once: the N-th time the configured fault point is reached."""
    global _fault_remaining
    if name != _fault_name:
        return
    _fault_remaining -= 1
    if _fault_remaining == 0:
        raise InjectedFault(f"injected fault at {name}")
