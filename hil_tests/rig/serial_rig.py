"""The serial rig: a real board on a USB serial port (an Uno or a Mega next to the gateway host).

Reset pulses DTR (the Arduino auto-reset circuit). Power control, where the rig has a relay or a
switchable USB hub, is a shell command given with ``--power-cmd`` ("{state}" becomes on/off, "{port}"
the board's port). Times are the host's monotonic clock, in ms since the port was opened.
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

    def __init__(self, name: str, port: str, baud: int = 115200, power_cmd: str | None = None) -> None:
        super().__init__(name)
        self.port_name = port
        self.power_cmd = power_cmd
        self.capabilities = frozenset({"power", "freeze"} if power_cmd else set())
        self._t0 = time.monotonic()
        self._port = serial.Serial(port, baud, timeout=0.2)
        self._closing = False
        self._reader = threading.Thread(target=self._read, name=f"serial-{name}", daemon=True)
        self._reader.start()

    def now_ms(self) -> float:
        return (time.monotonic() - self._t0) * 1000

    def _read(self) -> None:
        buf = b""
        try:
            while not self._closing:
                buf += self._port.read(1)  # waits up to the timeout, then take what else is there
                buf += self._port.read(self._port.in_waiting)
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    self.lines.append(raw.decode("utf-8", errors="replace").rstrip("\r"), self.now_ms())
        except (OSError, serial.SerialException) as e:
            self.lines.close(f"serial port {self.port_name}: {e}")
            return
        self.lines.close("port closed")

    def send_line(self, text: str) -> None:
        self._port.write(text.encode() + b"\n")

    def reset(self) -> None:
        # DTR low then high: the 100 nF capacitor on an Uno/Mega turns the edge into a reset pulse.
        try:
            self._port.dtr = False
            time.sleep(0.1)  # a pulse width, not a wait for a condition
            self._port.dtr = True
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
        self._reader.join(timeout=5)  # it notices within the port's read timeout
        self._port.close()
