"""`iotgw topology setup|switchover|failover|monitor` and `iotgw sandbox rebuild NODE`.

Registered under `topology` and `sandbox` by the registry in `gateway/cli/__init__.py`. They find servers like
every topology command (`--servers`, `--config`, `--sandbox`, see `gateway.cli.common.target_options`) and act
with the admin account.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import echo_steps, resolve_target, run_operation, target_options
from gateway.cli.topology import show, snapshot_report
from gateway.ops.clone import CloneError
from gateway.ops.failover import FailoverError
from gateway.ops.failover import failover as do_failover
from gateway.ops.monitor import Monitor, MonitorConfig
from gateway.ops.setup import SetupError
from gateway.ops.setup import setup as do_setup
from gateway.ops.switchover import SwitchoverError
from gateway.ops.switchover import switchover as do_switchover
from gateway.sandbox import Sandbox, SandboxError
from gateway.sandbox.rebuild import rebuild_node


def _exclude(target: Any, exclude: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(target.server(x) for x in exclude)


@click.command()
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
    target = resolve_target(servers, config_path, sandbox_dir)
    try:
        result = do_failover(target.seeds, target.admin, exclude=_exclude(target, exclude),
                             candidate=target.server(candidate) if candidate else None, force=force,
                             dry_run=dry_run, apply_timeout=timeout, progress=echo_steps(as_json or dry_run))
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


def repl_account_options(user_help: str = "Replication account") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--repl-user`, `--repl-password-env NAME` and `--repl-password-file PATH` (a password never goes on the
    command line: any local user can read another's argv). The command receives `repl_user` and the resolved
    `repl_password` (None when neither option is given: `$IOTGW_REPL_PASSWORD` then applies)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, repl_password_env: str | None, repl_password_file: str | None, **kwargs: Any) -> Any:
            return fn(*args, repl_password=_secret_option(repl_password_env, repl_password_file), **kwargs)

        run = click.option("--repl-password-file", default=None, type=click.Path(dir_okay=False),
                           help="File holding its password (first line).")(run)
        run = click.option("--repl-password-env", default=None, metavar="NAME",
                           help="Environment variable holding its password [default: IOTGW_REPL_PASSWORD].")(run)
        return click.option("--repl-user", default=None, help=f"{user_help} [default: $IOTGW_REPL_USER or repl].")(run)

    return decorate


def _secret_option(env: str | None, path: str | None) -> str | None:
    if path:
        try:
            lines = Path(path).read_text().splitlines()
            return lines[0] if lines else ""
        except OSError as exc:
            raise click.ClickException(f"--repl-password-file: cannot read {path}: {exc.strerror}") from None
    if env:
        if env not in os.environ:
            raise click.ClickException(f"--repl-password-env: environment variable {env} is not set")
        return os.environ[env]
    return None


def _repl_account(sandbox_dir: str | None, user: str | None, password: str | None) -> tuple[str, str]:
    """The replication account: given, from the sandbox, or IOTGW_REPL_USER / IOTGW_REPL_PASSWORD."""
    if sandbox_dir and not user:
        account = Sandbox.load(sandbox_dir).endpoints()["mariadb"]["replication_user"]
        return account["user"], account["password"]
    return (user or os.environ.get("IOTGW_REPL_USER", "repl"),
            password if password is not None else os.environ.get("IOTGW_REPL_PASSWORD", ""))


@click.command()
@target_options
@click.option("--primary", default=None, help="The server to make primary (default: the first one).")
@repl_account_options()
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each replica to catch up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def setup(servers: str | None, config_path: str | None, sandbox_dir: str | None, primary: str | None,
          repl_user: str | None, repl_password: str | None, timeout: float, as_json: bool) -> None:
    """Turn independent servers into a GTID replication topology; refuses with reasons if one is unfit."""
    target = resolve_target(servers, config_path, sandbox_dir)
    user, password = _repl_account(sandbox_dir, repl_user, repl_password)
    chosen = target.server(primary) if primary else target.seeds[0]
    run_operation(
        lambda: do_setup(target.seeds, chosen, target.admin, user, password, timeout=timeout,
                         progress=echo_steps(as_json)),
        as_json=as_json, refused=(SetupError,), what="setup refused",
        to_json=lambda r: {"primary": r.primary, "replicas": r.replicas, "steps": r.steps,
                           "seconds": round(r.seconds, 3)},
        to_text=lambda r: f"{target.label(r.primary)} is the primary of {len(r.replicas)} replicas ({r.seconds:.2f} s)")


@click.command()
@target_options
@click.option("--new-primary", required=True, help="The replica to promote (HOST:PORT or node name).")
@click.option("--demote-old", is_flag=True, help="Make the old primary a replica of the new one (current_pos).")
@repl_account_options("Replication account for --demote-old")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the candidate to catch up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no health table).")
@click.pass_context
def switchover(ctx: click.Context, servers: str | None, config_path: str | None, sandbox_dir: str | None,
               new_primary: str, demote_old: bool, repl_user: str | None, repl_password: str | None, timeout: float,
               as_json: bool) -> None:
    """Planned change of primary: fence and drain the old one, promote X, repoint; rolls back on error."""
    target = resolve_target(servers, config_path, sandbox_dir)
    run_operation(
        lambda: do_switchover(target.seeds, target.server(new_primary), target.admin, demote_old=demote_old,
                              repl=_repl_account(sandbox_dir, repl_user, repl_password), timeout=timeout,
                              progress=echo_steps(as_json)),
        as_json=as_json, refused=(SwitchoverError,), what="switchover refused",
        to_json=lambda r: {"old_primary": r.old_primary, "new_primary": r.new_primary, "epoch": r.epoch,
                           "steps": r.steps, "seconds": round(r.seconds, 3)},
        to_text=lambda r: f"{target.label(r.new_primary)} is the primary (epoch {r.epoch}, {r.seconds:.2f} s)")
    if as_json:
        return
    ctx.invoke(show, servers=servers, config_path=config_path, sandbox_dir=sandbox_dir, as_json=False)


@click.command(name="rebuild")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="sandbox", envvar="IOTGW_SANDBOX",
              show_envvar=True, help="Sandbox folder [default: ./sandbox, or $IOTGW_SANDBOX if set].")
@click.option("--donor", default=None, help="Copy from this node (default: the first healthy replica).")
@click.argument("node")
def rebuild(directory: str, donor: str | None, node: str) -> None:
    """Rebuild NODE as an empty replica with a new server id, cloned (logical dump) from a healthy replica."""
    try:
        sb = Sandbox.load(directory)
        rebuild_node(sb, node, donor, progress=lambda m: click.echo(f"  {m}"))
    except (SandboxError, CloneError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rebuild: {node} is now {sb.role(node)} (server id {sb.node(node).server_id})")



def _health_table(monitor: Any, target: Any) -> Any:
    """The live view: the health table of the last snapshot and the monitor's recent events."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text


    table = Table("server", "role", "state", "GTID position", "lag", "health", title="iotgw topology monitor")
    if monitor.snapshot is not None:
        for s in snapshot_report(monitor.snapshot, target)["servers"]:
            state = "down" if not s["reachable"] else (
                f"IO {s['io_running']} / SQL {'Yes' if s['sql_running'] else 'No'}" if s["io_running"] is not None
                else ("read-only" if s["read_only"] else "writable"))
            lag = "-" if s["lag_s"] is None else f"{s['lag_s']} s / {s['lag_trx']} trx"
            health = "OK" if s["healthy"] else "; ".join(p for p in s["problems"] if p) or "-"
            table.add_row(s["name"], s["role"], state, (s["gtid_applied"] if s["io_running"] is not None
                                                        else s["gtid_binlog"]) or "-", lag, health)
    lines = [f"checks {monitor.checks}, failed checks in a row {monitor.fails}, failovers {len(monitor.failovers)}"]
    lines += [f"{time.strftime('%H:%M:%S', time.localtime(e.at))} {e.kind}: {e.message}" for e in monitor.events[-8:]]
    return Group(table, Text("\n".join(lines)))


