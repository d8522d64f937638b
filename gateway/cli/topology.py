"""`iotgw topology show|promote` and `iotgw query` (servers found as `gateway.cli.common.target_options` says)."""

from __future__ import annotations

import json
from typing import Any

import click
import pymysql

from gateway.cli.common import Target, resolve_target, target_options
from gateway.client import Client
from gateway.topology import analysis
from gateway.topology.discovery import discover
from gateway.topology.model import Snapshot, split_endpoint
from gateway.topology.promote import PromotionError
from gateway.topology.promote import promote as do_promote


# --------------------------------------------------------------------------------------- topology show
def snapshot_report(snap: Snapshot, target: Target | None = None) -> dict[str, Any]:
    """The JSON form of `topology show`: the writer's decision and one entry per server."""
    decision = analysis.writer_primary(snap)
    roles = analysis.roles(snap, decision)
    health = {h.server.endpoint: h for h in analysis.replica_health(snap, decision.primary)}
    servers = []
    for s in snap.servers:
        h = health.get(s.endpoint)
        parent = analysis.parent(snap, s)
        rep = s.replication
        servers.append({
            "endpoint": s.endpoint, "name": target.label(s.endpoint) if target else s.endpoint,
            "role": roles[s.endpoint], "reachable": s.reachable, "error": s.error, "server_id": s.server_id,
            "read_only": s.read_only, "flavor": s.flavor, "version": s.version,
            "gtid_binlog": s.gtid_binlog, "gtid_applied": s.gtid_applied,
            "source": parent.endpoint if parent else (rep.source if rep else None),
            "io_running": rep.io_running if rep else None, "sql_running": rep.sql_running if rep else None,
            "last_error": (rep.last_io_error or rep.last_sql_error) if rep else "",
            "lag_s": h.lag_s if h else None, "lag_trx": h.lag_trx if h else None,
            "healthy": (h.healthy if h else (s.reachable and roles[s.endpoint] == "primary")),
            "problems": list(h.reasons) if h else ([] if s.reachable else [s.error]),
            "epoch": s.epoch.epoch if s.epoch else None, "blackhole": s.blackhole,
        })
    return {"primary": decision.primary.endpoint if decision.primary else None, "epoch": decision.epoch,
            "decision": decision.reason, "adopt": decision.adopt,
            "refused": [{"endpoint": e, "reason": r} for e, r in decision.refused], "servers": servers}


def _render(report: dict[str, Any], snap: Snapshot, target: Target) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

    console = Console()
    roles = {s["endpoint"]: s["role"] for s in report["servers"]}
    top = Tree(f"[bold]topology[/] (epoch {report['epoch']}: {report['decision']})")

    def add(branch: Tree, node: analysis.TreeNode) -> None:
        ep = node.server.endpoint
        sub = branch.add(f"{target.label(ep)} [cyan]{roles.get(ep, '?')}[/] id {node.server.server_id}"
                         + (_relay_lag(report, ep) if roles.get(ep) == "relay" else ""))
        for child in node.children:
            add(sub, child)

    for root in analysis.tree(snap):
        add(top, root)
    for s in report["servers"]:
        if not s["reachable"]:
            top.add(f"[red]{s['name']} unreachable[/]: {s['error']}")
    console.print(top)
    table = Table("host", "port", "role", "state", "GTID position", "lag", "health")
    for s in report["servers"]:
        host, port = split_endpoint(s["endpoint"])
        if not s["reachable"]:
            state = "down"
        elif s["io_running"] is not None:
            state = f"IO {s['io_running']} / SQL {'Yes' if s['sql_running'] else 'No'}"
        else:
            state = "read-only" if s["read_only"] else "writable"
        lag = "-" if s["lag_s"] is None and s["lag_trx"] is None else f"{s['lag_s'] if s['lag_s'] is not None else '?'} s / {s['lag_trx']} trx"
        position = s["gtid_applied"] if s["io_running"] is not None else s["gtid_binlog"]
        health = "OK" if s["healthy"] else ("[red]" + "; ".join(p for p in s["problems"] if p) + "[/]"
                                            if s["problems"] else "-")
        table.add_row(host, str(port), s["role"], state, position or "-", lag, health)
    console.print(table)
    for r in report["refused"]:
        console.print(f"[yellow]refused as primary[/]: {target.label(r['endpoint'])}: {r['reason']}")


