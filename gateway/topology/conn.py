"""How every part of the gateway opens a MySQL/MariaDB connection: one credentials type (an `Account` with
timeouts) and one factory (`open_connection`), bounded everywhere.

A `Credentials` never shows its password in `repr`, and refuses a client certificate without a CA: the
connection would otherwise go out in plaintext with the certificate silently unused (both from `Account`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pymysql

from gateway.config import Account, resolve_secret
from gateway.topology.dialect import Dialect, dialect_for
from gateway.topology.model import split_endpoint


@dataclass(frozen=True)
class Credentials(Account):
    """A database account (user, password, TLS files: `Account`) and the limits every connection made with it
    keeps (no wait on a dead server is unbounded). Positional order: user, password, tls_ca, tls_cert, tls_key,
    connect_timeout, io_timeout."""

    user: str = "iotgw"  # the gateway's writer account unless told otherwise (keeps its place from Account)
    connect_timeout: float = 3.0
    io_timeout: float | None = 10.0  # read/write timeout: a frozen (SIGSTOPped) server fails after this

    def with_timeouts(self, connect: float | None = None, io: float | None = None) -> Credentials:
        return replace(self, connect_timeout=connect or self.connect_timeout, io_timeout=io or self.io_timeout)


def credentials_from_config(db: Any, admin: bool = False) -> Credentials:
    """The writer account (or, with `admin`, the admin account) of a `DatabaseConfig`."""
    if admin:
        user = getattr(db, "admin_user", "root")
        password = resolve_secret("database", db, "admin_password") if hasattr(db, "admin_password") else ""
    else:
        user, password = db.user, resolve_secret("database", db)
    return Credentials(user=user, password=password, tls_ca=db.tls_ca, tls_cert=db.tls_cert, tls_key=db.tls_key,
                       connect_timeout=db.connect_timeout, io_timeout=getattr(db, "io_timeout_s", 10.0))


def open_connection(ep: str, creds: Credentials, database: str | None = None, autocommit: bool = True,
                    io_timeout: float | None = None, **kwargs: Any) -> pymysql.Connection:
    """A PyMySQL connection to `HOST:PORT` with the account's TLS and bounded timeouts.

    Without a CA the connection is plaintext, as configured. PyMySQL would otherwise try TLS it cannot verify
    ("preferred" mode): no protection against an impostor, and ~25 ms of CPU to load the system's CA bundle for
    every connection opened (the gateway's probes, confirmations and drain, every reconnect, every CLI call)."""
    host, port = split_endpoint(ep)
    timeout = io_timeout if io_timeout is not None else creds.io_timeout
    ctx = creds.ssl_context()
    return pymysql.connect(host=host, port=port, user=creds.user, password=creds.password, database=database,
                           autocommit=autocommit, connect_timeout=creds.connect_timeout, read_timeout=timeout,
                           write_timeout=timeout, ssl=ctx, ssl_disabled=ctx is None, **kwargs)


def is_read_only(conn: pymysql.Connection) -> bool:
    """True if the server behind `conn` refuses ordinary writes now (a `rw` connection must not go there)."""
    with conn.cursor() as cur:
        cur.execute(Dialect.read_only_sql)
        return bool(cur.fetchone()[0])


def maintenance_session(cur: Any) -> None:
    """Make this session's statements invisible to replication (`sql_log_bin=0`): run it before any
    maintenance statement, so what we do on one server never becomes an errant transaction there."""
    cur.execute("SET SESSION sql_log_bin=0")


def dialect_of(cur: Any) -> Dialect:
    """The dialect of the server a cursor is connected to (MariaDB says so in `@@version`)."""
    cur.execute("SELECT @@version AS version")
    row = cur.fetchone()
    return dialect_for(str(row["version"] if isinstance(row, dict) else row[0]))


def set_read_only(cur: Any, on: bool, dialect: Dialect | None = None) -> Dialect:
    """Fence (`on`) or open the server of `cur`; returns its dialect (asked from the server if not given)."""
    d = dialect or dialect_of(cur)
    for sql in d.set_read_only_sql(on):
        cur.execute(sql)
    return d
