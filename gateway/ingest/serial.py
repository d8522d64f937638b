"""Serial ingest: protocol v1 line frames from USB-attached collectors, ack lines back (works on a pty).

Lines that are not frames are the collector's console text: logged, never an error.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

import serial

from gateway import crashpoints
from gateway.backoff import reconnect_backoff
from gateway.device_status import StatusBook, parse_status
from gateway.protocol import MAX_LINE, Ack, Rejected, frame, identity_of, parse_frame, parse_reading
from gateway.spool import Entry, Spool, SpoolWriter, quarantined

LINE_BUFFER_MAX = 4 * MAX_LINE  # bytes without a newline kept at most: the rest of such a line is skipped

log = logging.getLogger(__name__)


class SerialIngest(threading.Thread):
    """Reads one serial port (a device path or a pyserial URL) and feeds the spool writer."""

    def __init__(self, port: str, *, baud: int = 115200, site: str, spool: Spool, writer: SpoolWriter,
                 on_received: Callable[[str, int, list[str]], None] | None = None,
                 clock: Callable[[], float] = time.time, statuses: StatusBook | None = None) -> None:
        super().__init__(name=f"serial-ingest {port}", daemon=True)
        self.port_name, self.baud, self.site = port, baud, site
        self.spool, self.writer = spool, writer
        self.on_received = on_received  # on_received(source, count, quarantine reasons), as MqttIngest
        self.clock = clock
        self.port: serial.SerialBase | None = None
        self._write_lock = threading.Lock()
        self._halt = threading.Event()
        self.reopen = reconnect_backoff()
        self.console: collections.deque[str] = collections.deque(maxlen=50)
        self.connected = False
        self.last_error = ""
        self.statuses = statuses if statuses is not None else StatusBook()
        self.error: BaseException | None = None  # set when the thread died of an unexpected exception
        self._buffer = bytearray()
        self._skipping = False  # inside an over-long line: drop bytes up to its newline
        self._internal_errors_logged: set[str] = set()
        # `[ack] after` = database/replica: acks wait for the database (gateway.acks.AckGate); each entry's ref
        # is then (site, stream, seq, quarantined) so the commit can hand it to the gate.
        self.ack_gate = None

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the service's watchdog sees the dead thread and this reason
            log.exception("serial %s: ingest failed", self.port_name)
            self.error = exc
            raise

    def _run(self) -> None:
        while not self._halt.is_set():
            crashpoints.fault("serial.loop")
            if self.port is None:
                try:
                    self.port = serial.serial_for_url(self.port_name, baudrate=self.baud, timeout=0.1)
                except (serial.SerialException, OSError) as exc:
                    if str(exc) != self.last_error:
                        log.error("serial %s: cannot open: %s", self.port_name, exc)
                    self.last_error = str(exc)
                    self._halt.wait(self.reopen.next_delay())
                    continue
                self.reopen.reset()
                self.connected, self.last_error = True, ""
                log.info("serial %s: open at %d baud (site %s)", self.port_name, self.baud, self.site)
            if self.spool.full:  # backpressure: stop reading; the collector keeps its records until acked
                with self.spool.full_changed:
                    self.spool.full_changed.wait_for(lambda: not self.spool.full or self._halt.is_set(), timeout=1.0)
                continue
            try:
                chunk = self.port.read(max(1, min(self.port.in_waiting, 4096)))
            except (serial.SerialException, OSError) as exc:
                log.warning("serial %s: read failed (%s); reopening", self.port_name, exc)
                self._close()
                continue
            for line in self.feed(chunk):
                self.handle_line(line)
        self._close()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Split received bytes into lines with bounded memory: a line longer than LINE_BUFFER_MAX is quarantined
        (its first bytes) as `bad_frame` and skipped up to its newline."""
        lines = []
        self._buffer += chunk
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                break
            line = bytes(self._buffer[:cut + 1])
            del self._buffer[:cut + 1]
            if self._skipping:
                self._skipping = False
                continue
            lines.append(line)
        if len(self._buffer) > LINE_BUFFER_MAX:
            if not self._skipping:
                self._quarantine(bytes(self._buffer), Rejected(
                    "bad_frame", detail=f"bad_frame: line over {LINE_BUFFER_MAX} bytes without a newline"),
                    int(self.clock() * 1000))
            self._skipping = True
            self._buffer.clear()
        return lines

    def _close(self) -> None:
        self.connected = False
        if self.port is not None:
            try:
                self.port.close()
            except (serial.SerialException, OSError):
                pass
            self.port = None

    def handle_line(self, raw: bytes) -> None:
        """Validate one line and queue it for the spool (console text is only logged); never raises."""
        try:
            self._handle_line(raw)
        except Exception as exc:  # a bug met by one line: quarantine it, never stop this port
            kind = type(exc).__name__
            if kind not in self._internal_errors_logged:
                self._internal_errors_logged.add(kind)
                log.exception("serial %s: internal error on a line; quarantined as internal_error", self.port_name)
            try:
                self._quarantine(raw, Rejected("internal_error", detail=f"internal_error: {kind}"),
                                 int(self.clock() * 1000))
            except Exception:
                log.exception("serial %s: could not quarantine a line; dropped", self.port_name)

    def _handle_line(self, raw: bytes) -> None:
        crashpoints.fault("serial.line")
        received_ms = int(self.clock() * 1000)
        if len(raw) > MAX_LINE + 2:  # checked before decoding: an over-long line is never parsed
            self._quarantine(raw, Rejected("bad_frame", detail=f"bad_frame: line of {len(raw)} bytes > {MAX_LINE}"),
                             received_ms)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._quarantine(raw, Rejected("not_utf8"), received_ms)
            return
        try:
            parsed = parse_frame(text)
            if parsed is None:
                line = text.rstrip("\r\n")
                if line:
                    self.console.append(line)
                    log.debug("serial %s console: %s", self.port_name, line)
                return
            kind, payload = parsed
            if kind == "S":
                status = parse_status(payload.encode(), site=self.site, received_ms=received_ms)
                if self.statuses.update(status):
                    log.info("serial %s status %s/%s: %s", self.port_name, status.device, status.node, status.state)
                return
            if kind != "R":
                raise Rejected("unknown_type", detail=f"unknown_type: {kind!r} from a collector")
            try:
                item = parse_reading(payload.encode(), site=self.site, received_ms=received_ms)
            except Rejected as rej:  # a whole frame with a bad reading: its identity still gets acked
                self._quarantine(raw, rej, received_ms, identity_of(payload.encode()))
                return
        except Rejected as rej:
            self._quarantine(raw, rej, received_ms)
            return
        if self.on_received:
            self.on_received("serial", 1, [])
        self.writer.submit(Entry(item, self, (item.site, item.stream, item.seq, False) if self.ack_gate else None))

    def _quarantine(self, raw: bytes, rej: Rejected, received_ms: int, ident=None) -> None:
        if self.on_received:
            self.on_received("serial", 1, [rej.reason])
        item = quarantined("serial", self.port_name, self.site, rej, raw.rstrip(b"\r\n"), received_ms, ident)
        ref = (item.site, ident[:3], ident[3], True) if self.ack_gate and ident is not None else None
        self.writer.submit(Entry(item, self, ref))

    def committed(self, refs: list[object], acks: list[tuple[str, Ack]]) -> None:
        """After the group commit: one ack line per touched (device, node, boot)."""
        if self.ack_gate is not None:  # the gate acks once the database has the readings
            for ref in refs:
                if ref is not None:
                    site, key, seq, local = ref  # type: ignore[misc]
                    (self.ack_gate.held_locally if local else self.ack_gate.want)(site, key, seq, self.queue_ack)
            return
        self._write_acks(acks)

    def queue_ack(self, site: str, ack: Ack) -> None:
        """Send one end-to-end ack line now (called by the ack gate)."""
        self._write_acks([(site, ack)])

    def _write_acks(self, acks: list[tuple[str, Ack]]) -> None:
        port = self.port
        if port is None or not acks:
            return
        data = "".join(frame("A", ack.payload()) + "\n" for _site, ack in acks).encode()
        try:
            with self._write_lock:
                port.write(data)
        except (serial.SerialException, OSError) as exc:  # the collector resends after its ack timeout
            log.warning("serial %s: ack not sent (%s)", self.port_name, exc)
