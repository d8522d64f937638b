"""The sink interface the drain worker writes through."""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.spool import ReadingRow


class SinkUnavailable(Exception):
    """A transient failure: the drain worker backs off with jitter and keeps spooling. Nothing is dropped."""


@dataclass(frozen=True)
class WriteOutcome:
    """What a write produced: a token (e.g. GTID@server) when the batch still needs confirmation."""

    token: str | None = None


class Sink(ABC):
    """A destination for readings. Writes must be idempotent on the reading identity."""

    needs_confirmation: bool = False
    # Called (from the sink's own thread) when a replica has applied more: the drain then looks at once instead
    # of at its next poll. Set by the drain; None otherwise.
    on_confirmed: Callable[[], None] | None = None

    @abstractmethod
    def write(self, rows: Sequence[ReadingRow]) -> WriteOutcome:
        """Write the rows (one transaction). Raises SinkUnavailable on a transient failure."""

    def prepare(self, rows: Sequence[ReadingRow]) -> object:
        """Build what `write_prepared` sends (the drain prepares batch n+1 while batch n is written)."""
        return list(rows)

    # The text before the first row of the sink's multi-row INSERT, for a sink that writes MySQL's
    # `INSERT … VALUES (…),(…)`: the drain may then take batches already rendered (gateway.native) and hand them
    # to `prepare_values`. None: the sink takes rows only.
    values_prefix: str | None = None

    def prepare_values(self, sql: str) -> object:
        """Like `prepare`, for a batch the native reader rendered as the INSERT (only if `values_prefix` is set)."""
        raise NotImplementedError(f"{type(self).__name__} takes rows only")

    def write_prepared(self, prepared: object) -> WriteOutcome:
        """Write a batch made by `prepare` (one transaction). Raises SinkUnavailable on a transient failure."""
        return self.write(prepared)  # type: ignore[arg-type]

    def confirmed(self, tokens: Sequence[str]) -> list[str]:
        """Which of these batch tokens are now safe (applied on a replica). Plain sinks: all of them."""
        return list(tokens)

    def take_requeue_signal(self) -> bool:
        """True once after the destination changed (a new primary): unconfirmed batches are written again."""
        return False

    def write_statuses(self, statuses: Sequence) -> None:  # noqa: B027 - sinks without a status table skip it
        """Upsert the latest collector statuses (gateway.device_status.DeviceStatus) into `device_status`.

        Raises SinkUnavailable on a transient failure (they are offered again later)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sinks hold a connection
        """Release connections."""


def ms_to_datetime(ms: int | None) -> str | None:
    """Milliseconds since 1970 (UTC) as 'YYYY-MM-DD HH:MM:SS.fff' for DATETIME(3) columns."""
    if ms is None:
        return None
    secs, milli = divmod(ms, 1000)
    return f"{second_text(secs)}.{milli:03d}"


@functools.lru_cache(maxsize=4096)
def second_text(secs: int) -> str:
    """'YYYY-MM-DD HH:MM:SS' of a second since 1970 (UTC). Cached: the readings of a batch share few seconds,
    and formatting the calendar fields was a third of the drain's time to build a batch (profiled)."""
    t = time.gmtime(secs)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def to_params(rows: Sequence[ReadingRow]) -> list[tuple]:
    """Spool rows (StoredReading's fields in order) → parameters of the readings INSERT (DATETIME(3) strings in
    UTC), for every SQL sink."""
    return [(device, node, boot, seq, site, ms_to_datetime(ts), src, clock, value, unit, cached, ms_to_datetime(received))
            for device, node, boot, seq, site, ts, src, clock, value, unit, cached, received in rows]


def status_params(statuses: Sequence) -> list[tuple]:
    """DeviceStatus objects → parameters in schema.STATUS_COLUMNS order, for every SQL sink."""
    return [(s.site, s.device, s.node, s.boot, s.state, s.role, s.cached, s.cap, s.dropped, s.reset, s.store_err,
             s.clock, s.period_ms, ms_to_datetime(s.received_ms)) for s in statuses]
