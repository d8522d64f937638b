"""Live discovery: probe servers and follow replication links from any seed to the whole topology.

A probe asks one server what it is (`RawObservation`); discovery probes the seeds, then every source and
every listed replica they name, wave after wave, in parallel with bounded timeouts. `SHOW SLAVE HOSTS` keeps
listing a dead replica for a while, so every listed server is probed before anyone trusts it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymysql
import pymysql.cursors

from gateway.topology.conn import Credentials, dialect_of, open_connection
from gateway.topology.dialect import META_SCHEMA
from gateway.topology.model import RawObservation, Snapshot, endpoint, split_endpoint
from gateway.topology.snapshots import snapshot_from_raw

MAX_SERVERS = 64  # a bound on the walk: a topology larger than this is not what this tool is for

# MySQL error numbers that mean "no epoch here yet" rather than "cannot read".
_NO_TABLE = (1049, 1146)  # unknown database, unknown table


def read_epoch(cur: Any) -> dict[str, Any] | None:
    """The highest epoch row on the connected server as a dict (None if the schema or table does not exist).

    Works with a plain or a DictCursor.
    """
    try:
        cur.execute(f"SELECT epoch, server_id, host, port FROM `{META_SCHEMA}`.epoch ORDER BY epoch DESC LIMIT 1")
    except pymysql.err.ProgrammingError as exc:
        if exc.args[0] in _NO_TABLE:
            return None
        raise
    row = cur.fetchone()
    if not row:
        return None
    return dict(row) if isinstance(row, dict) else dict(zip(("epoch", "server_id", "host", "port"), row, strict=True))


class ProbeConnections:
    """Open probe connections kept between discoveries (opening one costs 30-60 ms on a busy machine).

    A connection is taken out while in use, so concurrent discoveries never share one.
    """

    def __init__(self) -> None:
        self._conns: dict[str, pymysql.connections.Connection] = {}
        self._lock = threading.Lock()

    def take(self, ep: str) -> pymysql.connections.Connection | None:
        with self._lock:
            return self._conns.pop(ep, None)

    def give_back(self, ep: str, conn: pymysql.connections.Connection) -> None:
        with self._lock:
            extra = self._conns.get(ep)
            self._conns[ep] = conn
        if extra is not None:
            _close(extra)

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            _close(conn)


def _close(conn: pymysql.connections.Connection) -> None:
    try:
        conn.close()
    except Exception:  # already broken: nothing to release
        pass


def probe(ep: str, creds: Credentials, cache: ProbeConnections | None = None) -> RawObservation:
    """Ask one server what it is. Any failure gives an unreachable observation with the error text.

    With a `cache`, a kept connection is reused; if it fails (the server restarted), one fresh try follows.
    """
    conn = cache.take(ep) if cache is not None else None
    if conn is not None:
        raw, ok = _probe_on(ep, creds, conn)
        if ok:
            cache.give_back(ep, conn)  # type: ignore[union-attr]
            return raw
        _close(conn)
    try:
        # A probe is a handful of tiny queries: a server that does not answer within the connect timeout
        # is hung (SIGSTOP, overload) and reported unreachable instead of stalling the whole discovery.
        conn = open_connection(ep, creds, cursorclass=pymysql.cursors.DictCursor, io_timeout=creds.connect_timeout)
    except (pymysql.MySQLError, OSError) as exc:
        return RawObservation(endpoint=ep, reachable=False, error=_describe(exc), observed_at=time.time())
    raw, ok = _probe_on(ep, creds, conn)
    if ok and cache is not None:
        cache.give_back(ep, conn)
    else:
        _close(conn)
    return raw


def _probe_on(ep: str, creds: Credentials, conn: pymysql.connections.Connection) -> tuple[RawObservation, bool]:
    started = time.time()
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            dialect = dialect_of(cur)
            cur.execute(dialect.variables_sql())
            variables = {k: _plain(v) for k, v in cur.fetchone().items()}
            cur.execute(dialect.replica_status_sql)
            status = cur.fetchone()
            cur.execute(dialect.replica_hosts_sql)
            hosts = [{k: _plain(v) for k, v in r.items()} for r in cur.fetchall()]
            epoch = read_epoch(cur)
            cur.execute(*dialect.blackhole_tables_sql())
            blackhole = int(next(iter(cur.fetchone().values())))
    except (pymysql.MySQLError, OSError) as exc:
        return RawObservation(endpoint=ep, reachable=False, error=_describe(exc), observed_at=started), False
    return RawObservation(
        endpoint=ep, reachable=True, flavor=dialect.name, variables=variables,
        replica_status={k: _plain(v) for k, v in status.items()} if status else None,
        replica_hosts=hosts, epoch={k: _plain(v) for k, v in epoch.items()} if epoch else None,
        blackhole_tables=blackhole, observed_at=started,
    ), True


def _plain(value: Any) -> Any:
    """JSON-friendly values (bytes from binary columns become text)."""
    if isinstance(value, bytes | bytearray):
        return value.decode(errors="replace")
    if isinstance(value, int | float | str) or value is None:
        return value
    return str(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pymysql.MySQLError) and exc.args:
        return f"{exc.args[0]}: {exc.args[-1]}" if len(exc.args) > 1 else str(exc.args[0])
    return f"{type(exc).__name__}: {exc}"


def _neighbours(raw: RawObservation) -> list[str]:
    """Endpoints a server names: its source and its listed replicas."""
    found = []
    if raw.replica_status and raw.replica_status.get("Master_Host", raw.replica_status.get("Source_Host")):
        st = raw.replica_status
        found.append(endpoint(st.get("Master_Host") or st.get("Source_Host"), st.get("Master_Port") or st.get("Source_Port")))
    for row in raw.replica_hosts:
        if row.get("Port"):
            found.append(endpoint(row.get("Host") or "", row["Port"]))
    return found


def discover(seeds: Iterable[str], creds: Credentials, max_servers: int = MAX_SERVERS,
             pool: ThreadPoolExecutor | None = None, cache: ProbeConnections | None = None) -> Snapshot:
    """Probe `seeds` and everything reachable from them through replication links; return the snapshot.

    Seeds that are unreachable stay in the snapshot as unreachable servers (so the caller sees them).
    """
    taken_at = time.time()
    todo = list(dict.fromkeys(endpoint(*split_endpoint(s)) for s in seeds))
    seen: set[str] = set(todo)
    raws: list[RawObservation] = []
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=8, thread_name_prefix="iotgw-probe")
    try:
        while todo and len(raws) < max_servers:
            wave = todo[: max_servers - len(raws)]
            todo = []
            for raw in pool.map(lambda ep: probe(ep, creds, cache), wave):
                raws.append(raw)
                for ep in _neighbours(raw):
                    if ep not in seen:
                        seen.add(ep)
                        todo.append(ep)
    finally:
        if own_pool:
            pool.shutdown(wait=False)
    return snapshot_from_raw(raws, taken_at=taken_at)
