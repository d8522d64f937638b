"""Start, probe, signal and wait for local processes, always by PID and checked against /proc.

Small and public: the sandbox uses it for MariaDB and Mosquitto, other harnesses (simavr) use it too.
Every signal goes through :func:`send_signal`, which first checks that ``/proc/PID/cmdline`` still
contains a marker the caller chose (usually the config file path), so a recycled PID is never hit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Children started by this Python process, kept so they can be reaped: a dead child that nobody waits for
# stays a zombie whose PID still exists. Processes started by another process (a CLI `up` that exited)
# are not here; init reaps those.
_children: dict[int, subprocess.Popen] = {}


class NotOurProcess(RuntimeError):
    """The PID does not belong to the process we started (it exited and the PID may have been reused)."""


@dataclass(frozen=True)
class Launched:
    """A process started by :func:`start_process`."""

    pid: int
    argv: tuple[str, ...]
    log_path: Path


def start_process(
    argv: Sequence[str],
    log_path: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Launched:
    """Start ``argv`` in its own session with stdout and stderr appended to ``log_path``.

    Its own session (``start_new_session=True``) so that a Ctrl-C in the terminal of a test runner
    does not reach it: it is stopped only by PID, by whoever started it.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    # Popen returns as soon as the child has begun exec; for a moment after that /proc/PID/cmdline is
    # still empty. Wait until it shows the new program so that is_ours() is right from now on.
    try:
        wait_until(lambda: cmdline(proc.pid) or proc.poll() is not None, 10, interval=0.001, what=f"{argv[0]} to exec")
    except TimeoutError:
        pass  # is_ours() retries on an empty cmdline as well
    return Launched(pid=proc.pid, argv=tuple(argv), log_path=log_path)


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        del _children[pid]


def proc_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/PID/stat`` (R, S, T, Z, ...), or None if there is no such process."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces: the state follows the last ')'.
    return stat[stat.rindex(")") + 2]


def cmdline(pid: int) -> list[str] | None:
    """The process's argv from ``/proc/PID/cmdline``, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int | None, marker: str) -> bool:
    """True if ``pid`` is a live (not zombie) process whose command line contains ``marker``."""
    if not pid:
        return False
    state = proc_state(pid)
    if state is None or state in "ZX":
        return False
    args = cmdline(pid)
    for _ in range(50):  # empty while an exec is in flight (or for a kernel thread): look again shortly
        if args != []:
            break
        time.sleep(0.002)
        args = cmdline(pid)
    return args is not None and any(marker in arg for arg in args)


def is_frozen(pid: int | None, marker: str) -> bool:
    """True if our process ``pid`` is stopped (SIGSTOP)."""
    return is_ours(pid, marker) and proc_state(pid) in ("T", "t")


def send_signal(pid: int, marker: str, sig: int) -> None:
    """Send ``sig`` to ``pid`` after checking it is ours; raise :class:`NotOurProcess` otherwise."""
    if not is_ours(pid, marker):
        args = cmdline(pid)
        raise NotOurProcess(
            f"refusing to send {signal.Signals(sig).name} to PID {pid}: "
            + ("no such process" if args is None else f"its command line {args!r} does not contain {marker!r}")
        )
    os.kill(pid, sig)


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    max_interval: float = 0.5,
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; raise TimeoutError naming ``what``.

    The interval grows gently (up to ``max_interval``) so long waits do not spin on a busy machine; pass
    ``max_interval=interval`` for a fixed poll (benchmarks that time what they wait for).
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, max_interval)


def stop_process(pid: int, marker: str, timeout: float = 60.0) -> None:
    """SIGTERM our process (waking it first if frozen), wait for it to exit, SIGKILL it if it does not.

    Does nothing if the PID is not ours any more (already gone).
    """
    if not is_ours(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    if proc_state(pid) in ("T", "t"):
        os.kill(pid, signal.SIGCONT)  # a stopped process handles SIGTERM only once it runs again
    try:
        wait_until(lambda: not is_ours(pid, marker), timeout, what=f"PID {pid} to exit after SIGTERM")
    except TimeoutError:
        kill_process(pid, marker)


def kill_process(pid: int, marker: str, timeout: float = 30.0) -> None:
    """SIGKILL our process and wait until it is gone (not even a zombie of ours)."""
    if not is_ours(pid, marker):
        return
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not is_ours(pid, marker), timeout, what=f"PID {pid} to exit after SIGKILL")
