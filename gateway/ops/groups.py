"""HA groups: named sets of servers with per-server weights and modes, looked up by clients.

In the spirit of MySQL Fabric's high-availability groups, without a Fabric node: the registry is two small
tables in `iotgw_meta` (the topology's own schema, replicated with it, kept as InnoDB even on a BLACKHOLE relay),
or in the same tables on a configured separate server. Who is primary is not stored: it is the topology
epoch's answer (`analysis.writer_primary`), so a failover needs no registry update and a lookup never names
an old primary. Member modes:

- `rw`: may be the primary; serves reads while it is a replica;
- `ro`: serves reads only (`group promote` refuses it);
- `offline`: kept in the group, given to nobody (maintenance).

The lookup (`GroupService.lookup`, served over HTTP by `add_group_routes`) answers the primary, the healthy
readable members with their weights, and a TTL. The client side (`gateway.client.groups.GroupClient`, behind
`gateway.connect(group=…)`) caches, rotates and retries on that answer.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import pymysql

from gateway.metrics import bearer_token
from gateway.ops.switchover import switchover
from gateway.topology import analysis
from gateway.topology.conn import Credentials, open_connection
from gateway.topology.dialect import META_SCHEMA
from gateway.topology.discovery import ProbeConnections, discover
from gateway.topology.model import endpoint, split_endpoint
from gateway.topology.operation import OpError

MODES = ("rw", "ro", "offline")
T = TypeVar("T")

REGISTRY_SQL = (
    f"CREATE DATABASE IF NOT EXISTS `{META_SCHEMA}`",
    f"""CREATE TABLE IF NOT EXISTS `{META_SCHEMA}`.ha_groups (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  description VARCHAR(255) NOT NULL DEFAULT '',
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB""",
    f"""CREATE TABLE IF NOT EXISTS `{META_SCHEMA}`.ha_group_members (
  group_name VARCHAR(64) NOT NULL,
  host VARCHAR(255) NOT NULL,
  port INT UNSIGNED NOT NULL,
  weight INT UNSIGNED NOT NULL DEFAULT 1,
  mode ENUM('rw', 'ro', 'offline') NOT NULL DEFAULT 'rw',
  PRIMARY KEY (group_name, host, port)
) ENGINE=InnoDB""",
)


class GroupError(OpError):
    """A registry operation or lookup was refused or failed; the message says why."""


@dataclass(frozen=True)
class Member:
    endpoint: str
    weight: int = 1
    mode: str = "rw"


@dataclass(frozen=True)
class Group:
    name: str
    description: str = ""
    members: tuple[Member, ...] = ()

    def member(self, ep: str) -> Member | None:
        return next((m for m in self.members if m.endpoint == ep), None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "members": [asdict(m) for m in self.members]}


# -------------------------------------------------------------------------------------------- the registry
class Registry:
    """The groups, stored on the topology (written on its primary, replicated) or on one separate server."""

    def __init__(self, seeds: list[str], admin: Credentials, *, separate: bool = False,
                 probes: ProbeConnections | None = None) -> None:
        if not seeds:
            raise ValueError("the registry needs at least one server")
        self.seeds = [endpoint(*split_endpoint(s)) for s in seeds]
        self.admin = admin
        self.separate = separate  # True: seeds[0] is a server of its own, not part of the topology
        self.probes = probes  # kept probe connections for finding the primary (a long-lived service's)

    def _store(self) -> str:
        if self.separate:
            return self.seeds[0]
        decision = analysis.writer_primary(discover(self.seeds, self.admin, cache=self.probes))
        if decision.primary is None:
            raise GroupError(f"no primary to write the registry on: {decision.reason}")
        return decision.primary.endpoint

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]], *, in_group: str | None = None) -> int:
        """Run the statements in one transaction on the registry's store; the rows they changed.

        With `in_group`, the group must exist: checked in the same transaction (its row locked until the
        commit), so a member cannot be added to a group another client drops meanwhile.
        """
        with open_connection(self._store(), self.admin, autocommit=False) as conn, conn.cursor() as cur:
            # Registry changes must replicate: they are data of the topology, not maintenance of one server.
            cur.execute("SET SESSION sql_log_bin=1")
            _ensure_schema(cur)
            if in_group is not None:
                cur.execute(f"SELECT 1 FROM `{META_SCHEMA}`.ha_groups WHERE name = %s FOR UPDATE",
                            (in_group,))
                if cur.fetchone() is None:
                    conn.rollback()
                    raise GroupError(f"no group {in_group!r}")
            changed = 0
            for sql, params in statements:
                cur.execute(sql, params)
                changed += cur.rowcount
            conn.commit()
            return changed

    def create(self, name: str, description: str = "") -> None:
        if not name or len(name) > 64:
            raise GroupError("a group name is 1 to 64 characters")
        if not self._write([(f"INSERT IGNORE INTO `{META_SCHEMA}`.ha_groups (name, description) VALUES (%s, %s)",
                             (name, description))]):
            raise GroupError(f"group {name!r} exists already")

    def add(self, name: str, server: str, weight: int = 1, mode: str = "rw") -> None:
        """Add (or update) a member."""
        if mode not in MODES:
            raise GroupError(f"mode must be one of {', '.join(MODES)}")
        if weight < 0:
            raise GroupError("weight must be 0 or more")
        host, port = split_endpoint(endpoint(*split_endpoint(server)))
        self._write([(f"INSERT INTO `{META_SCHEMA}`.ha_group_members (group_name, host, port, weight, mode) "
                      "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE weight = VALUES(weight), "
                      "mode = VALUES(mode)", (name, host, port, weight, mode))], in_group=name)

    def remove(self, name: str, server: str) -> None:
        host, port = split_endpoint(endpoint(*split_endpoint(server)))
        if not self._write([(f"DELETE FROM `{META_SCHEMA}`.ha_group_members WHERE group_name = %s AND host = %s "
                             "AND port = %s", (name, host, port))]):
            raise GroupError(f"{host}:{port} is not a member of {name!r}")

    def drop(self, name: str) -> None:
        if not self._write([(f"DELETE FROM `{META_SCHEMA}`.ha_group_members WHERE group_name = %s", (name,)),
                            (f"DELETE FROM `{META_SCHEMA}`.ha_groups WHERE name = %s", (name,))]):
            raise GroupError(f"no group {name!r}")

    def list(self) -> list[Group]:
        """Every group with its members, read on the primary (or any registry server that answers: see _read)."""
        rows_g, rows_m = self._read()
        members: dict[str, list[Member]] = {}
        for g, host, port, weight, mode in rows_m:
            members.setdefault(str(g), []).append(Member(endpoint(str(host), int(port)), int(weight), str(mode)))
        return [Group(str(n), str(d or ""), tuple(members.get(str(n), ()))) for n, d in rows_g]

    def get(self, name: str) -> Group:
        for g in self.list():
            if g.name == name:
                return g
        raise GroupError(f"no group {name!r}")

    def _read(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The registry's rows, read where it is written (the primary) so that a change shows at once (a replica
        may not have applied it yet); when no primary is known (during a failover), from the first other server
        that answers: its copy lags by at most its replication delay, and lookups keep working meanwhile."""
        last: Exception | None = None
        order = self.seeds
        if not self.separate:
            try:
                store = self._store()
            except GroupError as exc:
                last = exc
            else:
                order = [store, *(ep for ep in self.seeds if ep != store)]
        for ep in order:
            try:
                with open_connection(ep, self.admin) as conn, conn.cursor() as cur:
                    cur.execute(f"SELECT name, description FROM `{META_SCHEMA}`.ha_groups ORDER BY name")
                    groups = [tuple(r) for r in cur.fetchall()]
                    cur.execute(f"SELECT group_name, host, port, weight, mode FROM `{META_SCHEMA}`.ha_group_members "
                                "ORDER BY group_name, port, host")
                    return groups, [tuple(r) for r in cur.fetchall()]
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] in (1049, 1146):  # no registry yet
                    return [], []
                last = exc
            except (pymysql.MySQLError, OSError) as exc:
                last = exc
        raise GroupError(f"no registry server answered: {last}")


