"""Build every offline firmware environment and record flash/RAM per environment (issue 6).

Builds twice, with the plain Makefile (firmware/arduino/Makefile) and with PlatformIO's offline
environments (firmware/arduino/tools/pio_offline.py), and writes bench/results/firmware_sizes.json and
firmware_sizes.md. Run: .venv/bin/python bench/firmware_sizes.py
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


def build_make(work: Path) -> list[dict]:
    subprocess.run(["make", "-s", "-j2", f"BUILD_DIR={work}", "all"], cwd=FIRMWARE, check=True, capture_output=True)
    return [row("make", e, work / e / f"{e}.elf") for e in MAKE_ENVS]


def build_pio(work: Path) -> list[dict]:
    envs = pio_offline.offline_envs()
    result = pio_offline.run(envs, core_dir=work / "core", build_dir=work / "build")
    if result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit("PlatformIO offline build failed")
    return [row("platformio", e, work / "build" / e / "program.elf") for e in envs]


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Firmware sizes",
        "",
        f"avr-gcc {meta['avr_gcc']}, Debian Arduino AVR core; flash = .text + .data, RAM = .data + .bss "
        "(static, without stack). Budgets (Uno) from issue 6.",
        "",
        "| builder | environment | flash (B) | RAM (B) | budget flash / RAM | within |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        budget = f"{r['flash_budget']} / {r['ram_budget']}" if r["flash_budget"] else "-"
        within = {True: "yes", False: "**NO**", None: "-"}[r["within_budget"]]
        lines.append(f"| {r['builder']} | {r['env']} | {r['flash_bytes']} | {r['ram_bytes']} | {budget} | {within} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    gcc = subprocess.run(["avr-gcc", "-dumpversion"], capture_output=True, text=True, check=True).stdout.strip()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fwsizes-") as tmp:
        rows = build_make(Path(tmp) / "make") + build_pio(Path(tmp) / "pio")
    meta = {"avr_gcc": gcc, "seconds": round(time.time() - started, 1),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "firmware_sizes.json").write_text(json.dumps({"meta": meta, "sizes": rows}, indent=1) + "\n")
    (args.out / "firmware_sizes.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0 if all(r["within_budget"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
