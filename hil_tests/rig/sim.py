"""The sim rig: real ``.elf`` builds on simulated boards, run by ``hil_tests/sim/harness.c`` (simavr).

:class:`Harness` starts the harness process (through the project's one process launcher,
``gateway.sandbox.process``), talks to it over its unix control socket, and routes what it reports:
the lines each board prints (with the simulated time they were printed at) to that board's
:class:`SimBoard`, replies to the caller, events (a power cut hit by ``eecut``) to :attr:`Harness.events`.
"""

from __future__ import annotations

import queue
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import serial

from gateway.sandbox.process import start_process, stop_process, wait_until

from .board import Board
from .build import build_harness
from .lines import LineLog

__all__ = ["BoardSpec", "Harness", "HarnessError", "I2cWrite", "SimBoard"]

# 2000-01-01T00:00:00Z: where a DS1307 starts when it first gets a battery.
DS1307_RESET_EPOCH = 946684800


class HarnessError(RuntimeError):
    """The harness refused a command or went away; the message has the end of its log."""


@dataclass
class BoardSpec:
    """One simulated board: its name on the control channel, firmware, MCU and persistent state."""

    name: str
    elf: Path
    mcu: str = "atmega328p"
    eeprom: Path | None = None  # file the EEPROM is loaded from and saved to
    rtc_epoch: int | None = None  # DS1307 time at start (None: halted at 2000-01-01, as a fresh chip)

    def arg(self) -> str:
        parts = [f"name={self.name}", f"elf={self.elf}", f"mcu={self.mcu}"]
        if self.eeprom:
            parts.append(f"eeprom={self.eeprom}")
        if self.rtc_epoch is not None:
            parts.append(f"rtc={self.rtc_epoch}")
        return ",".join(parts)


@dataclass(frozen=True)
class I2cWrite:
    """An I2C master write from one board to the other, as the bridge carried it."""

    src: str
    dst: str
    ms: float
    data: bytes


