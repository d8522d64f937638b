"""Board profiles: the pins and limits of a board, under the keys of ``config.py``. ``config.py`` names
its board (``"board": "pico_w"``) and sets only what differs; every key it sets wins over the profile.

- ``pico_w``: Raspberry Pi Pico W (rp2). There is no ``machine.SDCard`` on rp2: the cache is a flash file
  unless an SD card is wired to SPI and ``sd_spi`` names the pins (micropython-lib ``sdcard`` driver).
  The watchdog allows at most 8388 ms.
- ``esp32``: an ESP32 DevKit. ``machine.SDCard`` slot 2 (SPI: SCK 18, MISO 19, MOSI 23, CS 5); without a
  card the cache is a flash file. ADC1 on GPIO 34 (ADC2 stops working while Wi-Fi is on).
"""

PROFILES = {
    "pico_w": {
        "i2c_id": 0, "i2c_scl": 5, "i2c_sda": 4, "i2c_freq": 100000,
        "adc_pin": 26,
        "sd_slot": None, "sd_spi": None,
        "hb_target_i2c_id": 1, "hb_target_scl": 7, "hb_target_sda": 6, "hb_pin": 15,
        "uart_id": 1, "uart_tx": 8, "uart_rx": 9,
        "wdt_ms": 8000,
    },
    "esp32": {
        "i2c_id": 0, "i2c_scl": 22, "i2c_sda": 21, "i2c_freq": 100000,
        "adc_pin": 34,
        "sd_slot": 2, "sd_spi": None,
        "hb_target_i2c_id": 1, "hb_target_scl": 26, "hb_target_sda": 25, "hb_pin": 27,
        "uart_id": 2, "uart_tx": 17, "uart_rx": 16,
        "wdt_ms": 8000,
    },
}


def with_profile(cfg):
    """``cfg`` over its board's profile (``cfg["board"]``, default ``pico_w``); ValueError names an unknown one."""
    name = cfg.get("board", "pico_w")
    if name not in PROFILES:
        raise ValueError("config board: %r is not one of %s" % (name, ", ".join(sorted(PROFILES))))
    merged = dict(PROFILES[name])
    merged.update(cfg)
    return merged
