"""MQTT connection set-up shared by the gateway's ingest and the simulator: MQTT 5, TLS, credentials,
persistent sessions, and error messages that name the cause (bad password, untrusted certificate, …)."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import Account


@dataclass(frozen=True)
class BrokerAddress:
    """Which broker: the first fields of `BrokerSettings`."""

    host: str = "localhost"
    port: int = 1883


@dataclass(frozen=True)
class BrokerSettings(Account, BrokerAddress):
    """Where and how to connect (the gateway fills it from `[mqtt]`, the simulator from its options).

    Fields in order: host, port (`BrokerAddress`), then user, password, tls_ca, tls_cert, tls_key (`Account`:
    the password stays out of `repr`, a client certificate needs the CA), then the session settings below.
    """

    keepalive: int = 10
    session_expiry: int = 0  # seconds the broker keeps our session (and queued QoS 1 messages) while we are away
    receive_maximum: int = 0  # in-flight QoS 1 messages the broker may send before our acks; 0: broker default

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls_ca else 'mqtt'}://{self.host}:{self.port}"


class MqttConnectError(ConnectionError):
    """A connection failure with a message naming the cause."""


def make_client(settings: BrokerSettings, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    """An MQTT 5 client configured with TLS and credentials (not yet connected)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    if settings.user:
        client.username_pw_set(settings.user, settings.password or None)
    if settings.tls_ca:
        client.tls_set(ca_certs=settings.tls_ca, certfile=settings.tls_cert or None,
                       keyfile=settings.tls_key or None, cert_reqs=ssl.CERT_REQUIRED)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    return client


def connect_properties(settings: BrokerSettings) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    if settings.session_expiry:
        props.SessionExpiryInterval = settings.session_expiry
    if settings.receive_maximum:
        props.ReceiveMaximum = settings.receive_maximum
    return props


def explain_exception(settings: BrokerSettings, exc: BaseException) -> str:
    """A one-line cause for an exception raised while connecting."""
    where = settings.url
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{where}: TLS certificate not trusted ({exc.verify_message}); check mqtt.tls_ca"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS handshake failed ({exc.reason or exc}); is this a TLS port, and the CA right?"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused (is the broker running on this port?)"
    if isinstance(exc, TimeoutError):
        return f"{where}: connection timed out"
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or exc}"
    return f"{where}: {exc}"


def explain_reason(settings: BrokerSettings, reason_code) -> str:
    """A one-line cause for a CONNACK that refused us."""
    name = str(reason_code)
    hint = ""
    if "authori" in name.lower() or "user name or password" in name.lower():
        hint = "; check mqtt.username and the password (password_file / password_env)"
    return f"{settings.url}: broker refused the connection: {name}{hint}"


def connect_blocking(client: mqtt.Client, settings: BrokerSettings, *, clean_start: bool = True,
                     timeout: float = 10.0) -> None:
    """Connect and wait for the CONNACK (driving the loop here); raise MqttConnectError naming the cause.

    The caller drives the network loop itself afterwards (`client.loop()`), so it controls reconnects
    and can stay disconnected on purpose (backpressure).
    """
    result: dict = {}

    def on_connect(_c, _u, _flags, reason_code, _props=None):
        result["rc"] = reason_code

    previous = client.on_connect
    client.on_connect = on_connect
    try:
        try:
            client.connect(settings.host, settings.port, settings.keepalive, clean_start=clean_start,
                           properties=connect_properties(settings))
        except Exception as exc:
            raise MqttConnectError(explain_exception(settings, exc)) from exc
        deadline = time.monotonic() + timeout
        while "rc" not in result and time.monotonic() < deadline:
            rc = client.loop(0.05)
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN) and "rc" not in result:
                raise MqttConnectError(f"{settings.url}: connection lost during handshake ({mqtt.error_string(rc)})")
        if "rc" not in result:
            raise MqttConnectError(f"{settings.url}: no CONNACK within {timeout:.0f} s")
        if result["rc"].is_failure:
            raise MqttConnectError(explain_reason(settings, result["rc"]))
    finally:
        client.on_connect = previous


def tls_context(settings: BrokerSettings) -> ssl.SSLContext:
    """The TLS context for `settings` (broker certificate checked against mqtt.tls_ca, host name checked, client
    certificate when given): what paho's `tls_set` builds in make_client, for connections made without paho."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    if settings.tls_cert:
        context.load_cert_chain(settings.tls_cert, settings.tls_key or None)
    context.load_verify_locations(settings.tls_ca)
    return context
