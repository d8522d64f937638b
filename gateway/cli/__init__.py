"""The `iotgw` command line: every command is registered here, explicitly, in one place.

Modules: `common` (config and server options, `run_operation`), `service` (run, check-config, db, spool,
simulate, demo), `topology` (show, promote, query), `failover` (setup, switchover, failover, monitor,
sandbox rebuild), `replication` (errant, relay, clone, sandbox add-replica), `groups` (HA groups), `devices`
(broker accounts and ACLs of the collectors), `broker` (check-broker). The sandbox
commands live with the sandbox (`gateway.sandbox.cli`), `iotgw status` with the status model
(`gateway.status.cli`). Nothing outside this package imports click for a command.
"""

from __future__ import annotations

import os

import click
import pymysql

from gateway.cli import broker, devices, failover, groups, replication, service, topology
from gateway.sandbox import SandboxError
from gateway.sandbox.cli import sandbox
from gateway.status.cli import status

# What a user can cause (a bad value, an unreachable server, a refused operation): one line, exit code 1.
# Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError, pymysql.MySQLError, SandboxError)


class Main(click.Group):
    """The top-level group: every user-caused error ends as one `Error: …` line (IOTGW_TRACEBACK=1 shows it
    whole, for debugging)."""

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


REGISTRY: dict[click.Group, tuple[click.Command, ...]] = {
    main: (service.run, service.check_config, service.db, service.spool, service.simulate, service.demo,
           topology.topology, topology.query, groups.group, sandbox, status, broker.check_broker,
           devices.devices),
    topology.topology: (failover.setup, failover.switchover, failover.failover, failover.monitor,
                        replication.errant, replication.relay, replication.clone_command),
    sandbox: (failover.rebuild, replication.add_replica_command),
}
for parent, commands in REGISTRY.items():
    for command in commands:
        parent.add_command(command)
