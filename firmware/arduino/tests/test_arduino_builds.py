"""AVR builds of both sketches for Uno and Mega: the plain Makefile and PlatformIO's offline environments.

Sizes must stay within the budgets of firmware/arduino/tools/avr_sizes.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(FIRMWARE / "tools"))  # the build helpers shared with bench/
import avr_sizes  # noqa: E402
import pio_offline  # noqa: E402

MAKE_ENVS = ["ft_uno", "pair_primary_uno", "pair_secondary_uno", "ft_mega", "pair_primary_mega", "pair_secondary_mega"]


def test_makefile_builds_every_env_within_budget(tmp_path):
    # One test for all environments: a shared fixture would be built once per xdist worker.
    result = subprocess.run(["make", "-s", "-j2", f"BUILD_DIR={tmp_path}", "all"], cwd=FIRMWARE,
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    for env in MAKE_ENVS:
        elf = tmp_path / env / f"{env}.elf"
        hexfile = tmp_path / env / f"{env}.hex"
        assert elf.stat().st_size > 0 and hexfile.read_text().startswith(":"), env
        flash, ram = avr_sizes.elf_sizes(elf)
        assert flash > 4000 and ram > 200, env  # a real sketch, not an empty one
        budget = avr_sizes.budget_for(env)
        if budget:
            assert flash <= budget[0], f"{env}: flash {flash} B over {budget[0]} B"
            assert ram <= budget[1], f"{env}: RAM {ram} B over {budget[1]} B"
    assert avr_sizes.budget_for("ft_uno_offline") == avr_sizes.BUDGETS["ft_uno"]


@pytest.mark.parametrize("device, ok", [("green-house", True), ("green/house", False), ("d" * 33, False)])
def test_device_name_is_checked_at_compile_time(tmp_path, device, ok):
    """A device name the protocol would quarantine is a compile-time error, not a silent field failure."""
    result = subprocess.run(
        ["make", "-s", f"BUILD_DIR={tmp_path}", "ENV=ft_uno", f"{tmp_path}/ft_uno/sketch.o",
         f"EXTRA_FLAGS=-DIOTGW_DEVICE='\"{device}\"'"],
        cwd=FIRMWARE, capture_output=True, text=True, timeout=120,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert "static assertion failed" in result.stderr and "IOTGW_DEVICE" in result.stderr


def test_platformio_offline_envs_build_within_budget(tmp_path):
    envs = pio_offline.offline_envs()
    # six plain builds, plus the SD and MQTT ones where the real Arduino libraries are
    assert len(envs) == (8 if pio_offline.arduino_libs() else 6) and all(e.endswith("_offline") for e in envs)
    result = pio_offline.run(envs, core_dir=tmp_path / "core", build_dir=tmp_path / "build", timeout=280)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for env in envs:
        assert re.search(rf"^{env}\s+SUCCESS", result.stdout, re.M), output
        flash, ram = avr_sizes.elf_sizes(tmp_path / "build" / env / "program.elf")
        assert (tmp_path / "build" / env / "program.hex").exists()
        budget = avr_sizes.budget_for(env)
        if budget:
            assert flash <= budget[0] and ram <= budget[1], (env, flash, ram)


def test_offline_runner_refuses_registry_envs(tmp_path):
    with pytest.raises(ValueError):
        pio_offline.run(["ft_uno"], core_dir=tmp_path / "core")


def test_sd_and_mqtt_builds_against_the_real_libraries_within_budget(tmp_path):
    # SD 1.3.0, Ethernet 2.0.2, PubSubClient 2.8 from the shared third_party folder (Makefile ARDUINO_LIBS)
    repo = FIRMWARE.parents[1]
    candidates = [repo.parent / "shared/third_party/arduino-libraries", repo.parents[1] / "shared/third_party/arduino-libraries"]
    libs = next((c for c in candidates if (c / "SD").is_dir()), None)
    if libs is None:
        pytest.skip("the real Arduino libraries (SD, Ethernet, PubSubClient) are not next to the repository")
    envs = ["ft_sd_uno", "ft_sd_mega", "ft_mqtt_mega", "ft_sd_mqtt_mega"]
    result = subprocess.run(["make", "-s", "-j2", f"BUILD_DIR={tmp_path}", f"ARDUINO_LIBS={libs}", *envs], cwd=FIRMWARE,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for env in envs:
        elf = tmp_path / env / f"{env}.elf"
        flash, ram = avr_sizes.elf_sizes(elf)
        budget = avr_sizes.budget_for(env)
        assert budget and flash <= budget[0] and ram <= budget[1], (env, flash, ram, budget)
        objects = {p.name for p in (tmp_path / env / "lib").glob("*.o")}
        if "_sd" in env:
            assert {"SD.cpp.o", "SdFile.cpp.o", "Sd2Card.cpp.o", "SPI.cpp.o"} <= objects, objects
        if "_mqtt" in env:
            assert {"PubSubClient.cpp.o", "Ethernet.cpp.o", "w5100.cpp.o"} <= objects, objects