def _ensure_schema(cur: Any) -> None:
    cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME IN ('ha_groups', 'ha_group_members')", (META_SCHEMA,))
    if int(cur.fetchone()[0]) == 2:
        return  # CREATE … IF NOT EXISTS is binlogged even when nothing is created: skip it when we can
    for sql in REGISTRY_SQL:
        cur.execute(sql)


# -------------------------------------------------------------------------------------------- the lookup
def group_view(group: Group, snap: Any, ttl_s: float) -> dict[str, Any]:
    """The lookup answer for `group` from a topology snapshot. Pure: tested on stored snapshots.

    primary: the epoch rule's primary if it is a non-offline member; readers: healthy replicas that are
    members, not offline and of weight > 0, with their weights; skipped: why the others are not readers.
    """
    decision = analysis.writer_primary(snap)
    primary = decision.primary
    prim_member = group.member(primary.endpoint) if primary is not None else None
    if prim_member is None and primary is not None and primary.report_endpoint:
        prim_member = group.member(primary.report_endpoint)
    health = {h.server.endpoint: h for h in analysis.replica_health(snap, primary)}
    readers, skipped = [], []
    for m in group.members:
        s = snap.get(m.endpoint)
        if m.mode == "offline" or m.weight == 0:
            skipped.append({"endpoint": m.endpoint, "why": "offline" if m.mode == "offline" else "weight 0"})
        elif s is None or not s.reachable:
            skipped.append({"endpoint": m.endpoint, "why": f"unreachable{': ' + s.error if s else ''}"})
        elif primary is not None and s is primary:
            continue
        elif s.endpoint in health and health[s.endpoint].healthy:
            readers.append({"endpoint": m.endpoint, "weight": m.weight, "server_id": s.server_id})
        else:
            why = "; ".join(health[s.endpoint].reasons) if s.endpoint in health else "not a replica"
            skipped.append({"endpoint": m.endpoint, "why": why})
    return {
        "group": group.name,
        "primary": primary.endpoint if prim_member is not None and prim_member.mode != "offline" else None,
        "epoch": decision.epoch,
        "primary_reason": decision.reason if prim_member is not None else
        f"the topology's primary ({primary.endpoint if primary else 'none'}) is not a member: {decision.reason}",
        "readers": readers,
        "skipped": skipped,
        "ttl_s": ttl_s,
        "at": time.time(),
    }


