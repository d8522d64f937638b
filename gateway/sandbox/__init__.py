"""Local test servers: MariaDB (one primary, GTID replicas) and Mosquitto, started and stopped by PID.

The one launcher for tests, benchmarks and the demo::

    from gateway.sandbox import Sandbox
    with Sandbox.up(tmp_path / "sb", replicas=2) as sb:
        conn = sb.connect(sb.primary_name(), user="iotgw")

See :class:`Sandbox` for the API and ``iotgw sandbox --help`` for the command line.
"""

from .core import BROKER, Sandbox, SandboxError
from .nodes import Node

__all__ = ["BROKER", "Node", "Sandbox", "SandboxError"]
