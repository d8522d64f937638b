"""The drain worker: moves spooled readings into the sink, never dropping any.

Transient sink failures back off exponentially with full jitter (bounded by `retry_max_s`) while ingest
keeps spooling. With a confirming sink (the replicated writer), a written batch stays in the spool as
"unconfirmed" until a replica has it, and is written again after a primary change.

Pipelined: a sender thread writes batch n to the sink while this thread takes and prepares batch n+1 from
the spool (at most `in_flight` batches handed over and not yet written). Batches are written in order, one at
a time, so each write is exactly what it was without the pipeline (idempotent on the reading identity); a
failed batch makes the sender drop the batches behind it, and they are taken again after the backoff.
The batch size adapts to the measured write time: it grows while a full batch writes well under
`target_write_s` (per-batch round trips then dominate, as with a database across a network) and shrinks when
writes take far longer. Rows the database has (confirmed on a replica, or written to a plain sink) leave the
spool in one delete per `linger_s` at low rates (or at once for a backlog's worth, on the way out, or when the
spool is full): each delete is a fsynced spool commit, and a row kept a moment longer is at worst written again
after a crash (idempotent). A batch is written as soon as it is there. Each spool commit costs
spool page writes (SD-card wear) whatever its size.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway import crashpoints, native
from gateway.backoff import Backoff
from gateway.sinks.base import Sink, SinkUnavailable, WriteOutcome
from gateway.spool import TAKE_SQL, Spool

log = logging.getLogger(__name__)

# The end of a confirmed backlog is written in halving batches down to this many rows (see _next_size).
TAPER_BELOW = 1000


@dataclass
class _Batch:
    ids: list[int]
    prepared: object
    outcome: WriteOutcome | None = None
    error: SinkUnavailable | None = None
    fatal: BaseException | None = None  # anything else: the drain worker fails loudly
    skipped: bool = False
    seconds: float = 0.0


@dataclass
class _StatusJob:
    """Changed collector statuses to upsert (offered again on failure; readings have their own retry path)."""

    changed: object
    book: object


class _Sender(threading.Thread):
    """Writes handed-over batches to the sink, in order, one at a time."""

    def __init__(self, sink: Sink, done: queue.Queue[_Batch]) -> None:
        super().__init__(name="drain-sender", daemon=True)
        self.sink, self.done = sink, done
        self.todo: queue.Queue[_Batch | _StatusJob | None] = queue.Queue()
        self._failed = False  # after a failure every batch behind it is skipped until `resume()`
        self._lock = threading.Lock()

    def resume(self) -> None:
        with self._lock:
            self._failed = False

    def run(self) -> None:
        while True:
            batch = self.todo.get()
            if batch is None:
                return
            if isinstance(batch, _StatusJob):
                try:
                    self.sink.write_statuses(batch.changed)
                except SinkUnavailable as exc:
                    batch.book.put_back(batch.changed)  # type: ignore[attr-defined]
                    log.debug("device statuses not written yet: %s", exc)
                continue
            with self._lock:
                skip = self._failed
            if skip:
                batch.skipped = True
            else:
                started = time.monotonic()
                try:
                    batch.outcome = self.sink.write_prepared(batch.prepared)
                except SinkUnavailable as exc:
                    batch.error = exc
                    with self._lock:
                        self._failed = True
                except BaseException as exc:  # reported to the drain thread, which fails loudly
                    batch.fatal = exc
                    with self._lock:
                        self._failed = True
                batch.seconds = time.monotonic() - started
            self.done.put(batch)


class DrainWorker(threading.Thread):
    """Writes the spool to the sink in batches (adaptive size from `batch_size`), oldest first."""

    def __init__(self, spool: Spool, sink: Sink, *, batch_size: int = 1000, retry_max_s: float = 5.0,
                 linger_s: float = 1.0, in_flight: int = 2, batch_max: int = 10_000,
                 target_write_s: float = 0.25, on_write: Callable[[int, float], None] | None = None,
                 on_error: Callable[[str], None] | None = None, statuses=None,  # noqa: ANN001 - StatusBook
                 status_interval_s: float = 1.0, use_native: bool = True) -> None:
        super().__init__(name="drain", daemon=True)
        self.spool, self.sink = spool, sink
        self.batch_size = batch_size  # a backlog of this many is written at once, without lingering
        self.batch_now = batch_size  # the adaptive size of the next batch
        self.batch_min, self.batch_max = max(1, min(100, batch_size)), max(batch_size, batch_max)
        self.target_write_s = target_write_s
        self.backoff = Backoff(retry_max_s)
        self.linger_s = linger_s
        self.in_flight = max(1, in_flight)
        self.on_write, self.on_error = on_write, on_error
        self._stop_event = threading.Event()
        self.available = True
        self.last_error = ""
        self.error: BaseException | None = None
        self._done: queue.Queue[_Batch] = queue.Queue()
        self._sender = _Sender(sink, self._done)
        self._flying: list[_Batch] = []
        self._deletable: dict[str, None] = {}  # tokens whose rows the database has: deleted together
        self._deletable_since = 0.0
        self._local = 0  # tokens for a plain sink's batches (no confirmation: deletable at once)
        # Collector statuses (gateway.device_status.StatusBook): changed ones are upserted at most every
        # status_interval_s, by the sender thread between batches (it owns the sink's connection).
        self.statuses = statuses
        self.status_interval_s = status_interval_s
        self._status_due = 0.0
        # yield_to(): True during a burst (the spool writer's groups fill up). No batch is taken then, for up to
        # yield_max_s since the last one (so a sustained high rate still drains, a batch at a time, its size
        # adapting upward as ever, and a full spool drains at once): the drain's CPU would delay
        # every ack, and the readings are durable in the spool already. The service sets it only when acks come
        # from the spool.
        self.yield_to: Callable[[], bool] | None = None
        self.yield_max_s = 1.0
        self._took_at = 0.0
        self._backlog = False  # rows were left waiting behind the last batch taken: a backlog is being written
        sink.on_confirmed = spool.new_rows.set  # a confirmation wakes the drain like new rows do
        # A sink that takes MySQL's INSERT text gets batches read and rendered in C where the native module is
        # built (gateway.native; `use_native=False` keeps the Python path, which is otherwise the fallback).
        self.use_native = use_native and sink.values_prefix is not None
        self._values = None  # the native reader, opened by the drain thread

    def stop(self) -> None:
        self._stop_event.set()
        self.spool.new_rows.set()

    def run(self) -> None:
        conn = self.spool.drain_connection()
        self._values = self._open_values_reader()
        self._sender.start()
        try:
            while not self._stop_event.is_set():
                crashpoints.fault("drain.step")
                self._write_statuses()
                if not self._step(conn):
                    self._idle(conn)
            self._status_due = 0.0
            self._write_statuses()  # the last changes before a clean stop
            self._finish_flying(conn)
            self._flush_deletes(conn, force=True)
        except BaseException as exc:
            log.exception("drain worker failed")
            self.error = exc
        finally:
            self._sender.todo.put(None)
            self._sender.join(timeout=30)
            if self._values is not None:
                self._values.close()
            conn.close()
            self.sink.close()

    def _open_values_reader(self):  # noqa: ANN202 - gateway.native's reader or None
        if not self.use_native:
            return None
        if not native.AVAILABLE:
            log.info("drain: rendering batches in Python (native reader %s)", native.WHY_NOT)
            return None
        assert self.sink.values_prefix is not None
        try:
            return native.values_reader(self.spool.path, TAKE_SQL, self.sink.values_prefix)
        except native.ReaderError as exc:  # the fast path is optional: the Python one reads the same spool
            log.warning("drain: rendering batches in Python (the native reader could not open the spool: %s)", exc)
            return None

    def _write_statuses(self) -> None:
        if self.statuses is None or time.monotonic() < self._status_due:
            return
        self._status_due = time.monotonic() + self.status_interval_s
        changed = self.statuses.take_changed()
        if changed:
            self._sender.todo.put(_StatusJob(changed, self.statuses))

    def _idle(self, conn) -> None:
        """Nothing to do now: wait for new rows or a confirmation (or the batch in flight)."""
        if self._flying:
            self._collect(conn, block=True)
            return
        # Nothing to do: new rows and confirmations (the sink's on_confirmed) wake us at once; this bounds the
        # status and watchdog cadence.
        wait = 0.25
        if self._deletable:  # until the gathered delete is due, unless new rows come first
            wait = min(wait, max(0.001, self._deletable_since + self.linger_s - time.monotonic()))
        self.spool.new_rows.wait(wait)  # cleared at the start of the next step: nothing set meanwhile is lost

    # --- one unit of work ----------------------------------------------------------------------
    def _step(self, conn) -> bool:
        """One unit of work; False when there was nothing to do."""
        self.spool.new_rows.clear()  # before looking: new rows or a confirmation from now on wake the next idle
        sink = self.sink
        did = self._collect(conn, block=False)
        if sink.needs_confirmation and sink.take_requeue_signal():
            self._finish_flying(conn)  # requeue only with nothing in flight: every taken row is then accounted
            self._flush_deletes(conn, force=True)  # confirmed rows leave before the rest is written again
            n = self.spool.requeue_unconfirmed(conn)
            log.warning("primary changed: %d unconfirmed readings will be written again", n)
        if sink.needs_confirmation:
            tokens = [t for t in self.spool.unconfirmed_tokens(conn) if t not in self._deletable]
            if tokens:
                done = sink.confirmed(tokens)
                if done:
                    self._add_deletable(done)
                    did = True
        if self._flush_deletes(conn, force=False):
            did = True
        if len(self._flying) >= self.in_flight or not self._ready_to_take():
            return did
        after = self._flying[-1].ids[-1] if self._flying else -1
        size = self._next_size()
        batch = self.spool.take(conn, size, after=after, values=self._values)
        if not batch:
            return did
        self._took_at = time.monotonic()
        self._backlog = self._waiting() > len(batch)  # (this batch is not in flight yet)
        prepared = sink.prepare(batch.rows) if batch.values_sql is None else sink.prepare_values(batch.values_sql)
        flying = _Batch(batch.ids, prepared)
        self._flying.append(flying)
        self._sender.todo.put(flying)
        return True

    def _next_size(self) -> int:
        """Rows to take next: the adaptive size, or less at the end of a backlog that a replica must confirm.

        A backlog counts as drained when a replica has applied its last batch, and a replica applies a batch
        only after the primary committed it: a last batch of thousands of rows is a wait of its own (0.1-0.2 s
        for 7,600 rows here). Halving the batches over the backlog's last two batches' worth lets the replica
        apply the earlier ones while the last, small ones are written. Only while rows were left behind the last
        batch (a backlog): at steady rates a batch takes everything waiting."""
        size = self.batch_now
        if self.sink.needs_confirmation and self._backlog:
            waiting = self._waiting()
            if TAPER_BELOW <= waiting < 2 * size:
                size = max(TAPER_BELOW, waiting // 2)
        return size

    def _add_deletable(self, tokens) -> None:  # noqa: ANN001 - iterable of str
        if not self._deletable:
            self._deletable_since = time.monotonic()
        self._deletable.update(dict.fromkeys(tokens))

    def _flush_deletes(self, conn, force: bool) -> bool:
        """Delete the rows the database has, when due; True if it did."""
        if not self._deletable:
            return False
        due = force or self.spool.closing or self._stop_event.is_set() or self.spool.full \
            or time.monotonic() - self._deletable_since >= self.linger_s \
            or len(self._deletable) * max(1, self.batch_now) >= self.batch_size * 4
        if not due:
            return False
        self.spool.confirmed(conn, list(self._deletable))
        self._deletable.clear()
        return True

    def _ready_to_take(self) -> bool:
        """Take a batch now? Whenever rows wait that are not in flight (only deletes are gathered), unless a burst
        is on (see yield_to)."""
        if self.yield_to is not None and self.yield_to() and time.monotonic() - self._took_at < self.yield_max_s \
                and not self.spool.full and not self.spool.closing:
            return False
        return self._waiting() > 0

    def _waiting(self) -> int:
        """Rows waiting to be taken: held, not waiting for confirmation and not in flight."""
        return self.spool.pending_count() - sum(len(b.ids) for b in self._flying)

    def _collect(self, conn, block: bool) -> bool:
        """Account for batches the sender has finished (in order); True if any."""
        got = False
        while self._flying:
            try:
                batch = self._done.get(timeout=0.5) if block else self._done.get_nowait()
            except queue.Empty:
                return got
            block = False
            got = True
            assert batch is self._flying[0], "the sender finishes batches in order"
            self._flying.pop(0)
            if batch.skipped:
                continue
            if batch.fatal is not None:
                raise batch.fatal
            if batch.error is not None:
                self._finish_flying(conn)  # the rest are skipped: drop them, take them again after the backoff
                self._failed(str(batch.error))
                self._sender.resume()
                continue
            self._written(conn, batch)
        return got

    def _finish_flying(self, conn) -> None:
        """Wait for every batch in flight and account for it."""
        while self._flying:
            self._collect(conn, block=True)

    def _written(self, conn, batch: _Batch) -> None:
        crashpoints.hit("drain.after_write")
        assert batch.outcome is not None
        sink = self.sink
        if sink.needs_confirmation:
            self.spool.written(conn, batch.ids, batch.outcome.token)
        else:  # the database has them: deleted with the next gathered delete
            self._local += 1
            token = f"local/{self._local}"
            self.spool.written(conn, batch.ids, token)
            self._add_deletable([token])
        if not self.available:
            log.warning("database available again: draining %d spooled readings", self.spool.depth)
        self.available, self.last_error = True, ""
        self.backoff.reset()
        self._adapt(len(batch.ids), batch.seconds)
        if self.on_write:
            self.on_write(len(batch.ids), batch.seconds)

    def _adapt(self, n: int, seconds: float) -> None:
        """Size the next batches from the last full one: toward what writes in target_write_s, at most four times
        as many at a time; halve after a batch that wrote slowly.

        Proportional, so a backlog reaches its size in a couple of batches (growing by half each time took ten
        batches to get there, a third of a 100,000-row backlog, and stopped at three quarters of the target).
        The estimate errs small, not large: a small batch's fixed costs (round trips, commit) make its rows look
        slower than a large batch's."""
        if n >= self.batch_now and seconds < self.target_write_s:
            grow = min(4.0, self.target_write_s / max(seconds, 0.001))
            self.batch_now = min(self.batch_max, max(self.batch_now + 1, int(self.batch_now * grow)))
        elif seconds > self.target_write_s * 2:
            self.batch_now = max(self.batch_min, self.batch_now // 2)

    def _failed(self, message: str) -> None:
        delay = self.backoff.next_delay()
        if self.available or message != self.last_error:
            log.warning("database unavailable (%s); spooling, retrying with backoff", message)
        self.available, self.last_error = False, message
        if self.on_error:
            self.on_error(message)
        self._stop_event.wait(delay)