class GroupService:
    """Answers group lookups: registry and topology probed at most once per `cache_s` unless asked `fresh`."""

    def __init__(self, registry: Registry, creds: Credentials, *, ttl_s: float = 5.0, cache_s: float = 0.5) -> None:
        self.registry, self.creds, self.ttl_s, self.cache_s = registry, creds, ttl_s, cache_s
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._probes = ProbeConnections()  # probe connections kept between lookups (opening one is slow)
        if registry.probes is None:  # the registry finds the primary it reads from over the same connections
            registry.probes = self._probes

    def close(self) -> None:
        self._probes.close()

    def lookup(self, name: str, fresh: bool = False) -> dict[str, Any]:
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and not fresh and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        group = self.registry.get(name)
        snap = discover([m.endpoint for m in group.members], self.creds, cache=self._probes)
        view = group_view(group, snap, self.ttl_s)
        with self._lock:
            self._cache[name] = (time.monotonic(), view)
        return view


def add_group_routes(http: Any, service: GroupService, token: str | None = None) -> None:
    """Serve `/groups` (list) and `/groups/lookup?name=G[&fresh=1]` on the gateway's HTTP server.

    The token travels in an `Authorization: Bearer <token>` header (compared in constant time), never in the URL,
    so it stays out of access logs and error texts; a token in the query string is refused. A server bound
    beyond loopback must have a token: group lookups name every database server.
    """
    host = str(http.server.server_address[0])
    if token is None and host not in ("127.0.0.1", "::1", "localhost"):
        raise GroupError(f"the HTTP server is bound to {host}: group lookups need a token there")

    def answer(status: int, doc: dict[str, Any]) -> tuple[int, str, bytes]:
        return status, "application/json", (json.dumps(doc) + "\n").encode()

    def refused(q: dict[str, list[str]], headers: Any) -> tuple[int, str, bytes] | None:
        if "token" in q:
            return answer(400, {"error": "send the token in an 'Authorization: Bearer' header, not in the URL"})
        if token is not None and not hmac.compare_digest(bearer_token(headers).encode(), token.encode()):
            return answer(403, {"error": "missing or wrong token"})
        return None

    def lookup(query: str, headers: Any) -> tuple[int, str, bytes]:
        q = urllib.parse.parse_qs(query)
        if (no := refused(q, headers)) is not None:
            return no
        name = q.get("name", [""])[0]
        try:
            return answer(200, service.lookup(name, fresh=q.get("fresh", ["0"])[0] == "1"))
        except GroupError as exc:
            return answer(404, {"error": str(exc)})

    def listing(query: str, headers: Any) -> tuple[int, str, bytes]:
        if (no := refused(urllib.parse.parse_qs(query), headers)) is not None:
            return no
        return answer(200, {"groups": [g.to_dict() for g in service.registry.list()]})

    http.add_route("/groups/lookup", lookup, headers=True)
    http.add_route("/groups", listing, headers=True)


# -------------------------------------------------------------------------------------------- promotion
def promote_in_group(registry: Registry, name: str, server: str, admin: Credentials, *, demote_old: bool = False,
                     repl: tuple[str, str] = ("repl", ""), timeout: float = 30.0,
                     progress: Callable[[str], None] | None = None) -> Any:
    """`iotgw group promote`: the operations' switchover (gateway.ops.switchover), refused for a server that is
    not an `rw` member of the group. Returns the SwitchoverResult."""
    group = registry.get(name)
    ep = endpoint(*split_endpoint(server))
    member = group.member(ep)
    if member is None:
        raise GroupError(f"{ep} is not a member of group {name!r}")
    if member.mode != "rw":
        raise GroupError(f"{ep} is a {member.mode!r} member of {name!r}: only 'rw' members may be promoted")
    seeds = list(dict.fromkeys([*(m.endpoint for m in group.members), *registry.seeds]))
    return switchover(seeds, ep, admin, demote_old=demote_old, repl=repl, timeout=timeout, progress=progress)