class Harness:
    """One harness process running one or two boards. Use as a context manager."""

    def __init__(self, boards: list[BoardSpec], workdir: Path, pace: float = 0.0) -> None:
        self.specs = boards
        self.workdir = Path(workdir)
        self.pace_ratio = pace
        self.boards: dict[str, SimBoard] = {}
        self.events: list[str] = []
        self.i2c_log: list[I2cWrite] = []  # every I2C write carried between the two boards
        self._events_cond = threading.Condition()
        self._replies: queue.Queue[str] = queue.Queue()
        self._cmd_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._pid: int | None = None
        self._marker = ""
        self._last_ms = 0.0
        self.ptys: dict[str, str] = {}

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Harness:
        binary = build_harness()
        self.workdir.mkdir(parents=True, exist_ok=True)
        control = self.workdir / "control.sock"
        if len(str(control)) > 100:  # a unix socket path must fit in 108 bytes
            control = Path(tempfile.mkdtemp(prefix="hil-")) / "control.sock"
        self._marker = str(control)
        argv = [str(binary), "--control", str(control), "--pace", str(self.pace_ratio)]
        for spec in self.specs:
            argv += ["-b", spec.arg()]
            self.boards[spec.name] = SimBoard(spec.name, self)
        self.log_path = self.workdir / "harness.log"
        self._pid = start_process(argv, self.log_path).pid
        try:
            sock = wait_until(lambda: self._connect(control), 60, what="the harness control socket")
            if not isinstance(sock, socket.socket):
                raise HarnessError(f"harness exited at start:\n{self.log_tail()}")
            self._sock = sock
            threading.Thread(target=self._reader, name="harness-reader", daemon=True).start()
            ready = self._reply(60)
            if not ready.startswith("ready"):
                raise HarnessError(f"unexpected greeting {ready!r}")
        except BaseException:
            self.close()  # never leave a half-started harness running
            raise
        for word in ready.split()[1:]:
            name, _, pty = word.partition("=")
            self.ptys[name] = pty
        return self

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ask the harness to save the EEPROMs and exit; stop it by PID if it does not."""
        for board in self.boards.values():
            board.close()
        if self._sock is not None:
            try:
                self.command("quit", timeout=20)
            except (HarnessError, OSError, TimeoutError):
                pass
            self._sock.close()
            self._sock = None
        if self._pid is not None:
            try:
                wait_until(lambda: not self._alive(), 10, what="the harness to exit")
            except TimeoutError:
                stop_process(self._pid, self._marker, timeout=20)
            self._pid = None

    def _connect(self, control: Path) -> socket.socket | bool:
        """A connected socket, True if the harness died (stop waiting), False to try again."""
        if not self._alive():
            return True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(control))  # refused between the harness's bind() and listen(): try again
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return False
        return sock

    def _alive(self) -> bool:
        from gateway.sandbox.process import is_ours

        return self._pid is not None and is_ours(self._pid, self._marker)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no harness log)"

    # ---- control channel ------------------------------------------------------------------------
    def _reader(self) -> None:
        assert self._sock is not None
        buf = b""
        reason = "the harness closed its control channel"
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    self._route(raw.decode("utf-8", errors="replace"))
        except OSError as e:
            reason = f"control channel error: {e}"
        for board in self.boards.values():
            board.lines.close(reason)
        self._replies.put("")  # wake a caller waiting for a reply

    def _route(self, line: str) -> None:
        if line.startswith("L "):
            _, name, ms, *text = line.split(" ", 3)
            board = self.boards.get(name)
            if board is not None:
                t = float(ms)
                self._last_ms = max(self._last_ms, t)
                board.lines.append(text[0] if text else "", t)
        elif line.startswith("T "):
            _, src, dst, ms, data = (line.split(" ") + [""])[:5]
            with self._events_cond:
                self.i2c_log.append(I2cWrite(src, dst, float(ms), bytes.fromhex(data)))
        elif line.startswith("event "):
            with self._events_cond:
                self.events.append(line[len("event "):])
                self._events_cond.notify_all()
        else:
            self._replies.put(line)

    def _reply(self, timeout: float) -> str:
        try:
            line = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise HarnessError(f"no reply from the harness within {timeout:g} s:\n{self.log_tail()}") from None
        if not line:
            raise HarnessError(f"the harness went away:\n{self.log_tail()}")
        return line

    def command(self, cmd: str, timeout: float = 60) -> str:
        """Send one command, return its ``ok ...`` reply without the ``ok``; raise on ``err``."""
        with self._cmd_lock:
            if self._sock is None:
                raise HarnessError("harness not running")
            self._sock.sendall(cmd.encode() + b"\n")
            reply = self._reply(timeout)
        if not reply.startswith("ok"):
            raise HarnessError(f"{cmd!r}: {reply}")
        return reply[2:].strip()

    @staticmethod
    def _kv(reply: str) -> dict[str, str]:
        return dict(word.split("=", 1) for word in reply.split() if "=" in word)

    # ---- simulated clock ------------------------------------------------------------------------
    def now_ms(self) -> float:
        """Simulated time now, in ms."""
        self._last_ms = float(self._kv(self.command("time"))["ms"])
        return self._last_ms

    def run_until(self, ms: float, timeout: float | None = None) -> float:
        """Block until simulated time reaches ``ms``; return the simulated time then."""
        if timeout is None:
            timeout = max(60.0, (ms - self._last_ms) / 1000 * 20 + 60)
        self._last_ms = float(self._kv(self.command(f"until {int(ms)}", timeout=timeout))["ms"])
        return self._last_ms

    def run_for(self, seconds: float) -> float:
        """Let ``seconds`` of simulated time pass."""
        return self.run_until(self.now_ms() + seconds * 1000)

    def pace(self, ratio: float) -> None:
        """Run at ``ratio`` times real time (1.0 with a gateway in the loop); 0 runs free."""
        self.command(f"pace {ratio}")
        self.pace_ratio = ratio

    def measure_ratio(self, wall_seconds: float = 1.0) -> float:
        """Simulated seconds per wall second, measured over ``wall_seconds``."""
        t0, s0 = time.monotonic(), self.now_ms()
        time.sleep(wall_seconds)  # measuring a rate: a fixed wall interval is the point here
        return (self.now_ms() - s0) / 1000 / (time.monotonic() - t0)

    # ---- wiring ---------------------------------------------------------------------------------
    def i2c(self, connected: bool) -> None:
        """Cut or restore the I2C line between the two boards."""
        self.command("i2c restore" if connected else "i2c cut")

    def i2c_target(self, address: int) -> None:
        """Play an I2C target at ``address`` (7-bit): the boards' writes to it land in ``i2c_log`` with
        destination ``"ext"`` (a partner implemented by the test, e.g. the MicroPython port's logic)."""
        self.command(f"i2cpeer {address:02x}")

    def i2c_write(self, board: str, data: bytes) -> float:
        """Write ``data`` as an I2C controller to ``board``'s own target address; returns the simulated ms."""
        return float(self._kv(self.command(f"i2cw {board} {data.hex()}"))["ms"])

    def wait_event(self, prefix: str, timeout: float = 120) -> str:
        """Wait for an event line starting with ``prefix`` (for example ``"a powercut"``)."""
        with self._events_cond:
            ok = self._events_cond.wait_for(lambda: any(e.startswith(prefix) for e in self.events), timeout)
            if not ok:
                raise HarnessError(f"no event {prefix!r} within {timeout:g} s; events: {self.events}")
            return next(e for e in self.events if e.startswith(prefix))


class SimBoard(Board):
    """A board inside a :class:`Harness`. Its lines come from the control channel, stamped in
    simulated time, so they are seen even while the gateway holds the board's pty."""

    capabilities = frozenset({"power", "freeze", "sim_time", "rtc", "adc", "i2c", "serial_cut", "eeprom", "hang"})

    def __init__(self, name: str, harness: Harness) -> None:
        super().__init__(name)
        self.harness = harness
        self.wire = LineLog()
        self._port: serial.Serial | None = None

    @property
    def pty(self) -> str:
        """The pty that is this board's serial port (for pyserial or the gateway's config)."""
        return self.harness.ptys[self.name]

    def now_ms(self) -> float:
        return self.harness.now_ms()

    def wait(self, seconds: float) -> float:
        return self.harness.run_for(seconds)

    # The far end of the serial line. The harness's pty thread blocks once the pty's input queue is full,
    # and then stops carrying bytes towards the board too; so once opened, the pty is read continuously,
    # into :attr:`wire`: what a gateway on this port would receive (nothing while the line is cut).
    def _open(self) -> serial.Serial:
        if self._port is None:
            self._port = serial.Serial(self.pty, 115200, timeout=0.2)
            threading.Thread(target=self._read_wire, args=(self._port,), name=f"pty-{self.name}",
                             daemon=True).start()
        return self._port

    def _read_wire(self, port: serial.Serial) -> None:
        buf = b""
        try:
            while port.is_open:
                # one byte (waits up to the timeout), then whatever else is there: no added latency
                buf += port.read(1)
                buf += port.read(port.in_waiting)
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    # stamped with the newest simulated time seen: the pty carries no time of its own
                    self.wire.append(raw.decode("utf-8", errors="replace").rstrip("\r"), self.harness._last_ms)
        except (OSError, serial.SerialException, TypeError, AttributeError):
            pass  # closed under us
        self.wire.close("pty closed")

    def open_wire(self) -> LineLog:
        self._open()
        return self.wire

    def send_line(self, text: str) -> None:
        self._open().write(text.encode() + b"\n")

    def reset(self) -> None:
        self.harness.command(f"reset {self.name}")

    def power(self, on: bool) -> None:
        self.harness.command(f"power {self.name} {'on' if on else 'off'}")

    def hang(self) -> None:
        """Hang the board's main program (a spin loop, interrupts still running): only a watchdog helps."""
        self.harness.command(f"hang {self.name}")

    def freeze(self, frozen: bool) -> None:
        self.harness.command(f"{'stop' if frozen else 'resume'} {self.name}")

    def serial_link(self, connected: bool) -> None:
        """Plug or unplug the board's serial line (the console is still seen on the control channel)."""
        self.harness.command(f"uart {self.name} {'restore' if connected else 'cut'}")

    def cut_power_after_eeprom_writes(self, k: int) -> None:
        """Cut the power right after the board's k-th next EEPROM byte write (a power cut mid-record)."""
        self.harness.command(f"eecut {self.name} {k}")

    def eeprom_writes(self) -> int:
        return int(Harness._kv(self.harness.command(f"eewrites {self.name}"))["n"])

    def eeprom(self) -> bytes:
        return bytes.fromhex(self.harness.command(f"eeprom {self.name}"))

    def set_rtc(self, epoch_s: int | None) -> None:
        """Set the DS1307 to ``epoch_s`` (running), or halt it (``None``: a chip that lost its battery)."""
        self.harness.command(f"rtc {self.name} {'halt' if epoch_s is None else int(epoch_s)}")

    def rtc(self) -> tuple[int, bool]:
        kv = Harness._kv(self.harness.command(f"rtcget {self.name}"))
        return int(kv["epoch"]), kv["halted"] == "1"

    def set_adc(self, channel: int, millivolts: int) -> None:
        self.harness.command(f"adc {self.name} {channel} {int(millivolts)}")

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None
