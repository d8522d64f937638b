"""The serial rig: a real board on a USB serial port (an Uno or a Mega next to the gateway host).

Reset pulses DTR (the Arduino auto-reset circuit). Power control, where the rig has a relay or a
switchable USB hub, is a shell command given with ``--power-cmd`` ("{state}" becomes on/off, "{port}"
the board's port). Times are the host's monotonic clock, in ms since the port was opened.

Cutting a USB board's power (or resetting a board whose USB chip re-enumerates) removes its serial port;
the reader then waits for the port to come back (``reopen_timeout`` seconds, polling its path) and
reopens it, so the power tests run on real boards. Name the port by a stable path
(``/dev/serial/by-id/...``): ``/dev/ttyACM0`` may come back under another number.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time

import serial

from .board import Board, Unsupported

__all__ = ["SerialBoard"]


class SerialBoard(Board):
    """A real board; its output is read continuously into :attr:`lines` (which is also the wire)."""

    def __init__(self, name: str, port: str, baud: int = 115200, power_cmd: str | None = None,
                 reopen_timeout: float = 30.0) -> None:
        super().__init__(name)
        self.port_name = port
        self.baud = baud
        self.power_cmd = power_cmd
        self.reopen_timeout = reopen_timeout
        self.capabilities = frozenset({"power", "freeze"} if power_cmd else set())
        self._t0 = time.monotonic()
        self._port_lock = threading.Lock()
        self._port_back = threading.Condition(self._port_lock)
        self._port: serial.Serial | None = serial.Serial(port, baud, timeout=0.2)
        self.reopened = 0  # how many times the port vanished and was opened again
        self._closing = False
        self._reader = threading.Thread(target=self._read, name=f"serial-{name}", daemon=True)
        self._reader.start()

    def now_ms(self) -> float:
        return (time.monotonic() - self._t0) * 1000

    def _read(self) -> None:
        buf = b""
        while not self._closing:
            port = self._port
            try:
                buf += port.read(1)  # waits up to the timeout, then take what else is there
                buf += port.read(port.in_waiting)
            except (OSError, serial.SerialException, TypeError) as e:  # TypeError: pyserial on a vanished fd
                if self._closing:
                    break
                buf = b""  # a line cut by the power cut is not a line
                if not self._reopen(e):
                    return
                continue
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                self.lines.append(raw.decode("utf-8", errors="replace").rstrip("\r"), self.now_ms())
        self.lines.close("port closed")

    def _reopen(self, error: Exception) -> bool:
        """The port went away (power cut, reset, cable): wait for it to come back and open it again."""
        with self._port_lock:
            try:
                self._port.close()
            except (OSError, serial.SerialException):
                pass
            self._port = None
        deadline = time.monotonic() + self.reopen_timeout
        while not self._closing:
            try:
                port = serial.Serial(self.port_name, self.baud, timeout=0.2)
            except (OSError, serial.SerialException):
                if time.monotonic() > deadline:
                    self.lines.close(f"serial port {self.port_name} went away ({error}) and did not come back "
                                     f"within {self.reopen_timeout:g} s")
                    return False
                time.sleep(0.05)  # polling for a device node to appear: there is no event to wait on
                continue
            with self._port_back:
                self._port = port
                self.reopened += 1
                self._port_back.notify_all()
            return True
        return False

    def _current_port(self) -> serial.Serial:
        with self._port_back:
            if not self._port_back.wait_for(lambda: self._port is not None or self._closing, self.reopen_timeout):
                raise serial.SerialException(f"serial port {self.port_name} is gone")
            if self._port is None:
                raise serial.SerialException(f"serial port {self.port_name} is closed")
            return self._port

    def send_line(self, text: str) -> None:
        self._current_port().write(text.encode() + b"\n")

    def reset(self) -> None:
        # DTR low then high: the 100 nF capacitor on an Uno/Mega turns the edge into a reset pulse.
        try:
            port = self._current_port()
            port.dtr = False
            time.sleep(0.1)  # a pulse width, not a wait for a condition
            port.dtr = True
        except (OSError, serial.SerialException) as e:  # a port without modem lines (a pty)
            raise Unsupported(f"board {self.name}: {self.port_name} has no DTR line to reset with: {e}") from e

    def power(self, on: bool) -> None:
        if not self.power_cmd:
            raise Unsupported(f"board {self.name}: no --power-cmd given, so the rig cannot cut its power")
        cmd = self.power_cmd.format(state="on" if on else "off", port=shlex.quote(self.port_name))
        subprocess.run(cmd, shell=True, check=True, timeout=30)

    def freeze(self, frozen: bool) -> None:
        # A real board cannot be paused: a powered-off board is the closest "hung" board there is.
        self.power(not frozen)

    def close(self) -> None:
        self._closing = True
        with self._port_back:
            self._port_back.notify_all()
        self._reader.join(timeout=5)  # it notices within the port's read timeout
        with self._port_lock:
            if self._port is not None:
                self._port.close()
