"""Board configuration: copy to the board's root next to main.py (or code.py) and edit.

One file per board. For a redundant pair, both boards get the same ``dev`` and different ``node``;
the primary (``role: primary``) drives the I2C heartbeat as controller, the secondary is the I2C target.
"""

CONFIG = {
    # the board: its pins and limits come from lib/iotboard/profiles.py ("pico_w" or "esp32"); any key
    # set here (i2c_id, i2c_scl, i2c_sda, adc_pin, sd_slot, sd_spi, hb_target_*, hb_pin, uart_*, wdt_ms)
    # wins over the profile
    "board": "pico_w",
    # identity (protocol v1: names of letters, digits, _ and -; dev <= 32 chars, node <= 16)
    "dev": "greenhouse-1",
    "node": "a",
    "site": "site-1",
    "prefix": "iot",
    "role": "single",  # single | primary | secondary
    # link to the gateway: "mqtt" (Wi-Fi), "uart" (a serial line to the gateway's serial ingest) or "usb"
    # (frames on the USB console, among the console text, which the gateway ignores)
    "link": "mqtt",
    "uart_baud": 115200,
    # network
    "wifi_ssid": "my-network",
    "wifi_password": "my-password",
    "mqtt_host": "192.168.1.10",
    "mqtt_port": 1883,  # 8883 with TLS
    # several brokers, e.g. [("192.168.1.11", 1883), ("192.168.1.12", 1883)]: when one fails the collector
    # moves to the next (with the link backoff); None: mqtt_host and mqtt_port only
    "mqtt_brokers": None,
    # device credentials from the gateway (`iotgw devices add`), matching the broker's ACL; None: anonymous
    "mqtt_user": None,
    "mqtt_password": None,
    "mqtt_tls": False,  # True: TLS (umqtt's ssl=), the broker's certificate checked against mqtt_ca
    "mqtt_ca": None,  # e.g. "/ca.pem", copied to the board next to config.py
    "mqtt_keepalive": 30,
    "mqtt_timeout_s": 2,  # socket timeout: a silent network raises instead of blocking the loop (< hb_timeout_ms)
    # sampling: value = adc.read_u16() * adc_scale + adc_offset, in `unit`
    "unit": "C",
    "adc_scale": 3.3 / 65535 * 100,  # e.g. an LM35 (10 mV/C) on a 3.3 V ADC
    "adc_offset": 0.0,
    "sample_ms": 1000,
    "ack_timeout_ms": 5000,
    "resend_window": 8,  # records resent per ack timeout or reconnect (protocol section 10)
    "resend_cap_ms": 60000,  # the resend timeout doubles per expiry up to this
    "status_ms": 60000,  # status (cache fill, dropped, reset reason, storage errors) this often; 0: only on changes
    # I2C bus 0 carries the DS1307 (and, on the primary, the heartbeat to the secondary)
    "rtc": True,
    # cache: SD card if one is found (machine.SDCard slot, or the sdcard driver on SPI), else a flash file
    # "sd_spi": {"id": 1, "sck": 10, "mosi": 11, "miso": 12, "cs": 13},  # an SPI card with the sdcard driver
    "sd_mount": "/sd",
    "flash_dir": "/",
    "cache_capacity": 2000,
    "boot_file": "/boot.count",
    # watchdog: the profile's wdt_ms (8000) resets the board when a loop iteration takes longer; set
    # "wdt_ms": 0 here to turn it off (rp2 allows at most 8388)
    # redundant pair heartbeat
    "hb_transport": "i2c",  # i2c | gpio
    "hb_period_ms": 1000,
    "hb_timeout_ms": 3500,
    "hb_handback_beats": 3,
    "hb_target_addr": 0x42,
    "led_pin": None,
    # CircuitPython names pins by board attribute (board.SCL, board.A0, …) instead of numbers
    "cp_scl": "SCL",
    "cp_sda": "SDA",
    "cp_adc": "A0",
    "cp_hb_pin": "D5",
    "cp_target_scl": "D9",
    "cp_target_sda": "D10",
}
