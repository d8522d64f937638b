"""What every `iotgw` command shares: finding the config and the servers, and running an operation.

`run_operation` is the one way a command reports: JSON (`--json`) or text, exit code 0 on success and 1 on a
refusal or failure, and every error one clean line (`Error: …`) naming the cause, never a traceback.

Every topology command finds its servers the same way (`target_options`): `--servers HOST:PORT[,…]` with
credentials from the environment (IOTGW_DB_USER / IOTGW_DB_PASSWORD, IOTGW_DB_ADMIN_USER /
IOTGW_DB_ADMIN_PASSWORD), `--config FILE` (the `[database]` section), or `--sandbox DIR` for a sandbox made by
`iotgw sandbox up`. A single server is named `HOST:PORT` or, in a sandbox, by its node name (db2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from gateway import config as config_mod
from gateway.config import Config, ConfigError, load
from gateway.sandbox import Sandbox, SandboxError
from gateway.topology.conn import Credentials, credentials_from_config
from gateway.topology.model import endpoint, split_endpoint

T = TypeVar("T")


def load_config(path: str | None) -> Config:
    """Load the config for a command, turning a ConfigError into a clean CLI error."""
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None


config_option = click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
                             envvar="IOTGW_CONFIG", help="TOML config file (env IOTGW_CONFIG). Without it: "
                             "broker localhost:1883, spool and readings in SQLite files in this folder.")


@dataclass
class Target:
    """Where the servers are and which accounts to use."""

    seeds: list[str]
    writer: Credentials
    admin: Credentials
    names: dict[str, str]  # sandbox node name -> endpoint
    database: str = "iot"
    config: Any = None

    def server(self, name: str) -> str:
        """`HOST:PORT`, or a sandbox node name, as an endpoint."""
        if name in self.names:
            return self.names[name]
        try:
            return endpoint(*split_endpoint(name))
        except ValueError:
            raise click.BadParameter(f"{name!r} is neither HOST:PORT nor a node name "
                                     f"({', '.join(self.names) or 'no sandbox given'})") from None

    def label(self, ep: str) -> str:
        for name, e in self.names.items():
            if e == ep:
                return f"{name} ({ep})"
        return ep


def target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--servers`, `--config`, `--sandbox`: add to every command that talks to the topology."""
    func = click.option("--sandbox", "sandbox_dir", type=click.Path(file_okay=False), default=None,
                        help="A sandbox folder made by `iotgw sandbox up`.")(func)
    func = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                        help="Config file: servers and accounts from its [database] section.")(func)
    func = click.option("--servers", default=None, help="HOST:PORT[,HOST:PORT…]; accounts from IOTGW_DB_* variables.")(func)
    return func


def resolve_target(servers: str | None, config_path: str | None, sandbox_dir: str | None) -> Target:
    """Build the Target from whichever of the three ways was given (exactly one)."""
    given = [x for x in (servers, config_path, sandbox_dir) if x]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --servers, --config, --sandbox")
    if sandbox_dir:
        try:
            sb = Sandbox.load(sandbox_dir)
        except SandboxError as exc:
            raise click.ClickException(str(exc)) from None
        names = {n: sb.endpoint(n) for n in sb.db_names()}
        users = sb.endpoints()["mariadb"]
        writer = users["writer"]
        return Target(list(names.values()), Credentials(writer["user"], writer["password"]),
                      Credentials("root", users["users"].get("root", "")), names)
    if config_path:
        try:
            cfg = load(config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        if not cfg.database.servers:
            raise click.ClickException(f"{config_path}: [database] servers is empty")
        return Target(list(cfg.database.servers), credentials_from_config(cfg.database),
                      credentials_from_config(cfg.database, admin=True), {}, cfg.database.database, cfg)
    env = os.environ
    seeds = [s.strip() for s in (servers or "").split(",") if s.strip()]
    try:
        seeds = [endpoint(*split_endpoint(s)) for s in seeds]
    except ValueError:
        raise click.BadParameter(f"--servers: expected HOST:PORT[,HOST:PORT…], got {servers!r}") from None
    return Target(seeds, Credentials(env.get("IOTGW_DB_USER", "iotgw"), env.get("IOTGW_DB_PASSWORD", "")),
                  Credentials(env.get("IOTGW_DB_ADMIN_USER", "root"), env.get("IOTGW_DB_ADMIN_PASSWORD", "")), {})


def echo_steps(as_json: bool) -> Callable[[str], None] | None:
    """Progress lines for text output (None for JSON: the steps are in the document)."""
    return None if as_json else (lambda m: click.echo(f"  {m}"))


def run_operation(action: Callable[[], T], *, as_json: bool, to_json: Callable[[T], dict[str, Any]],
                  to_text: Callable[[T], str], refused: tuple[type[Exception], ...] = (),
                  what: str = "") -> T:
    """Run `action`; print its result as JSON or text (exit code 0). An exception of `refused` becomes exit
    code 1 with one line, `Error: {what}: {reason}`."""
    try:
        result = action()
    except refused as exc:
        raise click.ClickException(f"{what}: {exc}" if what else str(exc)) from None
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2))
    else:
        click.echo(to_text(result))
    return result
