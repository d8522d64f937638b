"""Build every offline firmware environment and record flash/RAM per environment, and the EEPROM life.

Builds twice, with the plain Makefile (firmware/arduino/Makefile) and with PlatformIO's offline
environments (firmware/arduino/tools/pio_offline.py). The EEPROM life comes from the host simulation
`make eeprom-wear` (tests/host/wear_sim.h: the ft_collector's Uno layout, 1,000,000 readings with one
ack each, writes that change a cell counted per cell; life = 100,000 / writes of the hottest cell).
Writes bench/results/firmware_sizes.json and firmware_sizes.md. Run: .venv/bin/python bench/firmware_sizes.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware" / "arduino"
sys.path.insert(0, str(FIRMWARE / "tools"))

import avr_sizes  # noqa: E402
import pio_offline  # noqa: E402

MAKE_ENVS = ["ft_uno", "pair_primary_uno", "pair_secondary_uno", "ft_mega", "pair_primary_mega", "pair_secondary_mega"]


def row(builder: str, env: str, elf: Path) -> dict:
    flash, ram = avr_sizes.elf_sizes(elf)
    budget = avr_sizes.budget_for(env)
    return {
        "builder": builder,
        "env": env,
        "flash_bytes": flash,
        "ram_bytes": ram,
        "flash_budget": budget[0] if budget else None,
        "ram_budget": budget[1] if budget else None,
        "within_budget": None if not budget else flash <= budget[0] and ram <= budget[1],
    }


# SD card and MQTT builds against the real SD 1.3.0, Ethernet 2.0.2 and PubSubClient 2.8 (Makefile `reallibs`).
REAL_LIB_ENVS = ["ft_sd_uno", "ft_sd_mega", "ft_mqtt_mega", "ft_sd_mqtt_mega"]


def build_make(work: Path) -> list[dict]:
    subprocess.run(["make", "-s", "-j2", f"BUILD_DIR={work}", "all"], cwd=FIRMWARE, check=True, capture_output=True)
    rows = [row("make", e, work / e / f"{e}.elf") for e in MAKE_ENVS]
    done = subprocess.run(["make", "-s", "-j2", f"BUILD_DIR={work}", "reallibs"], cwd=FIRMWARE, capture_output=True,
                          text=True)
    if done.returncode:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit("the real-library builds failed (are SD, Ethernet, PubSubClient in ARDUINO_LIBS?)")
    return rows + [row("make (real SD/Ethernet/PubSubClient)", e, work / e / f"{e}.elf") for e in REAL_LIB_ENVS]


def build_pio(work: Path) -> list[dict]:
    envs = pio_offline.offline_envs()
    result = pio_offline.run(envs, core_dir=work / "core", build_dir=work / "build")
    if result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit("PlatformIO offline build failed")
    return [row("platformio", e, work / "build" / e / "program.elf") for e in envs]


LIFE_TARGET_YEARS = 10.0


def eeprom_wear(work: Path) -> dict:
    """Both cache modes of the wear simulation, each with the target verdict."""
    out = subprocess.run(["make", "-s", f"BUILD_DIR={work}", "eeprom-wear"], cwd=FIRMWARE, check=True,
                         capture_output=True, text=True).stdout
    wear = json.loads(out.strip().splitlines()[-1])
    for mode in wear.values():
        mode["target_years"] = LIFE_TARGET_YEARS
        mode["target_met"] = mode["years"] >= LIFE_TARGET_YEARS
    return wear


def wear_markdown(wear: dict) -> list[str]:
    lines = ["", "## EEPROM life (Uno, ft_collector layout)", "",
             "Host simulation (`make -C firmware/arduino eeprom-wear`): 1,000,000 readings with one ack each; a "
             "cell lasts 100,000 writes; life = 100,000 / writes of the most written cell x 1,000,000 readings "
             f"x 5 s. Target: at least {LIFE_TARGET_YEARS:g} years.", ""]
    names = {"write_through": "write-through (`IOTGW_PERSIST_AFTER_MS=0`, the SD cache's default)",
             "write_behind": "write-behind (`IOTGW_PERSIST_AFTER_MS=1000`, the EEPROM cache's default), 1 ack in 100 late"}
    for key, mode in wear.items():
        verdict = "target met" if mode["target_met"] else "**target not met**"
        lines.append(f"- {names.get(key, key)}: EEPROM life at a 5 s period: {mode['years']:.1f} years ({verdict}); "
                     f"hottest cell {mode['hottest_cell']} written {mode['hottest_cell_writes']} times, trim state "
                     f"saved {mode['meta_saves']} times")
    return lines


def markdown(rows: list[dict], meta: dict, wear: dict | None = None) -> str:
    lines = [
        "# Firmware sizes",
        "",
        f"avr-gcc {meta['avr_gcc']}, Debian Arduino AVR core; flash = .text + .data, RAM = .data + .bss "
        "(static, without stack). Budgets: firmware/arduino/tools/avr_sizes.py. MQTT on an Uno does not fit "
        "(the Ethernet and PubSubClient libraries take the flash 3.5 KB over 32 KB).",
        "",
        "| builder | environment | flash (B) | RAM (B) | budget flash / RAM | within |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        budget = f"{r['flash_budget']} / {r['ram_budget']}" if r["flash_budget"] else "-"
        within = {True: "yes", False: "**NO**", None: "-"}[r["within_budget"]]
        lines.append(f"| {r['builder']} | {r['env']} | {r['flash_bytes']} | {r['ram_bytes']} | {budget} | {within} |")
    if wear:
        lines += wear_markdown(wear)
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    gcc = subprocess.run(["avr-gcc", "-dumpversion"], capture_output=True, text=True, check=True).stdout.strip()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fwsizes-") as tmp:
        rows = build_make(Path(tmp) / "make") + build_pio(Path(tmp) / "pio")
        wear = eeprom_wear(Path(tmp) / "wear")
    meta = {"avr_gcc": gcc, "seconds": round(time.time() - started, 1),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "firmware_sizes.json").write_text(json.dumps({"meta": meta, "sizes": rows, "eeprom_life": wear}, indent=1) + "\n")
    (args.out / "firmware_sizes.md").write_text(markdown(rows, meta, wear))
    print(markdown(rows, meta, wear))
    return 0 if all(r["within_budget"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
