"""The `iotgw` command line: every command is registered here, explicitly, in one place.

Modules: `common` (config and server options, `run_operation`), `service` (run, check-config, db, spool,
simulate, demo), `topology` (show, promote, query), `failover` (setup, switchover, failover, monitor,
sandbox rebuild), `replication` (errant, relay, clone, sandbox add-replica), `groups` (HA groups), `devices`
(broker accounts and ACLs of the collectors), `broker` (check-broker). The sandbox
commands live with the sandbox (`gateway.sandbox.cli`), `iotgw status` with the status model
(`gateway.status.cli`). Nothing outside this package imports click for a command.
"""

from __future__ import annotations

import importlib
import os

import click
import pymysql

# What a user can cause (a bad value, an unreachable server, a refused operation): one line, exit code 1.
# Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError, pymysql.MySQLError)  # SandboxError is a RuntimeError

# Every top-level command, as "module:attribute". A command's module is imported only when the command is
# used, so `iotgw status` or `iotgw run` does not load the replication tools first (start-up time counts on
# a Raspberry Pi); `iotgw --help` loads them all.
COMMANDS: dict[str, str] = {
    "run": "gateway.cli.service:run",
    "check-config": "gateway.cli.service:check_config",
    "db": "gateway.cli.service:db",
    "spool": "gateway.cli.service:spool",
    "simulate": "gateway.cli.service:simulate",
    "demo": "gateway.cli.service:demo",
    "topology": "gateway.cli.topology:topology",
    "query": "gateway.cli.topology:query",
    "group": "gateway.cli.groups:group",
    "sandbox": "gateway.sandbox.cli:sandbox",
    "status": "gateway.status.cli:status",
    "check-broker": "gateway.cli.broker:check_broker",
    "devices": "gateway.cli.devices:devices",
}
# Commands that join a group defined elsewhere: the replication operations under `topology`, the node
# rebuild/add under `sandbox`.
ATTACHED: dict[str, tuple[str, ...]] = {
    "gateway.cli.topology:topology": (
        "gateway.cli.failover:setup", "gateway.cli.failover:switchover", "gateway.cli.failover:failover",
        "gateway.cli.failover:monitor", "gateway.cli.replication:errant", "gateway.cli.replication:relay",
        "gateway.cli.replication:clone_command"),
    "gateway.sandbox.cli:sandbox": ("gateway.cli.failover:rebuild", "gateway.cli.replication:add_replica_command"),
}


def load(ref: str) -> click.Command:
    """The command a "module:attribute" reference names, with the commands ATTACHED to it added."""
    module, _, attribute = ref.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    for sub in ATTACHED.get(ref, ()):
        command.add_command(load(sub))  # type: ignore[attr-defined] - ATTACHED names groups only
    return command


class Main(click.Group):
    """The top-level group: commands loaded on use from COMMANDS; every user-caused error ends as one
    `Error: …` line (IOTGW_TRACEBACK=1 shows it whole, for debugging)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        ref = COMMANDS.get(cmd_name)
        return load(ref) if ref is not None else None

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own ways to end: --help, Ctrl-C, usage errors (Exit and Abort are RuntimeErrors)
        except USER_ERRORS as exc:
            if os.environ.get("IOTGW_TRACEBACK"):
                raise
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise click.ClickException(text) from None


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iotgw")
def main() -> None:
    """iotgw: MQTT/serial sensor gateway with a durable spool and a replication-aware MySQL/MariaDB writer."""
