"""Serial ingest: protocol v1 line frames from USB-attached collectors, ack lines back (works on a pty).

Lines that are not frames are the collector's console text: logged, never an error.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable

import serial

from gateway.protocol import Ack, Rejected, frame, identity_of, parse_frame, parse_reading
from gateway.spool import Entry, Quarantined, Spool, SpoolWriter

log = logging.getLogger(__name__)


class SerialIngest(threading.Thread):
    """Reads one serial port (a device path or a pyserial URL) and feeds the spool writer."""

    def __init__(self, port: str, *, baud: int = 115200, site: str, spool: Spool, writer: SpoolWriter,
                 on_message: Callable[[str, str | None], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name=f"serial-ingest {port}", daemon=True)
        self.port_name, self.baud, self.site = port, baud, site
        self.spool, self.writer = spool, writer
        self.on_message_hook = on_message
        self.clock = clock
        self.port: serial.SerialBase | None = None
        self._write_lock = threading.Lock()
        self._halt = threading.Event()
        self.console: collections.deque[str] = collections.deque(maxlen=50)
        self.connected = False
        self.last_error = ""

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        delay = 0.2
        while not self._halt.is_set():
            if self.port is None:
                try:
                    self.port = serial.serial_for_url(self.port_name, baudrate=self.baud, timeout=0.1)
                except (serial.SerialException, OSError) as exc:
                    if str(exc) != self.last_error:
                        log.error("serial %s: cannot open: %s", self.port_name, exc)
                    self.last_error = str(exc)
                    self._halt.wait(random.uniform(0, delay))
                    delay = min(delay * 2, 5.0)
                    continue
                delay, self.connected, self.last_error = 0.2, True, ""
                log.info("serial %s: open at %d baud (site %s)", self.port_name, self.baud, self.site)
            if self.spool.full:  # backpressure: stop reading; the collector keeps its records until acked
                with self.spool.full_changed:
                    self.spool.full_changed.wait_for(lambda: not self.spool.full or self._halt.is_set(), timeout=1.0)
                continue
            try:
                raw = self.port.readline()
            except (serial.SerialException, OSError) as exc:
                log.warning("serial %s: read failed (%s); reopening", self.port_name, exc)
                self._close()
                continue
            if raw:
                self.handle_line(raw)
        self._close()

    def _close(self) -> None:
        self.connected = False
        if self.port is not None:
            try:
                self.port.close()
            except (serial.SerialException, OSError):
                pass
            self.port = None

    def handle_line(self, raw: bytes) -> None:
        """Validate one line and queue it for the spool (console text is only logged)."""
        received_ms = int(self.clock() * 1000)
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
                log.info("serial %s status: %s", self.port_name, payload)
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
        if self.on_message_hook:
            self.on_message_hook("serial", None)
        self.writer.submit(Entry(item, self, None))

    def _quarantine(self, raw: bytes, rej: Rejected, received_ms: int, ident=None) -> None:
        if self.on_message_hook:
            self.on_message_hook("serial", rej.reason)
        item = Quarantined("serial", self.port_name, self.site, rej.reason, rej.field, rej.detail,
                           raw.rstrip(b"\r\n"), received_ms, ident)
        self.writer.submit(Entry(item, self, None))

    def committed(self, refs: list[object], acks: list[tuple[str, Ack]]) -> None:
        """After the group commit: one ack line per touched (device, node, boot)."""
        port = self.port
        if port is None or not acks:
            return
        data = "".join(frame("A", ack.payload()) + "\n" for _site, ack in acks).encode()
        try:
            with self._write_lock:
                port.write(data)
        except (serial.SerialException, OSError) as exc:  # the collector resends after its ack timeout
            log.warning("serial %s: ack not sent (%s)", self.port_name, exc)
