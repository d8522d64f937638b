"""Two brokers: every gateway connects to both and acks on the broker a reading came from; the collectors move
to the next broker when theirs dies. One broker killed under load, later the other (the first restarted):
nothing lost."""

from __future__ import annotations

import time

import pytest

from gateway.config import ConfigError, parse
from gateway.mqttconn import BrokerSettings
from gateway.sandbox.launch import launch_gateways, wait_for
from gateway.service import all_broker_settings
from gateway.simulator import SimOptions, Simulator
from tests.ingest.helpers import Background, assert_exact, count_on, unique

pytestmark = pytest.mark.servers

BACKOFF = (0.2, 2.0)  # the simulated collectors' backoff between brokers (low, high)


def test_broker_list_config():
    cfg = parse({"mqtt": {"brokers": ["10.0.0.1:1883", "10.0.0.2:1884"]}})
    assert [(b.host, b.port) for b in all_broker_settings(cfg)] == [("10.0.0.1", 1883), ("10.0.0.2", 1884)]
    assert [(b.host, b.port) for b in all_broker_settings(parse({}))] == [("localhost", 1883)]
    with pytest.raises(ConfigError, match=r"mqtt.brokers\[1\]: expected HOST:PORT"):
        parse({"mqtt": {"brokers": ["a:1", "b"]}})
    with pytest.raises(ConfigError, match="mqtt.brokers: a broker is listed twice"):
        parse({"mqtt": {"brokers": ["a:1", "a:1"]}})


def _subscribed_to(gw, url: str) -> int:
    return gw.log_tail(100000).count(f"connected to {url}, subscribed")


def test_collectors_move_between_brokers_nothing_lost(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=1, brokers=2)
    b1, b2 = sb.endpoints()["brokers"]
    prefix = unique("t")
    gateways = launch_gateways(sb, 2, tmp_path, client_id_prefix=unique("gw"),
                               mqtt={"topic_prefix": prefix, "share_group": "iotgw",
                                     "brokers": [f"{b['host']}:{b['port']}" for b in (b1, b2)]},
                               ack={"after": "database"})
    try:
        for gw in gateways:
            for b in (b1, b2):
                wait_for(lambda gw=gw, b=b: _subscribed_to(gw, b["url"]) >= 1, 60, f"{gw.workdir.name} on {b['url']}")
        sim = Simulator([BrokerSettings(b["host"], b["port"]) for b in (b1, b2)],
                        SimOptions(prefix=prefix, devices=10, count=400, rate=100, ack_timeout=2), backoff_s=BACKOFF)
        sim.connect()
        assert sim.settings.port == b1["port"]
        run = Background(sim, deadline_s=200)
        wait_for(lambda: sim.report.acked > 300, 60, "acks flowing through the first broker")

        killed_at = time.monotonic()
        sb.kill(b1["name"])
        wait_for(lambda: sim.settings.port == b2["port"], 30, "the collectors to move to the second broker")
        moved_after = sim.connections[-1][0] - killed_at
        assert moved_after < BACKOFF[1] + 3, f"moved after {moved_after:.1f} s"
        acked = sim.report.acked
        wait_for(lambda: sim.report.acked > acked + 200, 60, "acks flowing through the second broker")

        sb.restart(b1["name"])
        for gw in gateways:  # the gateways reconnect to the restarted broker by themselves
            wait_for(lambda gw=gw: _subscribed_to(gw, b1["url"]) >= 2, 60, f"{gw.workdir.name} back on {b1['url']}")
        sb.kill(b2["name"])
        wait_for(lambda: sim.settings.port == b1["port"], 30, "the collectors to move back to the first broker")

        report = run.join_acked(timeout=240, log=gateways[0].log_tail)
        assert report.broker_switches == 2, report.summary()
        wait_for(lambda: count_on(sb, "db1")[0] >= report.sent, 60, "every reading on the primary")
        sb.wait_caught_up(timeout=60)
        assert_exact(sb, report)
    finally:
        for gw in gateways:
            gw.terminate()
