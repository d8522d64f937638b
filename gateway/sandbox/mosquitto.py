"""The sandbox's Mosquitto broker: config, password file, start command."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import process
from .nodes import Node, tail
from .ports import HOST, accepts_connections
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


# --- a broker with a caller-given config (tests of broker settings: ACLs, stock defaults, the shipped file) ----
@dataclass
class StandaloneBroker:
    """A Mosquitto started from a config text the caller wrote (not part of a sandbox's state)."""

    directory: Path
    port: int
    config: Path
    pid: int

    @property
    def log(self) -> str:
        return (tail(self.directory / "mosquitto.log", 60) + "\n" + tail(self.directory / "process.out", 20)).strip()

    def stop(self) -> None:
        process.stop_process(self.pid, str(self.config), timeout=30)

    def kill(self) -> None:
        process.kill_process(self.pid, str(self.config))


def stock_config(directory: Path, port: int, *, sys_interval: int | None = None, password_file: Path | None = None,
                 acl_file: Path | None = None, extra: Sequence[str] = ()) -> str:
    """Mosquitto's defaults plus only what a test names: no max_queued_messages line (the default 1000 applies),
    no persistence; anonymous clients unless a password file is given."""
    lines = [
        "user root",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type all",
        "connection_messages true",
        f"listener {port} {HOST}",
        "allow_anonymous false" if password_file else "allow_anonymous true",
    ]
    if password_file:
        lines.append(f"password_file {password_file}")
    if acl_file:
        lines.append(f"acl_file {acl_file}")
    if sys_interval is not None:
        lines.append(f"sys_interval {sys_interval}")
    return "\n".join([*lines, *extra]) + "\n"


def start_standalone(directory: Path, config: str, port: int, *, timeout: float = 20.0) -> StandaloneBroker:
    """Write `config` to directory/mosquitto.conf, start Mosquitto with it, wait until `port` accepts connections."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "mosquitto.conf"
    conf.write_text(config)
    launched = process.start_process([MOSQUITTO, "-c", str(conf)], directory / "process.out", cwd=directory)
    broker = StandaloneBroker(directory, port, conf, launched.pid)
    try:
        process.wait_until(lambda: accepts_connections(port) or not process.is_ours(launched.pid, str(conf)),
                           timeout, what=f"mosquitto on port {port}")
    except TimeoutError:
        broker.kill()
        raise
    if not process.is_ours(launched.pid, str(conf)):
        raise RuntimeError(f"mosquitto exited while starting:\n{broker.log}")
    return broker
