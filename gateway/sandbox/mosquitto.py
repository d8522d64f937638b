"""The sandbox's Mosquitto broker: config, password file, start command."""

from __future__ import annotations

import shutil
import subprocess

from .nodes import Node, tail
from .ports import HOST
from .tls import TlsFiles

MOSQUITTO = shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin:/usr/bin") or "mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "mosquitto_passwd"

#: The broker account when TLS is on (anonymous clients are refused then).
USERNAME = "iotgw"
PASSWORD = "iotgw-broker"


def config_text(node: Node, tls: TlsFiles | None) -> str:
    """The broker config.

    ``persistence true`` and ``max_queued_messages 0``: the broker keeps every queued QoS 1 message for
    an offline gateway (the default 1000 drops silently). ``autosave_interval`` keeps Mosquitto's default
    (1800 s): state is saved on SIGTERM, and a SIGKILL loses what the broker held since the last save,
    as in production; only the gateway's end-to-end acks make that harmless, and tests should see it.
    ``max_inflight_messages 0`` leaves the window to the client's Receive Maximum (MQTT 5).
    """
    lines = [
        "user root",
        "persistence true",
        f"persistence_location {node.datadir}/",
        "max_queued_messages 0",
        "max_inflight_messages 0",
        f"log_dest file {node.log}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        f"listener {node.port} {HOST}",
    ]
    if tls is None:
        lines.append("allow_anonymous true")
    else:
        lines += [
            f"cafile {tls.ca_cert}",
            f"certfile {tls.server_cert}",
            f"keyfile {tls.server_key}",
            "require_certificate false",
            "allow_anonymous false",
            f"password_file {node.dir / 'passwd'}",
        ]
    return "\n".join(lines) + "\n"


def prepare(node: Node, tls: TlsFiles | None) -> None:
    """Create the node's folders, password file (TLS) and config."""
    node.dir.mkdir(parents=True, exist_ok=True)
    node.datadir.mkdir(exist_ok=True)
    if tls is not None:
        passwd = node.dir / "passwd"
        passwd.unlink(missing_ok=True)
        subprocess.run(
            [MOSQUITTO_PASSWD, "-c", "-b", str(passwd), USERNAME, PASSWORD],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    node.config.write_text(config_text(node, tls))


def argv(node: Node) -> list[str]:
    return [MOSQUITTO, "-c", str(node.config)]


def startup_failure(node: Node) -> str:
    """Why the broker exited while starting, from its logs."""
    return (tail(node.log, 30) + "\n" + tail(node.out_log, 10)).strip()
