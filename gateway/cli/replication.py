"""`iotgw topology errant check|fix`, `topology relay add|remove`, `topology clone`, `sandbox add-replica`.

Registered by the registry in `gateway/cli/__init__.py`. Servers are found like every topology command (`--servers`, `--config`, `--sandbox`) and the
admin account acts: reading binlogs, `SET SESSION sql_log_bin=0`, `RESET MASTER` and `CHANGE MASTER` need it.
"""

from __future__ import annotations

import json

import click

from gateway.cli.common import echo_steps, resolve_target, run_operation, target_options
from gateway.cli.failover import _repl_account, repl_account_options
from gateway.ops import errant as e
from gateway.ops import errant_repair as repair
from gateway.ops.clone import CloneError, clone
from gateway.ops.relay import RelayError, add_relay, clone_refusal, remove_relay, restore_default_engine, target_rows
from gateway.sandbox import Sandbox, SandboxError
from gateway.sandbox.add import add_replica
from gateway.topology import analysis
from gateway.topology.discovery import discover


@click.group()
def errant() -> None:
    """Errant transactions: GTIDs a replica has that the primary never had (check, fix)."""


@errant.command("check")
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def errant_check(servers: str | None, config_path: str | None, sandbox_dir: str | None, as_json: bool) -> None:
    """List each replica's errant GTIDs and explain them from its binlog. Exit code 1 if any exist."""
    target = resolve_target(servers, config_path, sandbox_dir)
    reports = repair.check(discover(target.seeds, target.admin), target.admin)
    if as_json:
        click.echo(json.dumps({"errant": [r.to_dict() for r in reports]}, indent=2))
    elif not reports:
        click.echo("no errant transactions: every replica holds only what the primary has")
    for r in reports if not as_json else ():
        f = r.finding
        click.echo(f"{target.label(f.endpoint)} (server {f.server_id}): errant {', '.join(f.gtids)} "
                   f"(compared with {f.reference})")
        for t in r.transactions:
            click.echo(f"  {t.gtid} at {t.file}:{t.start}: {t.kind}")
        if r.error:
            click.echo(f"  {r.error}")
    if reports:
        raise SystemExit(1)


@errant.command("fix")
@target_options
@click.argument("server")
@click.option("--method", type=click.Choice(["auto", "inject", "clean"]), default="auto", show_default=True,
              help="inject: no-op under the errant GTID on the primary; clean: the replica forgets it; "
                   "auto: inject when strict mode allows it, else clean.")
@click.option("--revert", is_flag=True, help="Undo the errant row changes on the replica first (mariadb-binlog "
              "--flashback, replayed with sql_log_bin=0): for data that was never meant to exist.")
@click.option("--dry-run", is_flag=True, help="Explain and print the statements; change nothing.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the replica to catch up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def errant_fix(servers: str | None, config_path: str | None, sandbox_dir: str | None, server: str, method: str,
               revert: bool, dry_run: bool, timeout: float, as_json: bool) -> None:
    """Repair SERVER's errant transactions; refuses (exit 1) a repair that would hide diverged rows."""
    target = resolve_target(servers, config_path, sandbox_dir)
    snap = discover(target.seeds, target.admin)
    try:
        result = repair.fix(snap, target.server(server), target.admin, method=method, revert=revert, dry_run=dry_run,
                       wait_timeout=timeout, progress=echo_steps(as_json))
    except e.ErrantError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc)}, indent=2))
            raise SystemExit(1) from None
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for sql in result.sql:
        click.echo(f"  SQL: {sql}")
    click.echo(f"{target.label(result.server)}: {result.method} "
               + ("planned (dry run)" if dry_run else "done: no errant transactions left"))


@click.group()
def relay() -> None:
    """BLACKHOLE relays: a replica that passes the binlog on to leaves and holds no rows (add, remove)."""


