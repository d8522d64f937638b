"""`iotgw sandbox ...`: start, inspect, break and stop local MariaDB/Mosquitto servers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .core import MAX_BROKERS, Sandbox, SandboxError

_DIR_HELP = "Sandbox folder [default: ./sandbox, or $IOTGW_SANDBOX if set]."


def _dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dir",
        "directory",
        type=click.Path(file_okay=False, path_type=Path),
        default="sandbox",
        envvar="IOTGW_SANDBOX",
        show_envvar=True,
        help=_DIR_HELP,
    )(func)


def _load(directory: Path) -> Sandbox:
    try:
        return Sandbox.load(directory)
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@click.group()
def sandbox() -> None:
    """Local test servers: MariaDB (one primary, GTID replicas) and Mosquitto brokers.

    Every server runs on a free 127.0.0.1 port with its data in one folder (--dir, default ./sandbox,
    or $IOTGW_SANDBOX). The same code serves tests, benchmarks and the demo. Faults (kill, freeze, stop,
    restart, ...) name a node as `status` shows it: db1, db2, ..., broker, broker2, ...
    """


@sandbox.command()
@_dir_option
@click.option("--replicas", type=click.IntRange(0, 20), default=2, show_default=True, help="Replicas of db1.")
@click.option("--no-replication", is_flag=True, help="Independent read-only servers, no replication set up.")
@click.option("--tls", "use_tls", is_flag=True, help="Broker on TLS only, with a password; MariaDB servers offer TLS too (one CA, in DIR/tls).")
@click.option("--no-broker", is_flag=True, help="Do not start Mosquitto.")
@click.option("--brokers", type=click.IntRange(1, MAX_BROKERS), default=1, show_default=True,
              help="Independent Mosquitto brokers to start: broker, broker2, ... (redundant brokers).")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoints as JSON (and nothing else).")
def up(directory: Path, replicas: int, no_replication: bool, use_tls: bool, no_broker: bool, brokers: int,
       as_json: bool) -> None:
    """Start the servers and wait until they are ready (replicas caught up).

    The JSON has "broker" (the first broker, as before) and "brokers" (every broker, with its name).
    """
    if no_broker and brokers != 1:
        raise click.UsageError("--brokers and --no-broker contradict each other")
    progress = None if as_json else click.echo
    try:
        sb = Sandbox.up(
            directory,
            replicas=replicas,
            broker=not no_broker,
            replication=not no_replication,
            tls=use_tls,
            progress=progress,
            brokers=brokers,
        )
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _print_json(sb.endpoints())
    else:
        _echo_status(sb.status())


@sandbox.command()
@_dir_option
def down(directory: Path) -> None:
    """Stop every server of the sandbox (by PID; data and logs stay in the folder)."""
    sb = _load(directory)
    sb.down()
    click.echo(f"stopped sandbox in {sb.directory}")


@sandbox.command()
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of nodes.")
def status(directory: Path, as_json: bool) -> None:
    """Show each node's live role, port and PID."""
    rows = _load(directory).status()
    if as_json:
        _print_json(rows)
    else:
        _echo_status(rows)


def _echo_status(rows: list[dict[str, Any]]) -> None:
    click.echo(f"{'NODE':8} {'ROLE':11} {'PORT':>6} {'PID':>8}  {'GTID':20} SOURCE")
    for row in rows:
        click.echo(
            f"{row['name']:8} {row['role']:11} {row['port']:>6} {row['pid'] or '-':>8}  "
            f"{row['gtid_current_pos'] or '-':20} {row.get('source') or ''}"
        )


def _fault(verb: str, doc: str) -> None:
    @sandbox.command(name=verb, help=doc)
    @_dir_option
    @click.argument("node")
    def command(directory: Path, node: str) -> None:
        sb = _load(directory)
        try:
            getattr(sb, verb)(node)
        except SandboxError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{verb}: {node} is now {sb.role(node)}")


_fault("kill", "SIGKILL a node (a crash).")
_fault("freeze", "SIGSTOP a node (a hang).")
_fault("thaw", "SIGCONT a frozen node.")
_fault("stop", "SIGTERM a node and wait until it has exited (a clean shutdown).")
_fault("restart", "Start a node again with its data; a returning primary reopens writes only if nobody took over.")
