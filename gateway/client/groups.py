"""The HA-group client (`GroupClient`, behind `gateway.connect(group=…)`): connections by mode from a group
lookup (`gateway.ops.groups.GroupService`, asked over a gateway's HTTP API by `http_lookup`).

It caches the answer for the TTL, spreads reads by a smooth weighted rotation (3:1 weights give exactly 3 of
every 4 reads, evenly interleaved), and on `InterfaceError`/`OperationalError` drops the cache, asks again
(fresh) and retries a bounded number of times with a jittered backoff, so applications survive a failover.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pymysql

from gateway.client.retry import (
    RETRYABLE,
    SmoothWeighted,
    attempts,
    backoff_delay,
    close_quietly,
    refuse_read_only,
    transient,
)
from gateway.config import load, resolve_secret
from gateway.metrics import redact
from gateway.topology.conn import Credentials, credentials_from_config, open_connection

T = TypeVar("T")


def http_lookup(base_url: str, token: str | None = None, timeout: float = 2.0) -> Callable[[str, bool], dict[str, Any]]:
    """A lookup function for `GroupClient` that asks a gateway's HTTP API (token in the Authorization header).

    Errors name the URL without any secret: the token is never part of it.
    """

    def ask(name: str, fresh: bool) -> dict[str, Any]:
        params = {"name": name, **({"fresh": "1"} if fresh else {})}
        url = f"{base_url.rstrip('/')}/groups/lookup?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - our own URL
                return json.loads(resp.read())
        except OSError as exc:  # URLError, HTTPError, timeouts: the lookup is a dependency like a server

            detail = redact(str(exc)).replace(token, "<redacted>") if token else str(exc)
            raise pymysql.err.OperationalError(2003, f"group lookup {url} failed: {detail}") from None

    return ask


# -------------------------------------------------------------------------------------------- the client
@dataclass
class ClientStats:
    lookups: int = 0
    retries: int = 0
    max_attempts_used: int = 0
    errors: list[str] = field(default_factory=list)


class GroupClient:
    """Connections to a group's servers, by mode, from cached lookups; bounded retries on connection errors."""

    def __init__(self, lookup: Callable[[str, bool], dict[str, Any]], creds: Credentials, *,
                 database: str | None = None, ttl_s: float | None = None, attempts: int = 8,
                 backoff_s: float = 0.1, pool_size: int = 2) -> None:
        self._ask, self.creds, self.database = lookup, creds, database
        self.pool_size = pool_size  # idle connections kept per server for `run` (opening one costs 5-100 ms)
        self._idle: dict[str, list[pymysql.connections.Connection]] = {}
        self.ttl_s, self.attempts, self.backoff_s = ttl_s, attempts, backoff_s
        self._views: dict[str, tuple[float, dict[str, Any]]] = {}
        self._rotations: dict[str, SmoothWeighted] = {}
        self._lock = threading.Lock()
        self.stats = ClientStats()

    def view(self, group: str, fresh: bool = False) -> dict[str, Any]:
        """The group's lookup answer, from the cache while younger than its TTL."""
        with self._lock:
            hit = self._views.get(group)
        if hit is not None and not fresh:
            ttl = self.ttl_s if self.ttl_s is not None else float(hit[1].get("ttl_s", 5.0))
            if time.monotonic() - hit[0] < ttl:
                return hit[1]
        view = self._ask(group, fresh)
        self.stats.lookups += 1
        with self._lock:
            self._views[group] = (time.monotonic(), view)
        return view

    def drop(self, group: str) -> None:
        with self._lock:
            self._views.pop(group, None)

    def endpoint_for(self, group: str, mode: str, fresh: bool = False) -> str:
        view = self.view(group, fresh)
        if mode == "rw":
            if not view.get("primary"):
                raise pymysql.err.OperationalError(2003, f"group {group}: no primary ({view.get('primary_reason')})")
            return str(view["primary"])
        weights = {r["endpoint"]: int(r["weight"]) for r in view.get("readers", [])}
        if not weights:
            raise pymysql.err.OperationalError(2003, f"group {group}: no healthy reader ({view.get('skipped')})")
        with self._lock:
            rotation = self._rotations.setdefault(group, SmoothWeighted())
            return rotation.pick(weights)

    def _open(self, ep: str, mode: str, pooled: bool, **kwargs: Any) -> pymysql.connections.Connection:
        conn = self._take(ep) if pooled and not kwargs else None
        if conn is None:
            conn = open_connection(ep, self.creds, database=self.database, **kwargs)
        if mode == "rw":
            refuse_read_only(conn, ep, pymysql.err.OperationalError, "is read-only (a failover is under way)")
        return conn

    def _take(self, ep: str) -> pymysql.connections.Connection | None:
        with self._lock:
            idle = self._idle.get(ep)
            return idle.pop() if idle else None

    def _give(self, ep: str, conn: pymysql.connections.Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(ep, [])
            if len(idle) < self.pool_size:
                idle.append(conn)
                return
        close_quietly(conn)

    def _discard(self, ep: str) -> None:
        with self._lock:
            conns = self._idle.pop(ep, [])
        for c in conns:
            close_quietly(c)

    def close(self) -> None:
        """Close the idle connections kept for reuse."""
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            close_quietly(c)

    def run(self, group: str, mode: str, work: Callable[[pymysql.connections.Connection], T], **kwargs: Any) -> T:
        """Run `work(conn)` on a connection for `mode` (an idle one of that server is reused); on
        InterfaceError/OperationalError drop the cached answer, ask again and retry, at most `attempts` times
        in all. `work` must be safe to repeat (a commit whose reply was lost may have happened): use idempotent
        writes, and commit inside `work` (the connection goes back to the pool afterwards)."""
        return self._retry(group, mode, work, True, kwargs)

    def connect(self, group: str, mode: str = "ro", **kwargs: Any) -> pymysql.connections.Connection:
        """A connection for `mode`, retried like `run` while connecting; the caller owns (and closes) it."""
        return self._retry(group, mode, lambda conn: conn, False, kwargs)

    def _retry(self, group: str, mode: str, work: Callable[[pymysql.connections.Connection], T], close: bool,
               kwargs: dict[str, Any]) -> T:
        if mode not in ("ro", "rw"):
            raise ValueError(f"mode must be 'ro' or 'rw', not {mode!r}")
        last: Exception | None = None

        def before_retry(_attempt: int) -> None:
            self.stats.retries += 1
            self.drop(group)

        # Capped: 8 attempts span about 4-7 s, a failover's length.
        for attempt in attempts(self.attempts, before_retry, lambda n: backoff_delay(n - 1, self.backoff_s, 2.0)):
            try:
                ep = ""
                ep = self.endpoint_for(group, mode, fresh=attempt > 0)
                conn = self._open(ep, mode, pooled=close, **kwargs)
                try:
                    result = work(conn)
                except BaseException:
                    close_quietly(conn)  # in an unknown state: never reused
                    raise
                if close:
                    self._give(ep, conn)
                self.stats.max_attempts_used = max(self.stats.max_attempts_used, attempt + 1)
                return result
            except RETRYABLE as exc:
                if not transient(exc):
                    raise
                last = exc
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                if ep:
                    self._discard(ep)  # its other idle connections are as suspect as this one
        raise pymysql.err.OperationalError(2003, f"group {group}: no {mode} server after {self.attempts} attempts: "
                                                 f"{last}")


# ---------------------------------------------------------------------------- gateway.connect(group=…)
_clients: dict[tuple[Any, ...], GroupClient] = {}
_clients_lock = threading.Lock()


def connect_group(group: str, mode: str = "ro", *, config: Any = None, lookup: str | None = None,
                  token: str | None = None, user: str | None = None, password: str | None = None,
                  database: str | None = None, attempts: int = 8, **kwargs: Any) -> pymysql.connections.Connection:
    """What `gateway.connect(mode, group=…)` does: a connection to the group's primary (`rw`) or next reader
    (`ro`), from a lookup at `lookup` (a gateway's HTTP base URL; default: the config's `[http] listen`).

    One `GroupClient` per (lookup, account, database) is kept in this process, so the cached answer and the
    weighted rotation carry over from call to call.
    """
    if config is not None and not hasattr(config, "database"):
        config = load(config)
    if config is not None:
        creds = credentials_from_config(config.database)
        lookup = lookup or f"http://{config.http.listen}"
        token = token or resolve_secret("http", config.http, "token") or None
        database = database or config.database.database
    else:
        if not lookup:
            raise ValueError("connect(group=…) needs lookup='http://HOST:PORT' (a gateway's HTTP API) or config=…")
        creds = Credentials(user=user or "iotgw", password=password or "")
    key = (lookup, token, creds.user, creds.password, database, attempts)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = GroupClient(http_lookup(lookup, token), creds, database=database,
                                                 attempts=attempts)
    return client.connect(group, mode, **kwargs)
