"""What every client connection shares: which errors are worth retrying, the jittered backoff between
attempts, the read-only check of a `rw` connection, and the smooth weighted rotation of reads."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

import pymysql

from gateway.topology.conn import is_read_only

# Connection trouble (a server died, a failover is under way): worth asking the topology again.
RETRYABLE = (pymysql.err.InterfaceError, pymysql.err.OperationalError)
# Access denied (database, user), unknown database: a wrong account or name does not get better by asking again.
NOT_TRANSIENT = (1044, 1045, 1049)

K = TypeVar("K", bound=Hashable)


def transient(exc: BaseException) -> bool:
    """True if `exc` (one of RETRYABLE) may go away on another attempt."""
    return not (exc.args and exc.args[0] in NOT_TRANSIENT)


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Jittered exponential backoff before attempt number `attempt` (1 for the first retry): clients that
    failed together do not retry in step."""
    return random.uniform(0.5, 1.0) * min(cap_s, base_s * 2 ** attempt)


def attempts(count: int, before_retry: Callable[[int], None], delay: Callable[[int], float]) -> Iterator[int]:
    """Attempt numbers 0..count-1; before each retry, `before_retry(n)` (drop caches) and a sleep of `delay(n)`."""
    for attempt in range(count):
        if attempt:
            before_retry(attempt)
            time.sleep(delay(attempt))
        yield attempt


def refuse_read_only(conn: pymysql.connections.Connection, ep: str, error: type[pymysql.err.OperationalError],
                     reason: str) -> None:
    """For a `rw` connection: close it and raise `error(1290, …)` if the server is read-only now (a failover
    is under way or the topology changed since it was looked up)."""
    try:
        read_only = is_read_only(conn)
    except BaseException:
        close_quietly(conn)
        raise
    if read_only:
        close_quietly(conn)
        raise error(1290, f"{ep} {reason}")


def close_quietly(conn: pymysql.connections.Connection) -> None:
    """Close a connection that may already be broken (nothing left to release then)."""
    try:
        conn.close()
    except Exception:  # already broken
        pass


class SmoothWeighted(Generic[K]):
    """Smooth weighted round robin (nginx's): exact shares over each cycle of sum(weights) picks, evenly
    interleaved (3:1 gives a, a, b, a, …). Ties go to the lowest key, so the order is predictable."""

    def __init__(self) -> None:
        self._current: dict[K, int] = {}

    def pick(self, weights: dict[K, int]) -> K:
        live = {k: w for k, w in weights.items() if w > 0}
        if not live:
            raise ValueError("no server with a weight above 0")
        for k in list(self._current):
            if k not in live:
                del self._current[k]  # a server that left the rotation starts afresh if it comes back
        total = sum(live.values())
        for k, w in live.items():
            self._current[k] = self._current.get(k, 0) + w
        chosen = max(sorted(live), key=lambda k: self._current[k])  # type: ignore[type-var]
        self._current[chosen] -= total
        return chosen