def _relay_lag(report: dict[str, Any], ep: str) -> str:
    """The hop a BLACKHOLE relay adds: its own lag behind the primary (its leaves lag at least that much)."""
    s = next(x for x in report["servers"] if x["endpoint"] == ep)
    lag_s = "?" if s["lag_s"] is None else s["lag_s"]
    return f" (BLACKHOLE, no rows; adds {lag_s} s / {s['lag_trx'] if s['lag_trx'] is not None else '?'} trx of lag)"


@click.group()
def topology() -> None:
    """Inspect and change the replication topology (discovery, health, promotion)."""


@topology.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def show(servers: str | None, config_path: str | None, sandbox_dir: str | None, as_json: bool) -> None:
    """Print the replication tree and a health table (host, port, role, state, GTID, lag, health).

    Exit code 1 when no server answers (the report still lists each one with its error)."""
    target = resolve_target(servers, config_path, sandbox_dir)
    snap = discover(target.seeds, target.writer)
    report = snapshot_report(snap, target)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _render(report, snap, target)
    if not snap.reachable:
        if not as_json:
            click.echo("Error: no server answered: " + "; ".join(f"{s.endpoint}: {s.error}" for s in snap.servers),
                       err=True)
        raise SystemExit(1)


@topology.command()
@target_options
@click.argument("server")
@click.option("--no-repoint", is_flag=True, help="Do not move the other replicas under the new primary.")
@click.option("--force", is_flag=True, help="Skip the candidate checks (binlog, relay, most advanced).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for relay logs to be applied.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def promote(servers: str | None, config_path: str | None, sandbox_dir: str | None, server: str, no_repoint: bool,
            force: bool, timeout: float, as_json: bool) -> None:
    """Make SERVER the primary by hand: fence, drain, publish a new epoch, open writes, repoint the rest."""

    target = resolve_target(servers, config_path, sandbox_dir)
    try:
        result = do_promote(target.seeds, target.server(server), target.admin, repoint=not no_repoint,
                            apply_timeout=timeout, check=not force,
                            progress=None if as_json else (lambda m: click.echo(f"  {m}")))
    except PromotionError as exc:
        raise click.ClickException(f"promotion refused: {exc}") from None
    if as_json:
        click.echo(json.dumps({"new_primary": result.new_primary, "epoch": result.epoch, "steps": result.steps,
                               "seconds": round(result.seconds, 3)}, indent=2))
    else:
        click.echo(f"{target.label(result.new_primary)} is the primary (epoch {result.epoch}, "
                   f"{result.seconds:.2f} s)")


# --------------------------------------------------------------------------------------- query
@click.command()
@target_options
@click.option("--mode", type=click.Choice(["ro", "rw"]), default="ro", show_default=True,
              help="ro: the next healthy replica; rw: the primary.")
@click.option("--database", default=None, help="Default database (default: the config's, or none).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.argument("sql")
def query(servers: str | None, config_path: str | None, sandbox_dir: str | None, mode: str, database: str | None,
          as_json: bool, sql: str) -> None:
    """Run SQL on the server `gateway.connect(mode=…)` picks, and say which one answered."""

    target = resolve_target(servers, config_path, sandbox_dir)
    if target.config is not None:
        client = Client.from_config(target.config.database, database=database or target.database)
    else:
        client = Client(target.seeds, target.writer, database=database)

    try:
        with client.connect(mode) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@hostname, @@port, @@server_id")
            _host, port, server_id = cur.fetchone()
            cur.execute(sql)
            columns = [c[0] for c in cur.description] if cur.description else []
            rows = [list(r) for r in cur.fetchall()] if columns else []
            if mode == "rw":
                conn.commit()
            affected = cur.rowcount
    except pymysql.MySQLError as exc:
        raise click.ClickException(f"{exc}") from None
    finally:
        client.close()
    server = {"server_id": server_id, "port": port}
    if as_json:
        click.echo(json.dumps({"server": server, "columns": columns, "rows": rows, "rowcount": affected},
                              default=str, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if columns:
        table = Table(*columns)
        for r in rows:
            table.add_row(*("NULL" if v is None else str(v) for v in r))
        console.print(table)
    else:
        console.print(f"{affected} row(s) affected")
    console.print(f"[dim]answered by server {server_id} on port {port} ({mode})[/]")
