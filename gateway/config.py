"""The one configuration loader: a TOML file, validated at start, with clear errors naming the bad key.

Secrets (passwords) never come from the command line: each `password` has `password_file` and
`password_env` forms, and the literal `password` key is accepted only for local test setups.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration problem, with the dotted key that caused it."""


def tls_problem(tls_ca: str, tls_cert: str, tls_key: str) -> str | None:
    """The TLS key set without the CA it needs (`tls_cert` or `tls_key`), or None when the TLS files agree.

    TLS is used only with a CA, so a client certificate without one would go unused and the connection out in
    plaintext: every account (a config section, a database account, a broker connection) refuses it.
    """
    for key, value in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        if value and not tls_ca:
            return key
    return None


@dataclass(frozen=True)
class Account:
    """Who connects and how the connection is secured: the one declaration of user, password and TLS files.

    The database accounts (`gateway.topology.conn.Credentials`) and the broker connection
    (`gateway.mqttconn.BrokerSettings`) build on it. `repr` never shows the password; a client certificate
    or key without a CA is refused at construction.
    """

    user: str = ""
    password: str = field(default="", repr=False)  # repr never shows a secret
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    def __post_init__(self) -> None:
        key = tls_problem(self.tls_ca, self.tls_cert, self.tls_key)
        if key:
            raise ValueError(f"{key} given without tls_ca: TLS needs the CA that signed the server's certificate "
                             "(without it the connection would not be encrypted)")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for this account (None: plaintext, no CA configured)."""
        if not self.tls_ca:
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key or None)
        return ctx


@dataclass
class AccountConfig:
    """The keys every account section has: its password (literal only for local tests, else from a file or an
    environment variable; `resolve_secret` picks) and its TLS files (a certificate needs the CA too).

    The section as written in the TOML file (filled key by key, so not frozen, and with the password's
    sources); the services turn it into an `Account` once the secret is resolved.
    """

    password: str = field(default="", repr=False)  # repr never shows a secret
    password_file: str = ""
    password_env: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""


@dataclass
class MqttConfig(AccountConfig):
    host: str = "localhost"
    port: int = 1883
    client_id: str = "iotgw"
    topic_prefix: str = "iot"
    username: str = ""
    session_expiry: int = 86400
    # Messages the broker may have in flight to us before our PUBACKs (MQTT 5 Receive Maximum, 1..65535). Large,
    # so a broker's queue drains into the gateway instead of overflowing its queue limit (docs/configuration.md);
    # memory stays bounded by the spool writer's queue, and nothing is PUBACKed before the spool commit.
    receive_maximum: int = 65535
    keepalive: int = 10
    enabled: bool = True
    # Several gateways on one broker: each joins this MQTT 5 shared subscription group ($share/<group>/...), so
    # each reading goes to one of them. Members connect without a persistent session (docs/deployment.md).
    share_group: str = ""
    # Several brokers ("HOST:PORT", ...): the gateway connects to every one and acks each reading on the broker it
    # came from. Empty: the one broker of `host` and `port`.
    brokers: list[str] = field(default_factory=list)


@dataclass
class SerialPortConfig:
    port: str = ""
    baud: int = 115200
    site: str = "serial"


@dataclass
class SpoolConfig:
    path: str = "iotgw-spool.db"
    max_readings: int = 1_000_000
    group_commit_ms: int = 250  # the longest a reading waits for its group commit (and its ack)
    group_max: int = 500
    quarantine_max: int = 10_000
    quarantine_max_bytes: int = 16 * 1024 * 1024  # raw bytes, topics and details together; oldest evicted first
    resume_fraction: float = 0.9


@dataclass
class DatabaseConfig(AccountConfig):
    kind: str = "sqlite"
    servers: list[str] = field(default_factory=list)
    user: str = "iotgw"
    database: str = "iot"
    sqlite_path: str = "iotgw-readings.db"
    batch_size: int = 1000
    connect_timeout: float = 3.0
    retry_max_s: float = 5.0
    confirm_replica: bool = True
    # Replication-aware writer and reads (gateway.topology, gateway.client): see docs/configuration.md.
    io_timeout_s: float = 10.0  # read/write timeout per statement: a hung (frozen) server fails after this
    admin_user: str = "root"  # promotions write the epoch while the server is still read-only: needs admin
    admin_password: str = field(default="", repr=False)
    admin_password_file: str = ""
    admin_password_env: str = ""
    read_strategy: str = "round_robin"  # round_robin | weighted | least_lag
    read_max_lag_s: float = 0.0  # skip replicas lagging more than this (0: no limit)
    read_max_lag_trx: int = 0  # skip replicas this many transactions behind (0: no limit)
    read_fallback_primary: bool = False  # read from the primary when no replica is healthy
    read_shared_rotation: bool = False  # keep the rotation cursor in read_scaling.current_slave (shared)
    read_weights: list[str] = field(default_factory=list)  # "HOST:PORT=WEIGHT" for the weighted strategy


@dataclass
class HttpConfig:
    listen: str = "127.0.0.1:9108"
    token: str = field(default="", repr=False)
    token_file: str = ""
    token_env: str = ""
    enabled: bool = True


@dataclass
class HealthConfig:
    """Worker watching and what /healthz reports (docs/operations.md)."""

    check_interval_s: float = 0.2  # how often every worker thread is checked
    linger_s: float = 1.0  # after a worker died: /healthz answers "failing" this long before the shutdown starts
    exit_within_s: float = 10.0  # after a worker died the process has exited (non-zero) within this many seconds
    broker_drops_degraded_s: float = 600.0  # /healthz says "degraded" this long after the broker dropped messages
    max_device_statuses: int = 10_000  # collector nodes whose latest status is kept (least recent evicted)


@dataclass
class AckConfig:
    """When a collector is acknowledged (gateway.acks, docs/deployment.md "Ack modes")."""

    after: str = "spool"  # spool | database | replica
    poll_ms: int = 100  # database/replica: how often waiting streams are looked up (besides after each write)
    held_degraded_s: float = 30.0  # /healthz says "degraded" while a stream has waited this long for its ack


@dataclass
class LogConfig:
    level: str = "info"
    format: str = "text"


@dataclass
class Config:
    """The whole gateway configuration."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    serial: list[SerialPortConfig] = field(default_factory=list)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    ack: AckConfig = field(default_factory=AckConfig)
    failover: dict[str, Any] = field(default_factory=dict)  # validated by the failover monitor (ops)
    source: str = "<defaults>"


