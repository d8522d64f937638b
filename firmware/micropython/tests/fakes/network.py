"""Fake ``network`` module: a WLAN that connects after ``CONNECT_POLLS`` polls of ``isconnected()``."""

STA_IF = 0
CONNECT_POLLS = 2


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._polls = -1
        self.ssid = None

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = on

    def connect(self, ssid, password):
        if not self._active:
            raise OSError("WLAN not active")
        self.ssid = ssid
        self._polls = CONNECT_POLLS

    def isconnected(self):
        if self._polls < 0:
            return False
        if self._polls == 0:
            return True
        self._polls -= 1
        return False

    def ifconfig(self):
        return ("127.0.0.2", "255.0.0.0", "127.0.0.1", "127.0.0.1")
