"""The instance model: what one server is and reports, and a topology snapshot as a plain value.

A probe records what a server said in a `RawObservation` (variables, the replica-status row, the replica
hosts, the epoch row), in the server's own vocabulary. The dialect turns it into a `ServerState` with one
vocabulary for both flavours. Snapshots are stored and reloaded in the raw form, so a JSON file recorded on
MariaDB or written from MySQL 8 output goes through the same parsing as a live probe, and the analysis
functions (`gateway.topology.analysis`) take the parsed `Snapshot` and return decisions without servers.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# IO-thread states on the way to "Yes": "Connecting" before the TCP connection, and MariaDB's "Preparing"
# while connected and still handshaking (checking the source's version, registering). A stopped thread says "No".
IO_STARTING = ("Connecting", "Preparing")


def normalise_host(host: str) -> str:
    """One spelling per loopback host, so `localhost:3306` and `127.0.0.1:3306` are the same server."""
    host = (host or "").strip().strip("[]").lower()
    return "127.0.0.1" if host in ("localhost", "") else host


def endpoint(host: str, port: int | str) -> str:
    """`HOST:PORT` in the normalised spelling."""
    return f"{normalise_host(host)}:{int(port)}"


def split_endpoint(ep: str) -> tuple[str, int]:
    """The host and port of `HOST:PORT`."""
    host, _, port = ep.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass
class RawObservation:
    """What one probe of one server returned, verbatim (values as JSON-friendly strings and numbers)."""

    endpoint: str
    reachable: bool
    error: str = ""
    flavor: str = "mariadb"
    variables: dict[str, Any] = field(default_factory=dict)
    replica_status: dict[str, Any] | None = None
    replica_hosts: list[dict[str, Any]] = field(default_factory=list)
    epoch: dict[str, Any] | None = None
    blackhole_tables: int = 0
    observed_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RawObservation:
        return cls(**d)


@dataclass(frozen=True)
class Replication:
    """A replica's link to its source, in flavour-neutral words."""

    source_host: str
    source_port: int
    source_server_id: int  # 0 until the IO thread has connected once
    io_running: str  # "Yes", "No", or one of IO_STARTING
    sql_running: bool
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""
    seconds_behind: int | None = None  # NULL on the server when a thread is stopped
    received_gtid: str = ""  # MariaDB Gtid_IO_Pos / MySQL Retrieved_Gtid_Set
    using_gtid: bool = True
    sql_delay: int = 0

    @property
    def source(self) -> str:
        return endpoint(self.source_host, self.source_port)

    @property
    def running(self) -> bool:
        return self.io_running == "Yes" and self.sql_running

    @property
    def io_starting(self) -> bool:
        """The IO thread is on its way to "Yes": connecting, or connected and still handshaking."""
        return self.io_running in IO_STARTING


@dataclass(frozen=True)
class Epoch:
    """The highest row of `iotgw_meta.epoch` on a server: who was promoted, in which epoch."""

    epoch: int
    server_id: int
    host: str
    port: int


@dataclass(frozen=True)
class ServerState:
    """One server as the analysis functions see it."""

    endpoint: str
    reachable: bool
    error: str = ""
    flavor: str = "mariadb"
    server_id: int = 0
    server_uuid: str = ""
    version: str = ""
    read_only: bool = False
    has_binlog: bool = False
    log_replica_updates: bool = False
    report_endpoint: str = ""  # report_host:report_port, the name replicas are listed under
    gtid_binlog: str = ""  # what this server's binlog holds (MariaDB gtid_binlog_pos, MySQL gtid_executed)
    gtid_applied: str = ""  # what it applied as a replica (MariaDB gtid_slave_pos, MySQL gtid_executed)
    replication: Replication | None = None
    replica_hosts: tuple[tuple[int, str], ...] = ()  # (server id, endpoint) as listed by the server
    epoch: Epoch | None = None
    blackhole: bool = False  # a relay on the BLACKHOLE engine: holds no rows, never promoted

    @property
    def is_replica(self) -> bool:
        return self.replication is not None

    @property
    def writable(self) -> bool:
        return self.reachable and not self.read_only


@dataclass(frozen=True)
class Snapshot:
    """Every server found by one discovery, at one time. A plain value: analysis functions take it."""

    servers: tuple[ServerState, ...]
    taken_at: float = 0.0
    raw: tuple[RawObservation, ...] = ()

    def get(self, ep: str) -> ServerState | None:
        """The server known under `ep` (its probe address or its reported address)."""
        for s in self.servers:
            if ep in (s.endpoint, s.report_endpoint):
                return s
        return None

    def by_server_id(self, server_id: int) -> ServerState | None:
        for s in self.servers:
            if s.reachable and s.server_id == server_id:
                return s
        return None

    @property
    def reachable(self) -> tuple[ServerState, ...]:
        return tuple(s for s in self.servers if s.reachable)

    def to_json(self) -> str:
        """The raw observations as JSON: reloading re-parses them exactly as a live probe would."""
        return json.dumps({"format": "iotgw-topology-raw/1", "taken_at": self.taken_at,
                           "servers": [r.to_dict() for r in self.raw]}, indent=2, default=str)
