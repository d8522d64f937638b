"""`gateway.connect(mode="rw"|"ro")`: a PyMySQL connection to the right server of a replicated topology.

`rw` gives the primary by the epoch rule (the writable server named by the highest epoch), checked on the
new connection; `ro` gives the next healthy replica of the configured rotation. On `InterfaceError` or
`OperationalError` while connecting (a server died, a failover is under way) the topology is probed again
and the connection retried, a bounded number of times with a short jittered backoff.

A `Client` holds the topology cache and the rotation; `connect()` keeps one `Client` per configuration in
this process, so successive `connect(mode="ro")` calls walk the rotation instead of restarting it.
"""

from __future__ import annotations

import threading
from typing import Any

import pymysql

from gateway.client.groups import connect_group
from gateway.client.reads import LocalRotation, NoReadableServer, ReadSelector, SharedRotation, TopologySource
from gateway.client.retry import RETRYABLE, attempts, backoff_delay, refuse_read_only, transient
from gateway.config import load
from gateway.topology import analysis
from gateway.topology.conn import Credentials, credentials_from_config, open_connection


class NoServer(pymysql.err.OperationalError):
    """No server for this mode after every attempt (an OperationalError, as applications already catch)."""


class Client:
    """Connections by mode over one topology: the primary for `rw`, the read rotation for `ro`."""

    def __init__(self, servers: list[str], creds: Credentials, *, database: str | None = None,
                 strategy: str = "round_robin", max_lag_s: float | None = None, max_lag_trx: int | None = None,
                 fallback_primary: bool = False, shared_rotation: bool = False,
                 weights: dict[str, int] | None = None, refresh_s: float = 1.0, attempts: int = 3) -> None:
        self.creds, self.database, self.attempts = creds, database, attempts
        self.source = TopologySource(servers, creds, refresh_s=refresh_s)
        rotation = SharedRotation(creds) if shared_rotation else LocalRotation()
        self.selector = ReadSelector(self.source, strategy, max_lag_s=max_lag_s, max_lag_trx=max_lag_trx,
                                     fallback_primary=fallback_primary, weights=weights, rotation=rotation)

    @classmethod
    def from_config(cls, db: Any, **overrides: Any) -> Client:
        """A client for a `DatabaseConfig` (the `[database]` section)."""
        weights = {}
        for item in db.read_weights:
            server, _, weight = item.rpartition("=")
            weights[server] = int(weight)
        options: dict[str, Any] = dict(
            database=db.database, strategy=db.read_strategy, max_lag_s=db.read_max_lag_s or None,
            max_lag_trx=db.read_max_lag_trx or None, fallback_primary=db.read_fallback_primary,
            shared_rotation=db.read_shared_rotation, weights=weights)
        options.update(overrides)
        return cls(list(db.servers), credentials_from_config(db), **options)

    def endpoint_for(self, mode: str) -> str:
        """The server a `mode` connection would go to now (probing the topology if the cache is old)."""
        if mode == "ro":
            return self.selector.next().endpoint
        decision = analysis.writer_primary(self.source.snapshot())
        if decision.primary is None:
            raise NoServer(2003, f"no primary: {decision.reason}")
        return decision.primary.endpoint

    def connect(self, mode: str = "ro", **kwargs: Any) -> pymysql.connections.Connection:
        """Open a connection for `mode`; retries with a fresh topology on connection errors."""
        if mode not in ("ro", "rw"):
            raise ValueError(f"mode must be 'ro' or 'rw', not {mode!r}")
        last: Exception | None = None
        for _attempt in attempts(self.attempts, lambda _n: self.source.invalidate(),
                                 lambda n: backoff_delay(n, 0.1, float("inf"))):
            try:
                ep = self.endpoint_for(mode)
                conn = open_connection(ep, self.creds, database=self.database, **kwargs)
                if mode == "rw":
                    refuse_read_only(conn, ep, NoServer, "became read-only")
                return conn
            except (*RETRYABLE, NoReadableServer) as exc:
                if not transient(exc):
                    raise
                last = exc
        raise NoServer(2003, f"no {mode} server after {self.attempts} attempts: {last}")

    def close(self) -> None:
        self.selector.close()


_clients: dict[tuple, Client] = {}
_clients_lock = threading.Lock()


def connect(mode: str = "ro", *, config: Any = None, servers: list[str] | None = None, user: str | None = None,
            password: str | None = None, database: str | None = None, attempts: int = 3,
            group: str | None = None, lookup: str | None = None, token: str | None = None,
            **kwargs: Any) -> pymysql.connections.Connection:
    """A PyMySQL connection to the primary (`rw`) or the next healthy replica (`ro`).

    Give a loaded config (`gateway.config.load(path)`) or a path to one as `config`, or `servers`
    (HOST:PORT list) with `user`/`password`. Extra keyword arguments go to `pymysql.connect`.
    With `group`, the servers come from an HA group lookup (`lookup`: a gateway's HTTP base URL, default the
    config's `[http] listen`; `token` if it is protected): see `gateway.client.groups.connect_group`.
    """
    if group is not None:
        return connect_group(group, mode, config=config, lookup=lookup, token=token, user=user, password=password,
                             database=database, attempts=max(attempts, 8), **kwargs)
    if config is not None and not hasattr(config, "database"):
        config = load(config)
    if config is not None:
        db = config.database
        key: tuple = ("config", getattr(config, "source", ""), tuple(db.servers), db.user, db.database)
        factory = lambda: Client.from_config(db, attempts=attempts)  # noqa: E731
    else:
        if not servers:
            raise ValueError("give config=… or servers=[…]")
        creds = Credentials(user=user or "iotgw", password=password or "")
        key = ("servers", tuple(servers), creds.user, database)
        factory = lambda: Client(list(servers), creds, database=database, attempts=attempts)  # noqa: E731
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = factory()
    return client.connect(mode, **kwargs)
