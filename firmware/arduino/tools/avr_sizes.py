"""Flash and RAM of an AVR ELF, and the size budgets (used by bench/firmware_sizes.py and the tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Budgets on an Uno. Flash counts .text + .data (the initial values live in flash); RAM counts .data +
# .bss (static RAM; the stack comes on top). The pair's flash budget was 8 KB until the nodes gained
# the watchdog, the reset reason, read-back of every EEPROM write and the full status (protocol
# section 6: about 1 KB together); 10 KB still leaves two thirds of the Uno's 31.5 KB free.
BUDGETS: dict[str, tuple[int, int]] = {
    "pair_primary_uno": (10 * 1024, 768),
    "pair_secondary_uno": (10 * 1024, 768),
    "ft_uno": (20 * 1024, int(1.2 * 1024)),
    # Against the real SD/Ethernet/PubSubClient libraries (Makefile `reallibs`). The Uno SD build must fit
    # the flash left by the bootloader and leave the SD library about 500 bytes of stack; a Mega build
    # may use a quarter of the flash and half of the 8 KB RAM.
    "ft_sd_uno": (32256, 1600),
    "ft_sd_mega": (64 * 1024, 4096),
    "ft_mqtt_mega": (64 * 1024, 4096),
    "ft_sd_mqtt_mega": (64 * 1024, 4096),
}
BUDGETS["ft_uno_sd"] = BUDGETS["ft_sd_uno"]  # the PlatformIO names of the same builds
BUDGETS["ft_mega_sd_mqtt"] = BUDGETS["ft_sd_mqtt_mega"]


def budget_for(env: str) -> tuple[int, int] | None:
    """Budget of an environment (Makefile name, or PlatformIO name with ``_offline``), if it has one."""
    return BUDGETS.get(env.removesuffix("_offline"))


def elf_sizes(elf: Path) -> tuple[int, int]:
    """(flash bytes, static RAM bytes) from ``avr-size -A``."""
    out = subprocess.run(["avr-size", "-A", str(elf)], check=True, capture_output=True, text=True).stdout
    sections: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    flash = sections.get(".text", 0) + sections.get(".data", 0)
    ram = sections.get(".data", 0) + sections.get(".bss", 0) + sections.get(".noinit", 0)
    return flash, ram
