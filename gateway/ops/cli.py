"""`iotgw topology setup|switchover|failover|monitor` and `iotgw sandbox rebuild NODE`.

The commands attach to the topology helper's `topology` group and the sandbox's `sandbox` group when this
module is imported (one line in `gateway/cli.py`'s registry). They find servers like every topology command
(`--servers`, `--config`, `--sandbox`, see `gateway.topology.cli.target_options`) and act with the admin account.
"""

from __future__ import annotations

import json
from typing import Any

import click

from gateway.topology.cli import resolve_target, target_options, topology


def _echo_steps(as_json: bool) -> Any:
    return None if as_json else (lambda m: click.echo(f"  {m}"))


def _exclude(target: Any, exclude: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(target.server(x) for x in exclude)


@topology.command()
@target_options
@click.option("--candidate", default=None, help="Promote this server (HOST:PORT or node name) instead of the best.")
@click.option("--exclude", multiple=True, help="Never promote this server (repeatable).")
@click.option("--force", is_flag=True, help="With --candidate: allow one that received less than the best.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for relay logs to be applied.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def failover(servers: str | None, config_path: str | None, sandbox_dir: str | None, candidate: str | None,
             exclude: tuple[str, ...], force: bool, dry_run: bool, timeout: float, as_json: bool) -> None:
    """The primary is dead: promote the most advanced replica, repoint the others, fence the old primary."""
    from gateway.ops.failover import FailoverError
    from gateway.ops.failover import failover as do_failover

    target = resolve_target(servers, config_path, sandbox_dir)
    try:
        result = do_failover(target.seeds, target.admin, exclude=_exclude(target, exclude),
                             candidate=target.server(candidate) if candidate else None, force=force,
                             dry_run=dry_run, apply_timeout=timeout, progress=_echo_steps(as_json or dry_run))
    except FailoverError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc), "plan": exc.plan.lines() if exc.plan else []},
                                  indent=2))
            raise SystemExit(1) from None
        for line in exc.plan.lines() if exc.plan else []:
            click.echo(f"  {line}")
        raise click.ClickException(f"failover refused: {exc}") from None
    cand = result.plan.candidate
    if as_json:
        click.echo(json.dumps({"ok": True, "dry_run": dry_run, "candidate": cand.endpoint if cand else None,
                               "new_primary": result.new_primary, "epoch": result.epoch or result.plan.epoch,
                               "steps": result.steps, "seconds": round(result.seconds, 3)}, indent=2))
    elif dry_run:
        click.echo("failover plan (dry run, nothing changed):")
        for line in result.steps:
            click.echo(f"  {line}")
    else:
        click.echo(f"{target.label(result.new_primary)} is the primary (epoch {result.epoch}, "
                   f"{result.seconds:.2f} s)")


def _repl_account(sandbox_dir: str | None, user: str | None, password: str | None) -> tuple[str, str]:
    """The replication account: given, from the sandbox, or IOTGW_REPL_USER / IOTGW_REPL_PASSWORD."""
    import os

    if sandbox_dir and not user:
        from gateway.sandbox import Sandbox

        account = Sandbox.load(sandbox_dir).endpoints()["mariadb"]["replication_user"]
        return account["user"], account["password"]
    return (user or os.environ.get("IOTGW_REPL_USER", "repl"),
            password if password is not None else os.environ.get("IOTGW_REPL_PASSWORD", ""))


@topology.command()
@target_options
@click.option("--primary", default=None, help="The server to make primary (default: the first one).")
@click.option("--repl-user", default=None, help="Replication account [default: $IOTGW_REPL_USER or repl].")
@click.option("--repl-password", default=None, help="Its password [default: $IOTGW_REPL_PASSWORD].")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each replica to catch up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def setup(servers: str | None, config_path: str | None, sandbox_dir: str | None, primary: str | None,
          repl_user: str | None, repl_password: str | None, timeout: float, as_json: bool) -> None:
    """Turn independent servers into a GTID replication topology; refuses with reasons if one is unfit."""
    from gateway.ops.setup import SetupError
    from gateway.ops.setup import setup as do_setup

    target = resolve_target(servers, config_path, sandbox_dir)
    user, password = _repl_account(sandbox_dir, repl_user, repl_password)
    chosen = target.server(primary) if primary else target.seeds[0]
    try:
        result = do_setup(target.seeds, chosen, target.admin, user, password, timeout=timeout,
                          progress=_echo_steps(as_json))
    except SetupError as exc:
        raise click.ClickException(f"setup refused: {exc}") from None
    if as_json:
        click.echo(json.dumps({"primary": result.primary, "replicas": result.replicas, "steps": result.steps,
                               "seconds": round(result.seconds, 3)}, indent=2))
    else:
        click.echo(f"{target.label(result.primary)} is the primary of {len(result.replicas)} replicas "
                   f"({result.seconds:.2f} s)")
