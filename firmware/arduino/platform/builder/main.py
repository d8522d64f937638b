"""SCons build script of the offline AVR platform: the system's avr-gcc, sizes as atmelavr reports them."""

from os.path import join

from SCons.Script import AlwaysBuild, Builder, Default, DefaultEnvironment

env = DefaultEnvironment()
board = env.BoardConfig()
mcu = board.get("build.mcu")

env.Replace(
    AR="avr-gcc-ar",
    AS="avr-as",
    CC="avr-gcc",
    CXX="avr-g++",
    OBJCOPY="avr-objcopy",
    RANLIB="avr-gcc-ranlib",
    SIZETOOL="avr-size",
    ARFLAGS=["rc"],
    PROGSUFFIX=".elf",
    # Same regular expressions as PlatformIO's atmelavr platform, so `pio run` prints the usual summary.
    SIZEPROGREGEXP=r"^(?:\.text|\.data|\.bootloader)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.noinit)\s+(\d+).*",
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPRINTCMD="$SIZETOOL -d $SOURCES",
)

env.Append(
    # Flags of the Arduino AVR core's platform.txt; the Debian core also needs DECIMAL_DIG (its WString.cpp uses it undeclared).
    ASFLAGS=["-x", "assembler-with-cpp", "-flto", f"-mmcu={mcu}"],
    ASPPFLAGS=["-x", "assembler-with-cpp", "-flto", f"-mmcu={mcu}"],
    CCFLAGS=["-Os", "-Wall", "-ffunction-sections", "-fdata-sections", "-flto", f"-mmcu={mcu}"],
    CFLAGS=["-std=gnu11", "-fno-fat-lto-objects"],
    CXXFLAGS=["-std=gnu++11", "-fno-exceptions", "-fno-threadsafe-statics", "-fpermissive", "-Wno-error=narrowing"],
    CPPDEFINES=[("F_CPU", "$BOARD_F_CPU"), ("DECIMAL_DIG", "__DECIMAL_DIG__")],
    LINKFLAGS=["-Os", "-flto", "-fuse-linker-plugin", "-Wl,--gc-sections", f"-mmcu={mcu}"],
    LIBS=["m"],
    BUILDERS=dict(
        ElfToHex=Builder(
            action=env.VerboseAction("$OBJCOPY -O ihex -R .eeprom $SOURCES $TARGET", "Building $TARGET"),
            suffix=".hex",
        )
    ),
)

target_elf = env.BuildProgram()
target_hex = env.ElfToHex(join("$BUILD_DIR", "${PROGNAME}"), target_elf)
env.Depends(target_hex, "checkprogsize")
AlwaysBuild(env.Alias("size", target_elf, env.VerboseAction("$SIZEPRINTCMD", "Calculating size $SOURCE")))
Default([env.Alias("buildprog", target_hex)])
