"""MicroPython board glue on the fake ``machine``/``network``/``umqtt`` modules: the shipped config.py
builds, the DS1307 is read over machine.I2C, the cache falls back to flash without an SD card, the main
loop publishes QoS 1 readings with the status as last will, and two boards pair over I2CTarget or GPIO."""

import json

import machine
from _support import PORT_DIR, tmpdir
from iotboard import micropython_board as board
from iotcollector.ds1307 import DS1307
from iotcollector.ticks import ManualTicks
from simparts import Ds1307Chip
from umqtt import simple


def _config(**over):
    ns = {}
    with open(PORT_DIR + "/config.py") as f:
        exec(f.read(), ns)
    cfg = dict(ns["CONFIG"])
    folder = tmpdir()
    cfg.update({"flash_dir": folder, "boot_file": folder + "/boot.count", "sd_mount": folder + "/sd"})
    cfg.update(over)
    return cfg


def _fresh(unix=1700000000):
    machine.reset_all()
    chip = Ds1307Chip()
    machine.bus(0).attach(0x68, chip)
    DS1307(machine.bus(0)).write(unix)
    machine.ADC_VALUES[26] = 32768
    return chip, simple.reset()


def test_shipped_config_builds_a_single_collector():
    chip, broker = _fresh()
    cfg = _config()
    clock = ManualTicks()
    node = board.main(cfg, clock, max_steps=60)  # 60 loops of 20 ms, after the WLAN join
    assert node.cache.storage.path == cfg["flash_dir"] + "/cache.log"  # no SD card: flash fallback
    readings = [json.loads(p) for p in broker.published("reading")]
    assert len(readings) == 2
    r = readings[0]
    assert (r["dev"], r["node"], r["boot"], r["seq"], r["src"], r["ts"]) == ("greenhouse-1", "a", 0, 0, "rtc",
                                                                            1700000000000)
    assert abs(r["val"] - 32768 * cfg["adc_scale"]) < 0.001
    assert all(q == 1 for (t, p, q, rt) in broker.log if t.endswith("/reading"))
    status = json.loads(broker.retained["iot/site-1/greenhouse-1/status"])
    assert status["state"] == "online" and status["role"] == "single"
    will = broker.clients[0].will
    assert will[0] == "iot/site-1/greenhouse-1/status" and will[2] is True and will[3] == 1
    assert json.loads(will[1])["state"] == "offline"


def test_boot_counter_increments_per_start():
    _fresh()
    cfg = _config()
    boots = [board.build(cfg, ManualTicks()).boot for _ in range(3)]
    assert boots == [0, 1, 2]


def test_sd_card_used_when_present():
    _fresh()
    cfg = _config(board="esp32", adc_pin=26)  # the ESP32 profile has machine.SDCard slot 2
    mounted = []

    def mount(card, path):
        import os

        os.mkdir(path)
        mounted.append((card, path))

    machine.SDCARD_PRESENT = True
    node = board.build(cfg, ManualTicks(), mount=mount)
    assert mounted and mounted[0][1] == cfg["sd_mount"]
    assert node.cache.storage.path == cfg["sd_mount"] + "/cache.log"


def test_wlan_join_waits_with_deadline():
    import network

    cfg = _config()
    clock = ManualTicks()
    network.CONNECT_POLLS = 3
    assert board.wlan_connect(cfg, clock)
    assert clock.elapsed_ms == 300
    network.CONNECT_POLLS = 10 ** 6
    assert not board.wlan_connect(cfg, clock, timeout_ms=2000)
    network.CONNECT_POLLS = 2


def _pair(transport):
    _fresh()
    clock = ManualTicks()
    common = {"dev": "pair-1", "hb_transport": transport, "hb_target_i2c_id": 0, "hb_period_ms": 1000,
              "hb_timeout_ms": 3500}
    a = board.build(_config(node="a", role="primary", **common), clock)
    b = board.build(_config(node="b", role="secondary", **common), clock)
    return clock, a, b


