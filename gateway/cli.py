"""The `iotgw` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iotgw")
def main() -> None:
    """iotgw: MQTT/serial sensor gateway with a durable spool and a replication-aware MySQL/MariaDB writer."""


def _register_subcommands() -> None:
    """Each part of the package contributes its own commands; imported here so `iotgw --help` lists them all."""
    from gateway.cli_core import check_config, db, demo, run, simulate, spool
    from gateway.ops import cli as _ops_cli  # noqa: F401 - attaches setup/switchover/failover/monitor, sandbox rebuild
    from gateway.ops.groups_cli import group  # also attaches topology errant|relay|clone and sandbox add-replica
    from gateway.sandbox.cli import sandbox
    from gateway.status.cli import status  # the status page's model in the terminal
    from gateway.topology.cli import query, topology

    for command in (check_config, db, demo, group, query, run, sandbox, simulate, spool, status, topology):
        main.add_command(command)


_register_subcommands()

if __name__ == "__main__":
    main()
