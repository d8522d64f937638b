"""A PlatformIO platform that needs nothing from the registry: Debian's avr-gcc and Arduino AVR core."""

from platformio.public import PlatformBase


class IotgwavrofflinePlatform(PlatformBase):  # PlatformIO derives this name from "iotgw-avr-offline"
    """Everything is on the system already; there are no packages to install."""