def _run(clock, nodes, ms):
    for _ in range(ms // 20):
        for n in nodes:
            n.step()
        clock.advance(20)


def test_pair_over_i2c_target():
    clock, a, b = _pair("i2c")
    _run(clock, [a, b], 3000)
    assert a.collector.role == "active" and b.collector.role == "standby"
    assert 0x42 in machine.bus(0).scan()  # the secondary's I2CTarget answers on the bus
    # the last beat was at 2000 ms; the primary stops at 3000 ms
    _run(clock, [b], 2480)  # 5480 ms: 3480 ms of silence, not yet the timeout
    assert b.collector.role == "standby"
    _run(clock, [b], 40)
    assert b.collector.role == "active"


def test_pair_over_gpio_line():
    clock, a, b = _pair("gpio")
    _run(clock, [a, b], 5000)
    assert a.collector.role == "active" and b.collector.role == "standby"
    _run(clock, [b], 5000)
    assert b.collector.role == "active"


def test_mqtt_client_keeps_a_socket_timeout():
    _fresh()
    cfg = _config(mqtt_timeout_s=7)
    client = board.make_mqtt_factory(cfg)()
    client.set_callback(lambda topic, msg: None)
    client.connect()
    assert client.sock.timeout == 7
    client.check_msg()  # umqtt.simple leaves the socket blocking without a timeout here ...
    assert client.sock.timeout == 7  # ... and the wrapper puts the timeout back
    assert client.client_id == "greenhouse-1-a" and client.keepalive == 30


def test_uart_link_to_serial_ingest():
    from iotcollector.protocol import frame, parse_line

    _fresh()
    cfg = _config(link="uart")
    clock = ManualTicks()
    node = board.main(cfg, clock, max_steps=10)  # no WLAN needed for a serial link
    uart = machine.UARTS[1]  # the Pico W profile's uart_id
    lines = [parse_line(line) for line in uart.sent.split(b"\n") if line]
    assert lines[0][0] == "S" and json.loads(lines[0][1])["state"] == "online"
    readings = [json.loads(p) for k, p in lines if k == "R"]
    assert readings[0]["seq"] == 0 and readings[0]["src"] == "rtc"
    assert node.cache.count == 1
    ack = '{"v":1,"dev":"greenhouse-1","node":"a","boot":0,"upto":0}'
    uart.feed(("console text\n" + frame("A", ack) + "\r\n").encode())
    node.step()
    assert node.cache.count == 0


class _FakeSocketModule:
    class Sock:
        timeout = None

        def settimeout(self, t):
            self.timeout = t

    def socket(self, *args):
        return self.Sock()

    def getaddrinfo(self, host, port):
        return [(2, 1, 0, "", (host, port))]


def test_sockets_get_a_timeout_before_connect():
    class Module:
        socket = _FakeSocketModule()

    board.install_socket_timeout(Module, 4)
    assert Module.socket.socket().timeout == 4
    assert Module.socket.getaddrinfo("10.0.0.1", 1883)[0][-1] == ("10.0.0.1", 1883)
    board.install_socket_timeout(Module, 6)  # again: adjusts, does not wrap twice
    assert Module.socket.socket().timeout == 6 and isinstance(Module.socket.real, _FakeSocketModule)


def test_watchdog_fed_every_loop_and_reset_reason_reported():
    _fresh()
    machine.RESET_CAUSE = machine.WDT_RESET
    cfg = _config()
    node = board.main(cfg, ManualTicks(), max_steps=25)
    assert node.reset_reason == "wdt"
    assert len(machine.WDTS) == 1 and machine.WDTS[0].timeout == 8000
    assert machine.WDTS[0].feeds == 25  # once per loop iteration, from the loop only
    _fresh()
    cfg["wdt_ms"] = 0  # off
    node = board.main(cfg, ManualTicks(), max_steps=3)
    assert node.reset_reason == "power" and not machine.WDTS


def test_pico_w_and_esp32_profiles_boot_on_a_port_without_sdcard():
    # rp2 (Pico W) has no machine.SDCard at all; an ESP32 profile asks for slot 2: either way the glue
    # falls back to the flash cache and runs, it does not crash at boot
    saved = machine.SDCard
    try:
        for name, adc_pin in (("pico_w", 26), ("esp32", 34)):
            _fresh()
            del machine.SDCard
            machine.ADC_VALUES[adc_pin] = 32768
            broker = simple.reset()
            cfg = _config(board=name)
            for key in ("i2c_scl", "adc_pin", "sd_slot"):
                cfg.pop(key, None)  # from the profile
            node = board.main(cfg, ManualTicks(), max_steps=60)
            machine.SDCard = saved
            assert node.cache.storage.path == cfg["flash_dir"] + "/cache.log", name
            readings = [json.loads(p) for p in broker.published("reading")]
            assert len(readings) == 2 and abs(readings[0]["val"] - 32768 * cfg["adc_scale"]) < 0.001, name
            assert machine.WDTS[-1].timeout == 8000
    finally:
        machine.SDCard = saved
    try:
        board.build(_config(board="uno"), ManualTicks())
    except ValueError as exc:
        assert "uno" in str(exc) and "esp32" in str(exc)
    else:
        raise AssertionError("an unknown board profile was accepted")


def test_wlan_rejoined_with_backoff_without_blocking():
    import network

    cfg = _config()
    clock = ManualTicks()
    wlan = network.WLAN()
    wlan.active(True)
    keeper = board.WlanKeeper(cfg, clock, wlan)
    tries = []
    real_connect = wlan.connect
    wlan.connect = lambda ssid, pw: (tries.append(clock.elapsed_ms), real_connect(ssid, pw))
    network.CONNECT_POLLS = 10 ** 9  # the access point is gone
    try:
        for _ in range(700):  # 70 s in 100 ms loop steps; each step returns at once
            keeper.step()
            clock.advance(100)
        assert tries[:7] == [0, 1000, 3000, 7000, 15000, 31000, 63000], tries
        network.CONNECT_POLLS = 2  # back: the next attempt joins, and the backoff starts again
        wlan._polls = 0
        assert keeper.step() and keeper.delay == 1000
    finally:
        network.CONNECT_POLLS = 2


def test_mqtt_device_credentials_and_tls():
    _fresh()
    cfg = _config(mqtt_user="pair-1-a", mqtt_password="s3cret", mqtt_port=None)
    client = board.make_mqtt_factory(cfg)()
    assert (client.user, client.password, client.port, client.ssl) == ("pair-1-a", "s3cret", 1883, None)
    try:
        import ssl
    except ImportError:
        ssl = None
    if ssl is not None and hasattr(ssl, "SSLContext"):  # the WebAssembly port has no ssl module
        client = board.make_mqtt_factory(_config(mqtt_tls=True, mqtt_port=None))()
        assert client.port == 8883 and isinstance(client.ssl, ssl.SSLContext)
