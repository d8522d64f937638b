"""iotgw: the sensor-network gateway that never loses a reading.

Package layout (one module per idea, data flowing one way ingest -> spool -> sink):
protocol, ingest/, spool, sinks/, topology/, ops/, reads, sandbox/, cli, config, metrics.
"""

__version__ = "0.1.0"
