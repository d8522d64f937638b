"""Board configuration: copy to the board's root next to main.py (or code.py) and edit.

One file per board. For a redundant pair, both boards get the same ``dev`` and different ``node``;
the primary (``role: primary``) drives the I2C heartbeat as controller, the secondary is the I2C target.
"""

CONFIG = {
    # identity (protocol v1: names of letters, digits, _ and -; dev <= 32 chars, node <= 16)
    "dev": "greenhouse-1",
    "node": "a",
    "site": "site-1",
    "prefix": "iot",
    "role": "single",  # single | primary | secondary
    # link to the gateway: "mqtt" (Wi-Fi), "uart" (a serial line to the gateway's serial ingest) or "usb"
    # (frames on the USB console, among the console text, which the gateway ignores)
    "link": "mqtt",
    "uart_id": 1,
    "uart_baud": 115200,
    "uart_tx": 8,
    "uart_rx": 9,
    # network
    "wifi_ssid": "my-network",
    "wifi_password": "my-password",
    "mqtt_host": "192.168.1.10",
    "mqtt_port": 1883,
    "mqtt_keepalive": 30,
    "mqtt_timeout_s": 2,  # socket timeout: a silent network raises instead of blocking the loop (< hb_timeout_ms)
    # sampling: value = adc.read_u16() * adc_scale + adc_offset, in `unit`
    "unit": "C",
    "adc_pin": 26,
    "adc_scale": 3.3 / 65535 * 100,  # e.g. an LM35 (10 mV/C) on a 3.3 V ADC
    "adc_offset": 0.0,
    "sample_ms": 1000,
    "ack_timeout_ms": 5000,
    "status_ms": 60000,  # status (cache fill, dropped, reset reason, storage errors) this often; 0: only on changes
    # I2C bus 0 carries the DS1307 (and, on the primary, the heartbeat to the secondary)
    "i2c_id": 0,
    "i2c_scl": 5,
    "i2c_sda": 4,
    "i2c_freq": 100000,
    "rtc": True,
    # cache: SD card if one is found (machine.SDCard slot, or the sdcard driver on SPI), else a flash file
    "sd_slot": 2,
    "sd_spi": None,  # e.g. {"id": 1, "sck": 10, "mosi": 11, "miso": 12, "cs": 13} for the sdcard driver
    "sd_mount": "/sd",
    "flash_dir": "/",
    "cache_capacity": 2000,
    "boot_file": "/boot.count",
    # watchdog: resets the board when a loop iteration takes longer (0: off); rp2 allows at most 8388
    "wdt_ms": 8000,
    # redundant pair heartbeat
    "hb_transport": "i2c",  # i2c | gpio
    "hb_period_ms": 1000,
    "hb_timeout_ms": 3500,
    "hb_handback_beats": 3,
    "hb_target_addr": 0x42,
    "hb_target_i2c_id": 1,  # the secondary's I2C target peripheral
    "hb_target_scl": 7,
    "hb_target_sda": 6,
    "hb_pin": 15,  # the GPIO line when hb_transport is gpio
    "led_pin": None,
    # CircuitPython names pins by board attribute (board.SCL, board.A0, …) instead of numbers
    "cp_scl": "SCL",
    "cp_sda": "SDA",
    "cp_adc": "A0",
    "cp_hb_pin": "D5",
    "cp_target_scl": "D9",
    "cp_target_sda": "D10",
}
