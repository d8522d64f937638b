"""Run a gateway as a separate process (tests, benchmarks): write its config, start it, stop it by PID.

Uses the sandbox's process launcher, so every process the suite starts is started and signalled one way.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

from gateway.sandbox import Sandbox
from gateway.sandbox.process import (
    Launched,
    is_ours,
    kill_process,
    send_signal,
    start_process,
    stop_process,
    wait_until,
)
from gateway.spool import read_stats


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(doc: dict[str, Any]) -> str:
    """Write our config shape as TOML: tables of scalars/lists, and `serial.port` as an array of tables."""
    out = []
    for section, table in doc.items():
        if section == "serial":
            for port in table.get("port", []):
                out.append("[[serial.port]]")
                out.extend(f"{k} = {_toml_value(v)}" for k, v in port.items())
                out.append("")
            continue
        out.append(f"[{section}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
        out.append("")
    return "\n".join(out)


def sandbox_config(sb: Sandbox, workdir: Path, *, prefix: str = "iot", client_id: str = "iotgw",
                   database: bool | dict[str, Any] = True, **overrides: dict[str, Any]) -> dict[str, Any]:
    """A gateway config for a sandbox: its broker, its primary as the database, files under `workdir`.

    `database`: True (the sandbox's primary), False (a SQLite file in `workdir`), or a dict of `[database]`
    keys applied over the sandbox's primary (the name is both the switch and the config section)."""
    ep = sb.endpoints()
    broker = ep["broker"]
    doc: dict[str, Any] = {
        "mqtt": {"host": broker["host"], "port": broker["port"], "client_id": client_id, "topic_prefix": prefix},
        "spool": {"path": str(workdir / "spool.db")},
        "http": {"listen": "127.0.0.1:0"},
        "log": {"level": "info"},
    }
    if database:
        primary = sb.primary_name() or "db1"
        node = sb.nodes[primary]
        doc["database"] = {"kind": "mysql", "servers": [f"{node.host}:{node.port}"], "user": "iotgw",
                           "password": ep["mariadb"]["users"]["iotgw"], "retry_max_s": 1.0}
    else:
        doc["database"] = {"kind": "sqlite", "sqlite_path": str(workdir / "readings.db")}
    if isinstance(database, dict):
        doc["database"].update(database)
    for section, values in overrides.items():
        doc.setdefault(section, {}).update(values)
    return doc


class GatewayProcess:
    """`iotgw run --config FILE` as a child process; the config path is its PID marker."""

    def __init__(self, workdir: str | os.PathLike[str], config: dict[str, Any], env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.config_path = self.workdir / "gateway.toml"
        self.config_path.write_text(dump_toml(config))
        self.log_path = self.workdir / "gateway.log"
        self.env = env or {}
        self.proc: Launched | None = None

    def start(self, extra_env: dict[str, str] | None = None) -> GatewayProcess:
        env = {**os.environ, **self.env, **(extra_env or {})}
        argv = [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config_path)]
        self.proc = start_process(argv, self.log_path, cwd=self.workdir, env=env)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and is_ours(self.proc.pid, str(self.config_path))

    def wait_exit(self, timeout: float = 30) -> None:
        wait_until(lambda: not self.alive(), timeout, what="the gateway to exit")

    def kill(self) -> None:
        if self.proc:
            kill_process(self.proc.pid, str(self.config_path))

    def terminate(self, timeout: float = 60) -> None:
        if self.proc:
            stop_process(self.proc.pid, str(self.config_path), timeout)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        send_signal(self.proc.pid, str(self.config_path), sig)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()


def launch_gateways(sb: Sandbox, n: int, workdir: str | os.PathLike[str], *, brokers: list[str] | None = None,
                    client_id_prefix: str = "iotgw", database: bool | dict[str, Any] = True,
                    env: dict[str, str] | None = None,
                    start: bool = True, **overrides: dict[str, Any]) -> list[GatewayProcess]:
    """Start ``n`` gateways on a sandbox, each in its own folder ``workdir/gw1``, ``gw2``, ... with its own spool.

    Gateway ``i`` (from 1) has client id ``<client_id_prefix>-<i>``, its HTTP server on a free port, and
    connects to broker ``brokers[(i - 1) % len(brokers)]`` (default: every broker of the sandbox, in
    order), so two gateways on a two-broker sandbox use one broker each. With ``database`` every gateway
    writes to the sandbox's primary through the replication-aware writer (idempotent: one row per reading
    identity; a dict adds ``[database]`` keys); without, each writes its own SQLite file in its folder. ``overrides`` are config sections
    applied to every gateway (as in :func:`sandbox_config`). With ``start`` the gateways are started
    (not waited for); if one fails to start, those already started are stopped. Stop them with
    ``terminate()`` or ``kill()`` each.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    endpoints = {b["name"]: b for b in sb.endpoints()["brokers"]}
    names = list(brokers) if brokers is not None else list(endpoints)
    unknown = [name for name in names if name not in endpoints]
    if not names or unknown:
        raise ValueError(f"brokers {unknown or names} not in the sandbox (it has: {', '.join(endpoints) or 'none'})")
    gateways: list[GatewayProcess] = []
    for i in range(1, n + 1):
        folder = Path(workdir).resolve() / f"gw{i}"  # absolute: each gateway runs in its own folder
        folder.mkdir(parents=True, exist_ok=True)
        broker = endpoints[names[(i - 1) % len(names)]]
        sections = {key: dict(value) for key, value in overrides.items()}
        sections["mqtt"] = {"host": broker["host"], "port": broker["port"], **sections.get("mqtt", {})}
        config = sandbox_config(sb, folder, client_id=f"{client_id_prefix}-{i}", database=database, **sections)
        gateways.append(GatewayProcess(folder, config, env=env))
    if start:
        try:
            for gateway in gateways:
                gateway.start()
        except BaseException:
            for gateway in gateways:
                gateway.terminate()
            raise
    return gateways


def spool_depth(spool_path: str | os.PathLike[str]) -> int:
    """Readings still in a gateway's spool (read from its file)."""
    return read_stats(spool_path).depth


def http_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until truthy (the sandbox's wait_until, re-exported for tests)."""
    return wait_until(predicate, timeout, interval, what)


__all__ = ["GatewayProcess", "dump_toml", "http_json", "launch_gateways", "sandbox_config", "spool_depth", "wait_for"]
