"""The Arduino framework from Debian's arduino-core-avr package (/usr/share/arduino), built like the IDE does."""

import os
from os.path import join

from SCons.Script import DefaultEnvironment

env = DefaultEnvironment()
board = env.BoardConfig()

AVR_DIR = os.environ.get("IOTGW_ARDUINO_AVR_DIR", "/usr/share/arduino/hardware/arduino/avr")
CORE_DIR = join(AVR_DIR, "cores", board.get("build.core"))
VARIANT_DIR = join(AVR_DIR, "variants", board.get("build.variant"))
if not os.path.isdir(CORE_DIR):
    env.Exit(f"Arduino AVR core not found in {AVR_DIR}: apt-get install arduino-core-avr")

env.Append(
    CPPDEFINES=[("ARDUINO", 10807), "ARDUINO_" + board.get("build.board"), "ARDUINO_ARCH_AVR"],
    CPPPATH=[CORE_DIR, VARIANT_DIR],
    # Wire, EEPROM, SPI, SoftwareSerial: found by the library dependency finder when a sketch includes them.
    LIBSOURCE_DIRS=[join(AVR_DIR, "libraries")],
)

env.Prepend(LIBS=[env.BuildLibrary(join("$BUILD_DIR", "FrameworkArduino"), CORE_DIR)])