@relay.command("add")
@target_options
@click.argument("server")
@click.option("--leaf", "leaves", multiple=True, help="A replica to move under the relay (repeatable).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each leaf to catch up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def relay_add(servers: str | None, config_path: str | None, sandbox_dir: str | None, server: str,
              leaves: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """Make SERVER a BLACKHOLE relay (tables altered with sql_log_bin=0) and move each --leaf under it."""
    target = resolve_target(servers, config_path, sandbox_dir)
    run_operation(
        lambda: add_relay(target.seeds, target.server(server), [target.server(x) for x in leaves], target.admin,
                          timeout=timeout, progress=echo_steps(as_json)),
        as_json=as_json, refused=(RelayError,),
        to_json=lambda r: {"relay": r.relay, "moved": r.moved, "converted": r.converted, "steps": r.steps},
        to_text=lambda r: f"{target.label(r.relay)} is a relay with {len(r.moved)} leaf/leaves moved under it")


@relay.command("remove")
@target_options
@click.argument("server")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each leaf to catch up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def relay_remove(servers: str | None, config_path: str | None, sandbox_dir: str | None, server: str,
                 timeout: float, as_json: bool) -> None:
    """Move every leaf of relay SERVER back under the relay's source, one by one (GTID positioning)."""
    target = resolve_target(servers, config_path, sandbox_dir)
    run_operation(
        lambda: remove_relay(target.seeds, target.server(server), target.admin, timeout=timeout,
                             progress=echo_steps(as_json)),
        as_json=as_json, refused=(RelayError,),
        to_json=lambda r: {"relay": r.relay, "moved": r.moved, "steps": r.steps},
        to_text=lambda r: f"{target.label(r.relay)}: {len(r.moved)} leaf/leaves moved back")


@click.command("clone")
@target_options
@click.option("--donor", required=True, help="The server to copy from (a replica, so the primary is not loaded).")
@click.option("--target", "target_server", required=True, help="The server to provision (holds no data).")
@click.option("--force", is_flag=True, help="Clone even though the target holds rows (they are dropped).")
@repl_account_options()
@click.option("--timeout", default=300.0, show_default=True, help="Seconds for the dump, the load and catching up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def clone_command(servers: str | None, config_path: str | None, sandbox_dir: str | None, donor: str,
                  target_server: str, force: bool, repl_user: str | None, repl_password: str | None, timeout: float,
                  as_json: bool) -> None:
    """Provision TARGET as a new replica from DONOR's data (dump with its GTID position), then catch up."""
    import time


    target = resolve_target(servers, config_path, sandbox_dir)
    donor_ep, target_ep = target.server(donor), target.server(target_server)
    snap = discover([*target.seeds, donor_ep, target_ep], target.admin)
    why = clone_refusal(snap, snap.get(donor_ep), snap.get(target_ep))
    if not why and not force:
        full = target_rows(target_ep, target.admin)
        if full:
            why = f"{target_ep} holds rows in {', '.join(full)}: cloning drops them (use --force if that is meant)"
    if why:
        raise click.ClickException(f"clone refused: {why}")
    primary = analysis.writer_primary(snap).primary
    assert primary is not None
    started = time.monotonic()
    # A former relay: InnoDB must be the default again before its new SQL thread starts (it takes the default).
    was_relay = restore_default_engine(target_ep, target.admin)
    try:
        steps = clone(donor_ep, target_ep, primary.endpoint, target.admin,
                      _repl_account(sandbox_dir, repl_user, repl_password), timeout=timeout, progress=echo_steps(as_json))
    except CloneError as exc:
        raise click.ClickException(f"clone failed: {exc}") from None
    if was_relay:
        steps.append(f"{target_ep}: default engine InnoDB again (it was a relay; fix its config too)")
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"donor": donor_ep, "target": target_ep, "primary": primary.endpoint, "steps": steps,
                               "seconds": round(seconds, 3)}, indent=2))
    else:
        click.echo(f"{target.label(target_ep)} cloned from {target.label(donor_ep)} and caught up ({seconds:.1f} s)")


@click.command("add-replica")
@click.option("--dir", "directory", default="sandbox", show_default=True, type=click.Path(file_okay=False),
              envvar="IOTGW_SANDBOX", help="The sandbox folder.")
@click.option("--donor", default=None, help="Node to copy from (default: the first healthy replica).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def add_replica_command(directory: str, donor: str | None, as_json: bool) -> None:
    """Start one more server, clone a replica's data onto it and make it a replica of the primary."""
    try:
        sb = Sandbox.load(directory)
        name, steps = add_replica(sb, donor, progress=echo_steps(as_json))
    except (SandboxError, CloneError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"name": name, "port": sb.node(name).port, "steps": steps}, indent=2))
    else:
        click.echo(f"{name} is a replica on {sb.endpoint(name)}")
