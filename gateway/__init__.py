"""iotgw: the sensor-network gateway that never loses a reading.

Package layout (one module per idea, data flowing one way ingest -> spool -> sink):
protocol, ingest/, spool, sinks/, topology/, client/, ops/, sandbox/, cli, config, metrics (see docs/architecture.md).
"""

__version__ = "0.1.0"

from gateway.client import connect  # noqa: E402 - the public API: gateway.connect(mode="ro"|"rw")

__all__ = ["connect", "__version__"]
