"""The sandbox's Mosquitto broker: plain, and TLS with a password."""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from gateway.sandbox.process import wait_until

pytestmark = pytest.mark.servers


class Probe:
    """A paho client that records the outcome of one connection attempt."""

    def __init__(self, client_id: str = "", clean_session: bool | None = None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.reason = None
        self.messages: list[bytes] = []
        self.got_message = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.done.set()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.reason = reason_code
        self.done.set()

    def _on_message(self, client, userdata, message) -> None:
        self.messages.append(message.payload)
        self.got_message.set()

    def attempt(self, port: int) -> bool:
        """True if the broker accepted the connection (CONNACK success) within 20 s."""
        try:
            self.client.connect("127.0.0.1", port, keepalive=10)
        except (OSError, ssl.SSLError):
            return False
        self.client.loop_start()
        self.done.wait(20)
        return self.reason is not None and not self.reason.is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_plain_broker_round_trip(sandbox):
    port = sandbox.endpoints()["broker"]["port"]
    probe = Probe()
    try:
        assert probe.attempt(port)
        probe.client.subscribe("sandbox/test", qos=1)
        probe.client.publish("sandbox/test", b"hello", qos=1).wait_for_publish(10)
        assert probe.got_message.wait(10) and probe.messages == [b"hello"]
    finally:
        probe.close()


def test_tls_broker_needs_tls_and_password(make_sandbox):
    sb = make_sandbox(mariadb_servers=False, tls=True)
    broker = sb.endpoints()["broker"]
    assert broker["url"].startswith("mqtts://") and broker["tls_port"] == broker["port"]

    plain = Probe()  # no TLS: the handshake fails, no CONNACK
    plain.client.username_pw_set(broker["username"], broker["password"])
    assert not plain.attempt(broker["port"])
    plain.close()

    anonymous = Probe()  # TLS but no password: refused
    anonymous.client.tls_set(ca_certs=broker["ca"])
    assert not anonymous.attempt(broker["port"])
    assert anonymous.reason is not None and anonymous.reason.is_failure
    anonymous.close()

    good = Probe()  # TLS, the sandbox's CA (verifies 127.0.0.1 in the certificate) and the password
    good.client.tls_set(ca_certs=broker["ca"])
    good.client.username_pw_set(broker["username"], broker["password"])
    try:
        assert good.attempt(broker["port"])
        good.client.subscribe("sandbox/tls", qos=1)
        good.client.publish("sandbox/tls", b"secret", qos=1).wait_for_publish(10)
        assert good.got_message.wait(10) and good.messages == [b"secret"]
    finally:
        good.close()


def test_queued_messages_survive_a_clean_broker_restart(make_sandbox):
    sb = make_sandbox(mariadb_servers=False)
    port = sb.nodes["broker"].port

    def session() -> Probe:
        return Probe(client_id="sandbox-persistent", clean_session=False)

    subscriber = session()
    assert subscriber.attempt(port)
    subscriber.client.subscribe("sandbox/queued", qos=1)
    assert subscriber.subscribed.wait(10)
    subscriber.close()  # offline now: the broker queues for its persistent session

    publisher = Probe()
    assert publisher.attempt(port)
    for i in range(3):
        publisher.client.publish("sandbox/queued", f"m{i}".encode(), qos=1).wait_for_publish(10)
    publisher.close()

    sb.stop("broker")  # SIGTERM: Mosquitto saves its persistence file
    sb.restart("broker")
    assert sb.role("broker") == "broker"

    again = session()
    try:
        assert again.attempt(port)
        wait_until(lambda: len(again.messages) >= 3, 20, what="the 3 queued messages")
        assert again.messages == [b"m0", b"m1", b"m2"]
    finally:
        again.close()