@click.command()
@target_options
@click.option("--interval", default=1.0, show_default=True, help="Seconds between checks.")
@click.option("--failcount", default=3, show_default=True, help="Failed checks in a row before the primary is dead.")
@click.option("--block", "block_s", default=60.0, show_default=True,
              help="Seconds after an automatic failover during which no other one happens (anti-flap).")
@click.option("--no-rejoin", is_flag=True, help="Do not rejoin returning old primaries (they are still fenced).")
@click.option("--pre-hook", default="", help="Command run before a failover (env IOTGW_OLD_PRIMARY).")
@click.option("--post-hook", default="", help="Command run after (IOTGW_OLD_PRIMARY, IOTGW_NEW_PRIMARY, IOTGW_EPOCH).")
@click.option("--mqtt", default="", help="HOST:PORT of a broker for a retained message on each topology change.")
@click.option("--mqtt-topic", default="iotgw/topology", show_default=True)
@click.option("--metrics-port", type=int, default=0, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@repl_account_options("Replication account for rejoining")
@click.option("--console", is_flag=True, help="Show the live health table (otherwise: log lines, daemon style).")
@click.option("--max-checks", type=int, default=0, help="Stop after this many checks (0: run until stopped).")
def monitor(servers: str | None, config_path: str | None, sandbox_dir: str | None, interval: float, failcount: int,
            block_s: float, no_rejoin: bool, pre_hook: str, post_hook: str, mqtt: str, mqtt_topic: str,
            metrics_port: int, repl_user: str | None, repl_password: str | None, console: bool,
            max_checks: int) -> None:
    """Automatic failover daemon: detect a dead primary (confirmed by the replicas), fail over, fence, rejoin."""
    import logging
    import signal
    import threading


    target = resolve_target(servers, config_path, sandbox_dir)
    cfg = MonitorConfig(interval=interval, failcount=failcount, block_s=block_s, rejoin=not no_rejoin,
                        repl=_repl_account(sandbox_dir, repl_user, repl_password), pre_hook=pre_hook,
                        post_hook=post_hook, mqtt=mqtt, mqtt_topic=mqtt_topic)
    if not console:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mon = Monitor(target.seeds, target.admin, cfg)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=mon.metrics_registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if max_checks:
        original = mon.check

        def counted() -> None:
            original()
            if mon.checks >= max_checks:
                stop.set()

        mon.check = counted  # type: ignore[method-assign]
    if not console:
        try:
            mon.run(stop)
        except KeyboardInterrupt:
            pass
        return
    from rich.live import Live

    worker = threading.Thread(target=mon.run, args=(stop,), daemon=True)
    worker.start()
    try:
        with Live(_health_table(mon, target), refresh_per_second=4) as live:
            while worker.is_alive():
                worker.join(0.25)
                live.update(_health_table(mon, target))
    except KeyboardInterrupt:
        stop.set()
        worker.join(10)
