"""`iotgw group create|add|remove|promote|lookup|list`: HA groups (see gateway.ops.groups).

The registry lives on the topology found with `--servers`/`--config`/`--sandbox` (written on its primary and
replicated), or on a separate server given with `--registry HOST:PORT` (same admin account).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import Target, resolve_target, target_options
from gateway.cli.failover import _repl_account
from gateway.client.groups import http_lookup
from gateway.ops.groups import GroupError, GroupService, Registry, promote_in_group
from gateway.ops.switchover import SwitchoverError


def registry_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--registry", default=None,
                        help="HOST:PORT of a separate registry server (default: the topology itself).")(func)
    return target_options(func)


def _registry(servers: str | None, config_path: str | None, sandbox_dir: str | None,
              registry: str | None) -> tuple[Any, Target]:
    target = resolve_target(servers, config_path, sandbox_dir)
    if registry:
        return Registry([target.server(registry)], target.admin, separate=True), target
    return Registry(target.seeds, target.admin), target


def _run(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except GroupError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def group() -> None:
    """HA groups: named sets of servers with weights and modes, looked up by clients."""


@group.command()
@registry_options
@click.argument("name")
@click.option("--description", default="", help="What the group is for.")
def create(servers: str | None, config_path: str | None, sandbox_dir: str | None, registry: str | None,
           name: str, description: str) -> None:
    """Create the empty group NAME."""
    reg, _ = _registry(servers, config_path, sandbox_dir, registry)
    _run(lambda: reg.create(name, description))
    click.echo(f"group {name} created")


@group.command()
@registry_options
@click.argument("name")
@click.argument("server")
@click.option("--weight", default=1, show_default=True, type=click.IntRange(min=0), help="Share of reads.")
@click.option("--mode", type=click.Choice(["rw", "ro", "offline"]), default="rw", show_default=True,
              help="rw: may be primary; ro: reads only; offline: given to nobody.")
def add(servers: str | None, config_path: str | None, sandbox_dir: str | None, registry: str | None, name: str,
        server: str, weight: int, mode: str) -> None:
    """Add SERVER to group NAME (or change its weight and mode)."""
    reg, target = _registry(servers, config_path, sandbox_dir, registry)
    ep = target.server(server)
    _run(lambda: reg.add(name, ep, weight, mode))
    click.echo(f"{target.label(ep)} in group {name}: weight {weight}, mode {mode}")


@group.command()
@registry_options
@click.argument("name")
@click.argument("server")
def remove(servers: str | None, config_path: str | None, sandbox_dir: str | None, registry: str | None, name: str,
           server: str) -> None:
    """Remove SERVER from group NAME."""
    reg, target = _registry(servers, config_path, sandbox_dir, registry)
    ep = target.server(server)
    _run(lambda: reg.remove(name, ep))
    click.echo(f"{target.label(ep)} removed from group {name}")


@group.command("list")
@registry_options
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
def list_groups(servers: str | None, config_path: str | None, sandbox_dir: str | None, registry: str | None,
                as_json: bool) -> None:
    """List the groups and their members."""
    reg, target = _registry(servers, config_path, sandbox_dir, registry)
    groups = _run(reg.list)
    if as_json:
        click.echo(json.dumps({"groups": [g.to_dict() for g in groups]}, indent=2))
        return
    for g in groups:
        click.echo(f"{g.name}: {g.description}")
        for m in g.members:
            click.echo(f"  {target.label(m.endpoint)} weight {m.weight} mode {m.mode}")
    if not groups:
        click.echo("no groups")


@group.command()
@registry_options
@click.argument("name")
@click.option("--url", default=None, help="Ask a gateway's HTTP API (http://HOST:PORT) instead of looking here.")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the HTTP API token (or set IOTGW_HTTP_TOKEN); never on the command line.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def lookup(servers: str | None, config_path: str | None, sandbox_dir: str | None, registry: str | None, name: str,
           url: str | None, token_file: str | None, as_json: bool) -> None:
    """What a client of group NAME is told: the primary, the readers with weights, the TTL."""
    token = Path(token_file).read_text().strip() if token_file else os.environ.get("IOTGW_HTTP_TOKEN") or None
    if url:
        view = http_lookup(url, token)(name, True)
        target = None
    else:
        reg, target = _registry(servers, config_path, sandbox_dir, registry)
        view = _run(lambda: GroupService(reg, target.writer).lookup(name, fresh=True))
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    label = target.label if target else (lambda e: e)
    click.echo(f"group {name}: primary {label(view['primary']) if view['primary'] else 'NONE'} (epoch {view['epoch']})")
    for r in view["readers"]:
        click.echo(f"  reader {label(r['endpoint'])} weight {r['weight']}")
    for s in view["skipped"]:
        click.echo(f"  skipped {label(s['endpoint'])}: {s['why']}")


@group.command()
@registry_options
@click.argument("name")
@click.argument("server")
@click.option("--demote-old", is_flag=True, help="Make the old primary a replica of the new one.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the candidate.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def promote(servers: str | None, config_path: str | None, sandbox_dir: str | None, registry: str | None,
            name: str, server: str, demote_old: bool, timeout: float, as_json: bool) -> None:
    """Make SERVER (an `rw` member of NAME) the primary: the operations' switchover, applied to the group."""
    reg, target = _registry(servers, config_path, sandbox_dir, registry)
    repl = _repl_account(sandbox_dir, None, None)
    try:
        result = promote_in_group(reg, name, target.server(server), target.admin, demote_old=demote_old,
                                  repl=repl, timeout=timeout,
                                  progress=None if as_json else (lambda m: click.echo(f"  {m}")))
    except (GroupError, SwitchoverError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"old_primary": result.old_primary, "new_primary": result.new_primary,
                               "epoch": result.epoch, "steps": result.steps}, indent=2))
    else:
        click.echo(f"group {name}: {target.label(result.new_primary)} is the primary (epoch {result.epoch})")
