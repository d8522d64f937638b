"""`iotgw group create|add|remove|promote|lookup|list`: HA groups (see gateway.ops.groups).

Importing this module also attaches `iotgw topology errant|relay` (gateway.ops.replication_cli), so the CLI
registry needs one line for all of issue 5's commands.
"""

from __future__ import annotations

import click

import gateway.ops.replication_cli  # noqa: F401 - attaches `topology errant|relay`


@click.group()
def group() -> None:
    """HA groups: named sets of servers with weights and modes, looked up by clients."""
