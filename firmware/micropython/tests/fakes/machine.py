"""Fake ``machine`` module for tests: the parts the board glue uses, on simulated hardware.

``BUSES`` maps an I2C id to a ``simparts.SimI2C`` bus; a test attaches a DS1307 chip to it before the
glue runs. ``I2CTarget`` exposes its ``mem`` on the bus like the real memory-mode target. ``SDCARD_PRESENT``
decides whether ``SDCard()`` finds a card (there is no block device here, so a present card is backed by a
folder: ``SDCard.folder``). ``ADC_VALUES`` feeds ``ADC.read_u16``.
"""

from simparts import MemDevice, SimI2C

BUSES = {}
PINS = {}
ADC_VALUES = {}
SDCARD_PRESENT = False
WDTS = []  # every WDT created, so a test can check it was fed
RESET_CAUSE = 1  # PWRON_RESET

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset_cause():
    return RESET_CAUSE


class WDT:
    """The watchdog: ``feeds`` counts feeds; ``starve(ms)`` models time passing without one."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        WDTS.append(self)

    def feed(self):
        self.feeds += 1


def bus(i2c_id):
    if i2c_id not in BUSES:
        BUSES[i2c_id] = SimI2C()
    return BUSES[i2c_id]


def reset_all():
    global SDCARD_PRESENT, RESET_CAUSE
    RESET_CAUSE = PWRON_RESET
    WDTS.clear()
    BUSES.clear()
    PINS.clear()
    UARTS.clear()
    ADC_VALUES.clear()
    SDCARD_PRESENT = False


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 2

    def __init__(self, pin_id, mode=-1, pull=-1, value=None):
        self.id = pin_id
        if pin_id not in PINS:
            PINS[pin_id] = 0
        if value is not None:
            PINS[pin_id] = value

    def value(self, v=None):
        if v is None:
            return PINS[self.id]
        PINS[self.id] = 1 if v else 0


class ADC:
    def __init__(self, pin, atten=None):
        self.pin = pin.id if isinstance(pin, Pin) else pin

    def read_u16(self):
        return ADC_VALUES.get(self.pin, 0)


class I2C:
    def __new__(cls, i2c_id=0, scl=None, sda=None, freq=400000):
        return bus(i2c_id)


class I2CTarget:
    def __init__(self, i2c_id=0, addr=0x42, mem=None, scl=None, sda=None):
        self.bus = bus(i2c_id)
        self.addr = addr
        self.mem = mem
        self.bus.attach(addr, MemDevice(mem))

    def deinit(self):
        self.bus.detach(self.addr)


class SDCard:
    folder = None

    def __init__(self, slot=1, **kwargs):
        if not SDCARD_PRESENT:
            raise OSError(19)  # ENODEV: no card in the slot


def unique_id():
    return b"\x01\x02\x03\x04"


def reset():
    raise SystemExit("machine.reset()")


UARTS = {}


class UART:
    """A UART whose other end is the test: ``sent`` collects what the board wrote, ``feed`` queues input."""

    def __init__(self, uart_id, baudrate=115200, tx=None, rx=None, timeout=0):
        self.id = uart_id
        self.baudrate = baudrate
        self.sent = b""
        self.incoming = b""
        UARTS[uart_id] = self

    def write(self, data):
        self.sent += bytes(data)
        return len(data)

    def read(self, n=-1):
        data, self.incoming = self.incoming, b""
        return data or None

    def feed(self, data):
        self.incoming += data
