"""The port on a PC against a real Mosquitto: umqtt.simple API over paho (host/umqtt_paho.py), the host
runner's single collector through a link outage, and its pair through a takeover. CPython only."""

import json
import subprocess
import sys
import time

import pytest
from _hostnet import Mosquitto, PahoGateway
from run_collector import HostCollectors
from umqtt_paho import MQTTClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def broker(tmp_path):
    m = Mosquitto(tmp_path).start()
    yield m
    m.stop()


@pytest.fixture
def gateway(broker):
    gw = PahoGateway(broker.port)
    yield gw
    gw.close()


def test_paho_adapter_has_umqtt_semantics(broker):
    got = []
    c = MQTTClient("adapter-test", "127.0.0.1", broker.port)
    c.set_callback(lambda topic, msg: got.append((topic, msg)))
    c.set_last_will(b"t/status", b"offline", retain=True, qos=1)
    c.connect()
    c.subscribe(b"t/echo", qos=1)
    c.publish(b"t/echo", b"hello", qos=1)  # returns after the PUBACK
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        c.check_msg()
        time.sleep(0.02)
    assert got == [(b"t/echo", b"hello")]
    watcher = MQTTClient("watcher", "127.0.0.1", broker.port)
    wills = []
    watcher.set_callback(lambda topic, msg: wills.append(msg))
    watcher.connect()
    watcher.subscribe("t/status", qos=1)
    c.kill()  # no DISCONNECT: the broker publishes the will
    deadline = time.monotonic() + 10
    while not wills and time.monotonic() < deadline:
        watcher.check_msg()
        time.sleep(0.02)
    assert wills == [b"offline"]
    with pytest.raises(OSError):
        c.publish(b"t/echo", b"after death", qos=1)
    watcher.disconnect()
    with pytest.raises(OSError):
        MQTTClient("nobody", "127.0.0.1", 1).connect()  # refused: OSError like umqtt.simple


def test_single_collector_link_outage_replays_with_original_timestamps(broker, gateway, tmp_path):
    hc = HostCollectors("127.0.0.1", broker.port, "mp-ft-1", state_dir=str(tmp_path / "state"), sample_ms=200)
    try:
        hc.run(1.5)
        gateway.wait_for(lambda g: len(g.rows) >= 5, 10, "first readings")
        hc.cut_link(True)
        cut_at = time.time()
        hc.run(4.0)
        c = hc.collector("a")
        assert c.cache.count >= 15  # cached during the outage
        hc.cut_link(False)
        restored_at = time.time()
        seq_before = c.seq
        hc.run(0.1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (c.cache.count or len(gateway.rows) < seq_before):
            hc.run(0.1)
        assert c.cache.count <= 1
        gateway.wait_for(lambda g: len(g.rows) >= seq_before, 10, "replay")
    finally:
        hc.close()
    rows = gateway.rows
    seqs = sorted(k[3] for k in rows)
    assert seqs == list(range(len(seqs)))  # nothing lost, one row per identity
    outage = [r for r in rows.values() if cut_at * 1000 + 1000 <= r["ts"] < restored_at * 1000 - 1000]
    assert len(outage) >= 4, "readings sampled during the outage"
    arrived = {}
    for wall, r in gateway.arrivals:
        arrived.setdefault(r["seq"], wall)
    for r in outage:
        # stamped by the RTC when sampled, delivered only after the link came back: cached, original time
        assert r["cached"] is True and r["src"] == "rtc", r
        assert arrived[r["seq"]] >= restored_at, r
    for r in rows.values():
        assert r["ts"] <= arrived[r["seq"]] * 1000 + 1000  # never stamped later than it arrived


def test_pair_takeover_and_hand_back_through_real_broker(broker, gateway, tmp_path):
    # generous timings: this runs in real time on a shared machine; the exact bounds are proven in simulation.
    # The loop runs in HostCollectors' background thread, as the demo uses it.
    period, timeout, sample = 300, 1500, 300
    hc = HostCollectors("127.0.0.1", broker.port, "mp-pair-1", pair=True, state_dir=str(tmp_path / "state"),
                        sample_ms=sample, hb_period_ms=period, hb_timeout_ms=timeout).start()

    def roles():
        snap = hc.snapshot()
        return snap["a"]["role"], snap["b"]["role"]

    def wait_roles(want, seconds):
        deadline = time.monotonic() + seconds
        while roles() != want and time.monotonic() < deadline:
            time.sleep(0.005)
        return roles() == want

    try:
        assert wait_roles(("active", "standby"), 10)
        time.sleep(1.0)
        hc.kill("a")
        killed = time.monotonic()
        assert wait_roles(("active", "active"), 20)  # a's collector keeps its last role; it is powered off
        took = time.monotonic() - killed
        with hc.lock:
            silent = hc.clock.ticks_diff(hc.clock.ticks_ms(), hc.nodes["b"].role.monitor.last)
        time.sleep(1.0)
        hc.restart_primary()
        restarted = time.monotonic()
        assert wait_roles(("active", "standby"), 20)
        handed = time.monotonic() - restarted
        time.sleep(0.5)
    finally:
        hc.close()
    assert timeout <= silent <= timeout + 500, silent  # taken over after the full timeout of silence
    assert took <= (timeout + 1000) / 1000, took
    assert 2 * period / 1000 - 0.1 <= handed <= 5 * period / 1000 + 1.0, handed  # hysteresis: 3 beats
    gateway.wait_for(lambda g: any(k[1] == "b" for k in g.rows), 10, "node b readings")
    a_boot0 = [r["ts"] for k, r in gateway.rows.items() if k[1] == "a" and k[2] == 0]
    b_ts = min(r["ts"] for k, r in gateway.rows.items() if k[1] == "b")
    # timeout + one sample period, + 1 s because the DS1307 counts whole seconds, + slack for a busy machine
    assert b_ts - max(a_boot0) <= timeout + sample + 1000 + 500, b_ts - max(a_boot0)
    gateway.wait_for(lambda g: any(k[1] == "a" and k[2] == 1 for k in g.rows), 10, "the restarted primary (boot 1)")
    gateway.wait_for(lambda g: any(s[1].get("node") == "a" and s[1]["state"] == "offline" for s in g.statuses), 10,
                     "node a's last will")


def test_host_runner_cli(broker, gateway, tmp_path):
    script = str(__import__("run_collector").__file__)
    proc = subprocess.run([sys.executable, script, "--host", "127.0.0.1", "--port", str(broker.port), "--device",
                           "mp-cli-1", "--state-dir", str(tmp_path / "s"), "--sample-ms", "200", "--duration", "2"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    final = [e for e in events if e["event"] == "final"][0]["nodes"]["a"]
    assert final["seq"] >= 8 and final["link"] is True
    gateway.wait_for(lambda g: len([k for k in g.rows if k[0] == "mp-cli-1"]) >= final["seq"] - 1, 10, "cli rows")
