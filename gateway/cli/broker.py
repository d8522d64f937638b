"""`iotgw check-broker`: what the gateway can tell about its broker over MQTT (version, drops, granted limits)."""

from __future__ import annotations

import time

import click

from gateway.cli.common import load_config
from gateway.config import ConfigError
from gateway.mqttconn import MqttConnectError, connect_blocking, make_client
from gateway.service import broker_settings

SYS_TOPICS = ("$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected",
              "$SYS/broker/publish/messages/dropped")


def probe_broker(settings, client_id: str, wait_s: float) -> dict[str, str]:  # noqa: ANN001 - BrokerSettings
    """Connect with the gateway's credentials and collect the broker's $SYS values for up to `wait_s` seconds."""
    client = make_client(settings, client_id)
    values: dict[str, str] = {}
    client.on_message = lambda _c, _u, m: values.__setitem__(m.topic, m.payload[:200].decode("utf-8", "replace"))
    connect_blocking(client, settings)
    try:
        client.subscribe([(t, 0) for t in SYS_TOPICS])
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and len(values) < len(SYS_TOPICS):
            client.loop(0.1)
    finally:
        client.disconnect()
    return values


@click.command("check-broker")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), envvar="IOTGW_CONFIG",
              help="The gateway's TOML config (env IOTGW_CONFIG): its [mqtt] broker and account are used.")
@click.option("--wait", "wait_s", default=12.0, show_default=True,
              help="Seconds to wait for the broker's $SYS values (it publishes them every sys_interval).")
def check_broker(config_path: str | None, wait_s: float) -> None:
    """Connect to the broker as the gateway and report what can be told from outside: its version, whether it
    publishes $SYS, and how many messages it has dropped since it started (a sign of max_queued_messages)."""
    cfg = load_config(config_path)
    try:
        settings = broker_settings(cfg)
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None
    try:
        values = probe_broker(settings, f"{cfg.mqtt.client_id}-check", wait_s)
    except MqttConnectError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{settings.url}: connected as {settings.user or '(anonymous)'}")
    if not values:
        click.echo(f"  no $SYS values within {wait_s:.0f} s: the gateway cannot see broker drops (sys_interval 0, "
                   "or the account may not read $SYS/#: see docs/security.md)")
        return
    for topic in SYS_TOPICS:
        click.echo(f"  {topic.removeprefix('$SYS/broker/'):28} {values.get(topic, '(not received)')}")
    dropped = values.get("$SYS/broker/publish/messages/dropped", "")
    if dropped.isdigit() and int(dropped) > 0:
        click.echo(f"  WARNING: the broker dropped {dropped} messages since it started: set max_queued_messages 0 "
                   "(and persistence true) in mosquitto.conf")
    click.echo("  max_queued_messages itself cannot be read over MQTT: check mosquitto.conf says "
               "`max_queued_messages 0` (deploy/mosquitto.conf does)")
