"""Simulated parts for boards that cannot exist here: an I2C bus with memory-style devices and a DS1307.

Runs on CPython and MicroPython alike (the test fakes ``machine`` and the host runner both use it).
The bus offers the two driver APIs in use: MicroPython's ``machine.I2C`` (``readfrom_mem``,
``writeto_mem``, ``writeto``, ``readfrom_into``, ``scan``) and CircuitPython's ``busio.I2C`` (``try_lock``,
``unlock``, ``writeto``/``readfrom_into``/``writeto_then_readfrom`` with start/end), which is what
``adafruit_bus_device`` calls. A missing device NACKs with ``OSError`` (errno 19, ENODEV), as on a board.
"""

from iotcollector import ds1307 as codec

ENODEV = 19


class MemDevice:
    """A register/memory device: a write sets the register pointer (first byte) then stores the rest with
    auto-increment; a read returns bytes from the pointer on. ``machine.I2CTarget(mem=…)`` behaves so."""

    def __init__(self, mem) -> None:
        self.mem = mem
        self.pointer = 0

    def on_write(self, data) -> None:
        if not data:
            return  # an address probe
        self.pointer = data[0] % len(self.mem)
        for b in data[1:]:
            self.mem[self.pointer] = b
            self.pointer = (self.pointer + 1) % len(self.mem)

    def on_read(self, n: int) -> bytes:
        out = bytearray(n)
        for i in range(n):
            out[i] = self.mem[self.pointer]
            self.pointer = (self.pointer + 1) % len(self.mem)
        return bytes(out)


class Ds1307Chip(MemDevice):
    """A DS1307: 7 time registers, control, 56 bytes of RAM. Starts halted at 2000-01-01 like a fresh chip.
    ``tick(seconds)`` lets time pass (only while CH is clear); 12-hour mode is kept as written."""

    def __init__(self) -> None:
        super().__init__(bytearray(64))
        self.mem[0:7] = bytes((0x80, 0, 0, 7, 1, 1, 0))  # 2000-01-01 (a Saturday), CH set
        self.mem[7] = 0x03  # control register reset value (OUT=0, SQWE=0, RS=11)

    def tick(self, seconds: int) -> None:
        if self.mem[0] & 0x80 or seconds <= 0:
            return
        twelve = self.mem[2] & 0x40
        unix, _ = codec.decode(self.mem[0:7])
        regs = bytearray(codec.encode(unix + seconds))
        if twelve:
            hour = codec.bcd2bin(regs[2])
            regs[2] = 0x40 | (0x20 if hour >= 12 else 0) | codec.bin2bcd(hour % 12 or 12)
        self.mem[0:7] = regs


class SimI2C:
    """An I2C bus; ``attach(address, device)`` puts a device on it, ``detach`` takes it off."""

    def __init__(self) -> None:
        self.devices = {}
        self.locked = False
        self.transactions = 0

    def attach(self, address: int, device) -> None:
        self.devices[address] = device

    def detach(self, address: int) -> None:
        self.devices.pop(address, None)

    def _dev(self, address: int):
        self.transactions += 1
        dev = self.devices.get(address)
        if dev is None:
            raise OSError(ENODEV)
        return dev

    # machine.I2C
    def scan(self):
        return sorted(self.devices)

    def writeto_mem(self, address: int, memaddr: int, buf) -> None:
        self._dev(address).on_write(bytes((memaddr,)) + bytes(buf))

    def readfrom_mem(self, address: int, memaddr: int, n: int) -> bytes:
        dev = self._dev(address)
        dev.on_write(bytes((memaddr,)))
        return dev.on_read(n)

    def readfrom_mem_into(self, address: int, memaddr: int, buf) -> None:
        data = self.readfrom_mem(address, memaddr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    # machine.I2C and busio.I2C (start/end are busio's)
    def writeto(self, address: int, buf, start: int = 0, end=None, stop: bool = True) -> int:
        end = len(buf) if end is None else end
        self._dev(address).on_write(bytes(buf[start:end]))
        return end - start

    def readfrom_into(self, address: int, buf, start: int = 0, end=None, stop: bool = True) -> None:
        end = len(buf) if end is None else end
        data = self._dev(address).on_read(end - start)
        for i in range(end - start):
            buf[start + i] = data[i]

    def writeto_then_readfrom(self, address: int, out_buf, in_buf, out_start: int = 0, out_end=None,
                              in_start: int = 0, in_end=None) -> None:
        self.writeto(address, out_buf, out_start, out_end)
        self.readfrom_into(address, in_buf, in_start, in_end)

    # busio.I2C locking
    def try_lock(self) -> bool:
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self) -> None:
        self.locked = False