_SECTIONS = {"mqtt": MqttConfig, "spool": SpoolConfig, "database": DatabaseConfig, "http": HttpConfig,
             "log": LogConfig, "health": HealthConfig, "ack": AckConfig}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check `value` against the type of the dataclass default; ints are accepted for floats."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return list(value)
    return value


def _build(cls: type, table: Any, prefix: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table, got {table!r}")
    obj = cls()
    known = {f.name for f in fields(cls)}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key}: unknown key (known: {', '.join(sorted(known))})")
        setattr(obj, key, _coerce(f"{prefix}.{key}", value, getattr(obj, key)))
    return obj


def parse(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a Config from a parsed TOML document."""
    cfg = Config(source=source)
    for key, value in data.items():
        if key in _SECTIONS:
            setattr(cfg, key, _build(_SECTIONS[key], value, key))
        elif key == "serial":
            ports = value.get("port", []) if isinstance(value, dict) else value
            if not isinstance(ports, list):
                raise ConfigError("serial.port: expected an array of tables ([[serial.port]])")
            cfg.serial = [_build(SerialPortConfig, p, f"serial.port[{i}]") for i, p in enumerate(ports)]
        elif key == "failover":
            # Owned by the failover monitor (ops); validated there, kept raw here.
            if not isinstance(value, dict):
                raise ConfigError("failover: expected a table")
            cfg.failover = dict(value)
        else:
            raise ConfigError(f"{key}: unknown section (known: {', '.join(sorted([*_SECTIONS, 'serial', 'failover']))})")
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    if not 0 < cfg.mqtt.port < 65536:
        raise ConfigError(f"mqtt.port: {cfg.mqtt.port} is not a TCP port")
    if cfg.database.read_strategy not in ("round_robin", "weighted", "least_lag"):
        raise ConfigError(f"database.read_strategy: must be round_robin, weighted or least_lag, got {cfg.database.read_strategy!r}")
    if cfg.database.kind not in ("sqlite", "mysql"):
        raise ConfigError(f"database.kind: must be 'sqlite' or 'mysql', got {cfg.database.kind!r}")
    if cfg.database.kind == "mysql" and not cfg.database.servers:
        raise ConfigError("database.servers: at least one HOST:PORT is needed when database.kind = 'mysql'")
    for i, server in enumerate(cfg.database.servers):
        split_hostport(server, f"database.servers[{i}]")
    if not 1 <= cfg.mqtt.receive_maximum <= 65535:
        raise ConfigError(f"mqtt.receive_maximum: must be 1..65535 (MQTT 5 Receive Maximum), got {cfg.mqtt.receive_maximum}")
    if cfg.health.linger_s >= cfg.health.exit_within_s:
        raise ConfigError("health.linger_s: must be below health.exit_within_s")
    if cfg.spool.group_max < 1:
        raise ConfigError("spool.group_max: must be at least 1")
    if cfg.spool.max_readings < cfg.spool.group_max:
        raise ConfigError("spool.max_readings: must be at least spool.group_max")
    if not 0.1 <= cfg.spool.resume_fraction <= 1.0:
        raise ConfigError("spool.resume_fraction: must be between 0.1 and 1.0")
    if cfg.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level: must be debug, info, warning or error, got {cfg.log.level!r}")
    if cfg.log.format not in ("text", "json"):
        raise ConfigError(f"log.format: must be 'text' or 'json', got {cfg.log.format!r}")
    if (cfg.mqtt.tls_cert == "") != (cfg.mqtt.tls_key == ""):
        raise ConfigError("mqtt.tls_cert and mqtt.tls_key: give both or neither")
    for section in ("mqtt", "database"):  # a client certificate without a CA would silently connect in plaintext
        tls: AccountConfig = getattr(cfg, section)
        key = tls_problem(tls.tls_ca, tls.tls_cert, tls.tls_key)
        if key:
            raise ConfigError(f"{section}.{key}: set {section}.tls_ca as well (TLS is used only with a CA; "
                              "without it the connection would be plaintext)")
    for i, port in enumerate(cfg.serial):
        if not port.port:
            raise ConfigError(f"serial.port[{i}].port: a device path is required")
    split_hostport(cfg.http.listen, "http.listen")
    for i, broker in enumerate(cfg.mqtt.brokers):
        split_hostport(broker, f"mqtt.brokers[{i}]")
    if len(set(cfg.mqtt.brokers)) != len(cfg.mqtt.brokers):
        raise ConfigError("mqtt.brokers: a broker is listed twice")
    if any(c in cfg.mqtt.share_group for c in "/+#$ "):
        raise ConfigError(f"mqtt.share_group: a plain name without / + # $ or spaces, got {cfg.mqtt.share_group!r}")
    if cfg.ack.after not in ("spool", "database", "replica"):
        raise ConfigError(f"ack.after: must be 'spool', 'database' or 'replica', got {cfg.ack.after!r}")
    if cfg.ack.after == "replica" and cfg.database.kind != "mysql":
        raise ConfigError("ack.after: 'replica' needs [database] kind = \"mysql\" (a replicated topology)")
    if cfg.ack.poll_ms < 10:
        raise ConfigError(f"ack.poll_ms: must be at least 10, got {cfg.ack.poll_ms}")


def split_hostport(text: str, key: str = "server") -> tuple[str, int]:
    """Parse `HOST:PORT` (IPv6 as `[::1]:PORT`; port 0 lets the OS choose) with an error naming `key`."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def load(path: str | os.PathLike[str] | None) -> Config:
    """Load the TOML file at `path` (None: the built-in defaults)."""
    if path is None:
        return parse({}, "<defaults>")
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse(data, str(p))


def resolve_secret(section: str, obj: Any, name: str = "password") -> str:
    """Return a secret from `<name>_file`, `<name>_env` or the literal `<name>` key, in that order."""
    path = getattr(obj, f"{name}_file", "")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{section}.{name}_file: cannot read {path}: {exc.strerror}") from None
    env = getattr(obj, f"{name}_env", "")
    if env:
        if env not in os.environ:
            raise ConfigError(f"{section}.{name}_env: environment variable {env} is not set")
        return os.environ[env]
    return getattr(obj, name, "")
