"""iotgw: the sensor-network gateway that never loses a reading.

Package layout (one module per idea, data flowing one way ingest -> spool -> sink):
protocol, ingest/, spool, sinks/, topology/, client/, ops/, sandbox/, cli, config, metrics (see docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["connect", "__version__"]


def __getattr__(name: str) -> Any:
    """`gateway.connect` (the public API: a connection to the right server) is loaded on first use, so that
    importing any gateway module (the CLI, the firmware tests) does not load the whole client stack."""
    if name == "connect":
        from gateway.client import connect  # lazy: see above

        return connect
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
