"""The ingest's own MQTT 5 session against a real Mosquitto: persistent sessions keep exactly the messages not
PUBACKed, PUBACKs go in batches, our QoS 1 publishes are acknowledged, other threads wake the loop, the
keep-alive notices a hung broker, and connect errors name their cause."""

from __future__ import annotations

import dataclasses
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from gateway.ingest.session import ConnectionLost, MqttSession
from gateway.mqttconn import BrokerSettings, MqttConnectError, connect_blocking, make_client
from tests.ingest.helpers import broker_of, unique

pytestmark = pytest.mark.servers


def publisher(settings: BrokerSettings) -> mqtt.Client:
    client = make_client(settings, unique("pub-"))
    connect_blocking(client, settings)
    client.loop_start()
    return client


def pump_until(session: MqttSession, want: int, deadline_s: float = 10.0) -> list:
    """Pump until `want` messages came (or for the whole `deadline_s` when want is 0)."""
    got: list = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got += session.pump(0.05)
        if want and len(got) >= want:
            break
    return got


def test_persistent_session_redelivers_exactly_what_was_not_acked(sandbox):
    settings = dataclasses.replace(broker_of(sandbox), session_expiry=60, receive_maximum=1000)
    cid, topic = unique("sess-"), unique("t/") + "/x"
    first = MqttSession(settings, cid, clean_start=True)
    first.open()
    first.subscribe([(topic, 1)])
    pump_until(first, 0, 0.3)  # the SUBACK
    pub = publisher(settings)
    try:
        for i in range(10):
            pub.publish(topic, f"m{i}".encode(), qos=1).wait_for_publish(5)
        got = pump_until(first, 10)
        assert [m.payload for m in got] == [f"m{i}".encode() for i in range(10)]
        assert all(m.qos == 1 and m.mid for m in got) and len({m.mid for m in got}) == 10
        first.ack([m.mid for m in got[:6]])  # one write for six PUBACKs
        pump_until(first, 0, 0.3)
        first.close()  # a clean DISCONNECT: the broker keeps the session (expiry 60 s)

        again = MqttSession(settings, cid, clean_start=False)
        again.open()
        try:
            assert again.session_present
            redelivered = pump_until(again, 4)
            pump_until(again, 0, 0.5)  # nothing more may come
            assert sorted(m.payload for m in redelivered) == [f"m{i}".encode() for i in range(6, 10)]
            again.ack([m.mid for m in redelivered])
            pump_until(again, 0, 0.3)
        finally:
            again.close()
        last = MqttSession(settings, cid, clean_start=False)
        last.open()
        try:
            assert pump_until(last, 1, 1.0) == []  # all acknowledged: nothing is queued for us any more
        finally:
            last.close()
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_qos1_publishes_from_another_thread_arrive_and_are_acknowledged(sandbox):
    settings = broker_of(sandbox)
    topic = unique("acks/")
    received: list[bytes] = []
    sub = make_client(settings, unique("sub-"))
    sub.on_message = lambda _c, _u, m: received.append(m.payload)
    connect_blocking(sub, settings)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    session = MqttSession(settings, unique("gw-"))
    session.open()
    try:
        time.sleep(0.3)
        # Publishes from another thread wake the loop (it would otherwise sleep its whole second).
        sender = threading.Thread(target=lambda: [session.publish(topic, f"a{i}") for i in range(300)])
        started = time.monotonic()
        sender.start()
        while len(received) < 300 and time.monotonic() - started < 10:
            session.pump(1.0)
        sender.join()
        assert received == [f"a{i}".encode() for i in range(300)]  # in order, each once
        assert time.monotonic() - started < 3
        end = time.monotonic() + 5
        while session._inflight and time.monotonic() < end:  # every PUBACK came back
            session.pump(0.1)
        assert not session._inflight and not session._waiting
    finally:
        session.close()
        sub.loop_stop()
        sub.disconnect()


def test_an_ack_from_another_thread_wakes_a_long_pump(sandbox):
    session = MqttSession(broker_of(sandbox), unique("gw-"))
    session.open()
    try:
        session.pump(0.2)
        threading.Timer(0.3, session.wake).start()
        started = time.monotonic()
        session.pump(20.0)
        assert 0.2 <= time.monotonic() - started < 2.0
    finally:
        session.close()


def test_keepalive_pings_an_idle_broker_and_notices_a_hung_one(make_sandbox):
    sb = make_sandbox(replicas=0, broker=True, mariadb_servers=False)
    settings = dataclasses.replace(broker_of(sb), keepalive=1)
    session = MqttSession(settings, unique("gw-"))
    session.open()
    try:
        end = time.monotonic() + 3.5  # three keep-alive periods with nothing to say: PINGREQs keep it up
        while time.monotonic() < end:
            session.pump(1.0)
        sb.freeze("broker")
        try:
            started = time.monotonic()
            with pytest.raises(ConnectionLost, match="keep-alive"):
                while time.monotonic() - started < 10:
                    session.pump(1.0)
            assert time.monotonic() - started < 4
        finally:
            sb.thaw("broker")
    finally:
        session.close(graceful=False)


def test_a_killed_broker_is_a_lost_connection_and_refusals_name_the_cause(make_sandbox):
    sb = make_sandbox(replicas=0, broker=True, mariadb_servers=False)
    settings = broker_of(sb)
    session = MqttSession(settings, unique("gw-"))
    session.open()
    sb.kill("broker")
    with pytest.raises(ConnectionLost):
        end = time.monotonic() + 10
        while time.monotonic() < end:
            session.pump(0.5)
    session.close(graceful=False)
    with pytest.raises(MqttConnectError, match="connection refused"):
        MqttSession(settings, unique("gw-")).open(timeout=2)
