"""The `iotgw` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iotgw")
def main() -> None:
    """iotgw: MQTT/serial sensor gateway with a durable spool and a replication-aware MySQL/MariaDB writer."""


def _register_subcommands() -> None:
    # Each part of the package contributes its own click group or command here, one line each.
    # --- subcommand registry (add one line per group; keep sorted) ---
    import gateway.ops.cli  # noqa: F401 - attaches setup/switchover/failover/monitor and `sandbox rebuild`
    from gateway.ops.groups_cli import group; main.add_command(group)  # noqa: E702, I001 - also attaches `topology errant|relay` (issue 5)
    from gateway.cli_core import check_config, db, demo, run, simulate, spool; [main.add_command(c) for c in (check_config, db, demo, run, simulate, spool)]  # noqa: E702, I001
    from gateway.sandbox.cli import sandbox; main.add_command(sandbox)  # noqa: E702, I001
    from gateway.topology.cli import query, topology; [main.add_command(c) for c in (query, topology)]  # noqa: E702, I001
    # --- end of registry ---


_register_subcommands()

if __name__ == "__main__":
    main()
