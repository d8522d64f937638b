"""The drain worker: moves spooled readings into the sink, never dropping any.

Transient sink failures back off exponentially with full jitter (bounded by `retry_max_s`) while ingest
keeps spooling. With a confirming sink (the replicated writer), a written batch stays in the spool as
"unconfirmed" until a replica has it, and is written again after a primary change.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from gateway import crashpoints
from gateway.sinks.base import Sink, SinkUnavailable
from gateway.spool import Spool

log = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff with full jitter: 0.05 s doubling up to `cap` seconds."""

    def __init__(self, cap: float, base: float = 0.05, rng: random.Random | None = None) -> None:
        self.cap, self.base, self.attempt = cap, base, 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        self.attempt += 1
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** min(self.attempt, 20)))

    def reset(self) -> None:
        self.attempt = 0


class DrainWorker(threading.Thread):
    """Writes the spool to the sink in batches of `batch_size`, oldest first."""

    def __init__(self, spool: Spool, sink: Sink, *, batch_size: int = 1000, retry_max_s: float = 5.0,
                 idle_s: float = 0.02, on_write: Callable[[int, float], None] | None = None,
                 on_error: Callable[[str], None] | None = None, statuses=None,  # noqa: ANN001 - StatusBook
                 status_interval_s: float = 1.0) -> None:
        super().__init__(name="drain", daemon=True)
        self.spool, self.sink = spool, sink
        self.batch_size = batch_size
        self.backoff = Backoff(retry_max_s)
        self.idle_s = idle_s
        self.on_write, self.on_error = on_write, on_error
        self._stop_event = threading.Event()
        self.available = True
        self.last_error = ""
        self.error: BaseException | None = None
        # Tokens written and not yet confirmed, kept in memory so a step does not re-read the spool for them
        # (None: read them from the spool, as at start-up).
        self._unconfirmed: list[str] | None = None
        # Collector statuses (gateway.device_status.StatusBook): changed ones are upserted at most every
        # status_interval_s, between reading batches, so they never slow the reading path.
        self.statuses = statuses
        self.status_interval_s = status_interval_s
        self._status_due = 0.0

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        conn = self.spool.drain_connection()
        try:
            while not self._stop_event.is_set():
                crashpoints.fault("drain.step")
                self._write_statuses()
                if not self._step(conn):
                    self._stop_event.wait(self.idle_s)
            self._status_due = 0.0
            self._write_statuses()  # the last changes before a clean stop
        except BaseException as exc:
            log.exception("drain worker failed")
            self.error = exc
        finally:
            conn.close()
            self.sink.close()

    def _write_statuses(self) -> None:
        if self.statuses is None or time.monotonic() < self._status_due:
            return
        self._status_due = time.monotonic() + self.status_interval_s
        changed = self.statuses.take_changed()
        if not changed:
            return
        try:
            self.sink.write_statuses(changed)
        except SinkUnavailable as exc:  # offered again next time; readings have their own retry path
            self.statuses.put_back(changed)
            log.debug("device statuses not written yet: %s", exc)

    def _step(self, conn) -> bool:
        """One unit of work; False when there was nothing to do."""
        sink = self.sink
        if sink.needs_confirmation and sink.take_requeue_signal():
            n = self.spool.requeue_unconfirmed(conn)
            self._unconfirmed = []
            log.warning("primary changed: %d unconfirmed readings will be written again", n)
        did = False
        if sink.needs_confirmation:
            if self._unconfirmed is None:
                self._unconfirmed = self.spool.unconfirmed_tokens(conn)
            if self._unconfirmed:
                done = sink.confirmed(self._unconfirmed)
                if done:
                    self.spool.confirmed(conn, done)
                    gone = set(done)
                    self._unconfirmed = [t for t in self._unconfirmed if t not in gone]
                    did = True
        batch = self.spool.take(conn, self.batch_size)
        if not batch:
            return did
        started = time.monotonic()
        try:
            outcome = sink.write([row for _, row in batch])
        except SinkUnavailable as exc:
            self._failed(str(exc))
            return True
        crashpoints.hit("drain.after_write")
        self.spool.written(conn, [i for i, _ in batch], outcome.token if sink.needs_confirmation else None)
        if sink.needs_confirmation and outcome.token is not None and self._unconfirmed is not None \
                and outcome.token not in self._unconfirmed[-8:]:
            self._unconfirmed.append(outcome.token)
        if not self.available:
            log.warning("database available again: draining %d spooled readings", self.spool.depth)
        self.available, self.last_error = True, ""
        self.backoff.reset()
        if self.on_write:
            self.on_write(len(batch), time.monotonic() - started)
        return True

    def _failed(self, message: str) -> None:
        delay = self.backoff.next_delay()
        if self.available or message != self.last_error:
            log.warning("database unavailable (%s); spooling, retrying with backoff", message)
        self.available, self.last_error = False, message
        if self.on_error:
            self.on_error(message)
        self._stop_event.wait(delay)
