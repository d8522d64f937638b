"""Heartbeat transports between the two boards of a pair.

I2C (preferred, protocol section 9): the secondary is an I2C *target* exposing a small memory
(``machine.I2CTarget(mem=…)`` on ports that have it; an Arduino secondary answers the same way); the
primary, an I2C controller, writes the 3-byte beat at register (memory address) 0 and reads the
secondary's role back from register 3. A NACK (OSError) tells the primary the beat was not
delivered. GPIO (alternative for ports without an I2C target): the primary toggles a line once per beat
and the secondary polls it for level changes; no delivery report and no role read-back.
"""

from iotcollector.heartbeat import ACTIVE, REPLY_UNKNOWN, encode_beat

MEM_SIZE = 4
REPLY_ADDR = 3


class I2cBeatSender:
    """Primary side over a ``machine.I2C`` controller."""

    def __init__(self, i2c, address: int) -> None:
        self.i2c = i2c
        self.address = address

    def exchange(self, frame: bytes):
        """Send ``frame``; returns ``(delivered, partner_reply)``."""
        try:
            self.i2c.writeto_mem(self.address, 0, frame)
        except OSError:
            return False, REPLY_UNKNOWN
        try:
            reply = self.i2c.readfrom_mem(self.address, REPLY_ADDR, 1)[0]
        except OSError:
            reply = REPLY_UNKNOWN
        return True, reply


class TargetMemBeatReceiver:
    """Secondary side: watches the I2C target's memory (a bytearray the controller writes into)."""

    def __init__(self, mem) -> None:
        self.mem = mem
        self._last = bytes(mem[0:3])

    def receive(self):
        """The beat frame written since the last call, or None. A beat is new when its bytes changed
        (the counter moves on every beat)."""
        current = bytes(self.mem[0:3])
        if current == self._last:
            return None
        self._last = current
        return current

    def set_reply(self, reply: int) -> None:
        self.mem[REPLY_ADDR] = reply & 0xFF


class PulseBeatSender:
    """Primary side over a GPIO line (``machine.Pin`` in output mode): one toggle per beat."""

    def __init__(self, pin) -> None:
        self.pin = pin
        self.level = 0
        pin.value(0)

    def exchange(self, frame: bytes):
        # The line carries no state, and claiming beats must not hold the secondary back (protocol
        # section 9): only active beats toggle it.
        if frame[1] == ACTIVE:
            self.level ^= 1
            self.pin.value(self.level)
        return True, REPLY_UNKNOWN


class PulseBeatReceiver:
    """Secondary side over a GPIO line (input): every level change is one beat of an *active* primary (a
    claiming one does not toggle it). Hand-back then needs ``handback_beats`` active beats, so both nodes
    record for up to that many periods minus one (protocol section 9)."""

    def __init__(self, pin) -> None:
        self.pin = pin
        self.level = pin.value()
        self.counter = 0

    def receive(self):
        level = self.pin.value()
        if level == self.level:
            return None
        self.level = level
        self.counter = (self.counter + 1) & 0xFF
        return encode_beat(ACTIVE, self.counter)

    def set_reply(self, reply: int) -> None:
        pass
