"""The status model: one JSON document about the whole chain, built by pure functions from plain inputs.

`build_status(inputs)` is the one function behind `/api/status`, the page, `iotgw status` and the demo's live
view. Every builder takes values (statuses, reading activity, a topology snapshot, counters) and returns
dicts of JSON-friendly values; nothing here reads a clock, a socket or a file, so stored inputs test it.
Times in the document are absolute milliseconds since 1970 (`*_ms`); renderers turn them into ages
against `generated_ms`, so the document only changes when something happens.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.device_status import DeviceStatus
from gateway.topology import analysis
from gateway.topology.model import Snapshot

FORMAT = "iotgw-status/1"


@dataclass(frozen=True)
class NodeActivity:
    """The readings one (device, node) sent, as the gateway saw them (see `gateway.status.activity`)."""

    device: str
    node: str
    site: str = ""
    boot: int | None = None
    seq: int | None = None
    ts: int | None = None  # the collector's sample time of the newest reading (ms), None without a clock
    received_ms: int | None = None  # when the gateway received it
    value: float | None = None
    unit: str = ""
    clock: str = ""  # the gateway's classification of the collector's clock: ok, none, unset, future
    replayed: int = 0  # readings that came from the collector's cache (cached=true)
    last_hour: int = 0  # new readings received in the last hour


@dataclass(frozen=True)
class PairSwitch:
    """A change of a pair's active node: a takeover (away from the usual node) or a hand-back (to it)."""

    device: str
    at_ms: int
    kind: str  # takeover | hand-back
    from_node: str
    to_node: str


@dataclass(frozen=True)
class Thresholds:
    """When something becomes an alert."""

    silent_factor: float = 3.0  # a device is silent after this many expected periods without a reading
    default_period_s: float = 60.0  # expected period when the collector's status does not say
    spool_fraction: float = 0.8  # spool depth above this fraction of its limit
    lag_s: float = 60.0  # replica lag alert when no read limit (`database.read_max_lag_s`) is configured


@dataclass
class GatewayFacts:
    """The gateway's own state at one moment."""

    ingest_rate: float = 0.0  # messages received per second (recent)
    drain_rate: float = 0.0  # readings written to the database per second (recent)
    spool_depth: int = 0
    spool_limit: int = 0
    spool_full: bool = False
    spool_unconfirmed: int = 0  # of the depth: written to the database, waiting for a replica to confirm
    quarantine: dict[str, int] = field(default_factory=dict)  # reason -> count held in the spool
    quarantine_recent: list[dict[str, Any]] = field(default_factory=list)  # newest first
    broker_drops: int | None = None  # messages the broker reported dropping (None: not known)
    mqtt: dict[str, Any] | None = None  # {"connected": bool, "error": str, "url": str}, None without MQTT
    serial: dict[str, bool] = field(default_factory=dict)  # port -> connected
    ack_mode: str = "spool"
    database_available: bool = True
    database_error: str = ""
    workers_ok: bool = True


@dataclass
class ReadsFacts:
    """How reads are spread (`[database] read_*`)."""

    strategy: str = "round_robin"
    shared_rotation: bool = False
    max_lag_s: float = 0.0
    max_lag_trx: int = 0
    fallback_primary: bool = False


@dataclass
class StatusInputs:
    """Everything `build_status` needs, gathered by `gateway.status.gather` (or loaded from a file)."""

    now_ms: int
    started_ms: int
    statuses: Sequence[DeviceStatus] = ()
    activity: Sequence[NodeActivity] = ()
    coverage_gaps_s: dict[str, float] = field(default_factory=dict)  # device -> largest gap between readings
    pair_switches: Sequence[PairSwitch] = ()
    gateway: GatewayFacts = field(default_factory=GatewayFacts)
    database_kind: str = "sqlite"
    database_where: str = ""  # the SQLite file, for kind sqlite
    snapshot: Snapshot | None = None
    monitor_events: Sequence[dict[str, Any]] = ()  # {"at_ms", "kind", "message"} oldest first
    failovers: Sequence[dict[str, Any]] = ()  # {"at_ms", "old", "new", "epoch", "seconds"} oldest first
    monitor: bool = False  # the failover monitor runs inside the gateway
    reads: ReadsFacts = field(default_factory=ReadsFacts)
    history: dict[str, Any] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)


# ------------------------------------------------------------------------------------------------ devices
def _period_s(statuses: Iterable[DeviceStatus], th: Thresholds) -> tuple[float, bool]:
    """The device's expected period in seconds, and whether a status said it."""
    known = [s.period_ms for s in statuses if s.period_ms]
    return (max(known) / 1000.0, True) if known else (th.default_period_s, False)


def build_devices(statuses: Sequence[DeviceStatus], activity: Sequence[NodeActivity], now_ms: int,
                  started_ms: int, th: Thresholds) -> list[dict[str, Any]]:
    """One entry per device with its nodes; silent or unhealthy devices first, then by name.

    A device is silent when none of its nodes sent a reading for `silent_factor` expected periods (counted
    from the gateway's start when it never sent one): a pair's standby node is quiet by design, so silence
    is a property of the device, not of a node.
    """
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    by_device_status: dict[str, list[DeviceStatus]] = {}
    for st in statuses:
        by_device_status.setdefault(st.device, []).append(st)
        nodes[(st.device, st.node)] = _node_row(st.device, st.node)
        row = nodes[(st.device, st.node)]
        row.update(site=st.site or row["site"], state=st.state or "unknown", role=st.role or "",
                   status_boot=st.boot, cached=st.cached, cap=st.cap, dropped=st.dropped,
                   reset=st.reset, store_err=st.store_err,
                   status_clock=st.clock, period_ms=st.period_ms,
                   status_ms=st.received_ms)
    for a in activity:
        row = nodes.setdefault((a.device, a.node), _node_row(a.device, a.node))
        row.update(site=a.site or row["site"], boot=a.boot, seq=a.seq, ts=a.ts, received_ms=a.received_ms,
                   value=a.value, unit=a.unit, clock=a.clock, replayed=a.replayed, last_hour=a.last_hour)
    devices: dict[str, list[dict[str, Any]]] = {}
    for (dev, _node), row in sorted(nodes.items()):
        devices.setdefault(dev, []).append(row)
    out = []
    for dev, rows in devices.items():
        period_s, period_known = _period_s(by_device_status.get(dev, ()), th)
        last = max((r["received_ms"] for r in rows if r["received_ms"] is not None), default=None)
        quiet_since = last if last is not None else started_ms
        silent_after_s = th.silent_factor * period_s
        silent = (now_ms - quiet_since) / 1000.0 > silent_after_s
        problems = []
        for r in rows:
            r["problems"] = _node_problems(r)
            problems += [f"{r['node']}: {p}" for p in r["problems"]]
        if silent:
            problems.insert(0, "silent")
        out.append({
            "device": dev, "site": next((r["site"] for r in rows if r["site"]), ""), "nodes": rows,
            "last_reading_ms": last, "period_s": period_s, "period_known": period_known,
            "silent_after_s": silent_after_s, "silent": silent, "healthy": not problems, "problems": problems,
            "last_hour": sum(r["last_hour"] for r in rows),
        })
    out.sort(key=lambda d: (not d["silent"], d["healthy"], d["device"]))
    return out


def _node_row(device: str, node: str) -> dict[str, Any]:
    return {"device": device, "node": node, "site": "", "state": "unknown", "role": "", "status_boot": None,
            "cached": None, "cap": None, "dropped": None, "reset": None, "store_err": None, "status_clock": None,
            "period_ms": None, "status_ms": None, "boot": None, "seq": None, "ts": None, "received_ms": None,
            "value": None, "unit": "", "clock": "", "replayed": 0, "last_hour": 0}


def _node_problems(r: dict[str, Any]) -> list[str]:
    out = []
    if r["state"] == "offline":
        out.append("offline (last will)")
    clock = r["status_clock"] or r["clock"]
    if clock and clock != "ok":
        out.append(f"clock {clock}")
    if r["dropped"]:
        out.append(f"dropped {r['dropped']}")
    if r["store_err"]:
        out.append(f"store errors {r['store_err']}")
    return out


# ------------------------------------------------------------------------------------------------ pairs
def build_pairs(statuses: Sequence[DeviceStatus], switches: Sequence[PairSwitch],
                gaps_s: dict[str, float]) -> list[dict[str, Any]]:
    """Redundant pairs (a device whose nodes report `active`/`standby`): who is active, switches, gaps."""
    by_dev: dict[str, list[DeviceStatus]] = {}
    for st in statuses:
        if st.role in ("active", "standby"):
            by_dev.setdefault(st.device, []).append(st)
    for sw in switches:
        by_dev.setdefault(sw.device, [])
    out = []
    for dev in sorted(by_dev):
        sts = by_dev[dev]
        active = sorted(s.node for s in sts if s.role == "active" and s.state != "offline")
        mine = [sw for sw in switches if sw.device == dev]
        takeover = next((sw for sw in reversed(mine) if sw.kind == "takeover"), None)
        handback = next((sw for sw in reversed(mine) if sw.kind == "hand-back"), None)
        out.append({
            "device": dev,
            "nodes": {s.node: {"role": s.role, "state": s.state} for s in sorted(sts, key=lambda s: s.node)},
            "active": active[0] if len(active) == 1 else None,
            "active_nodes": active,
            "last_takeover": _switch(takeover), "last_handback": _switch(handback),
            "switches": len(mine),
            "max_gap_s": round(gaps_s[dev], 3) if dev in gaps_s else None,
        })
    return out


def _switch(sw: PairSwitch | None) -> dict[str, Any] | None:
    return None if sw is None else {"at_ms": sw.at_ms, "from": sw.from_node, "to": sw.to_node}


# ------------------------------------------------------------------------------------------------ gateway
def build_gateway(g: GatewayFacts) -> dict[str, Any]:
    """The gateway itself: rates, spool, quarantine, links, ack mode."""
    return {
        "ingest_rate": round(g.ingest_rate, 1), "drain_rate": round(g.drain_rate, 1),
        "spool": {"depth": g.spool_depth, "unconfirmed": g.spool_unconfirmed, "limit": g.spool_limit,
                  "full": g.spool_full,
                  "fraction": round(g.spool_depth / g.spool_limit, 4) if g.spool_limit else 0.0},
        "quarantine": {"by_reason": dict(sorted(g.quarantine.items())), "total": sum(g.quarantine.values()),
                       "recent": list(g.quarantine_recent)},
        "broker_drops": g.broker_drops,
        "links": {"mqtt": g.mqtt, "serial": dict(sorted(g.serial.items()))},
        "ack_mode": g.ack_mode,
        "database_available": g.database_available, "database_error": g.database_error,
        "workers_ok": g.workers_ok,
    }


# ------------------------------------------------------------------------------------------------ database
def build_database(kind: str, where: str, snap: Snapshot | None, events: Sequence[dict[str, Any]],
                   failovers: Sequence[dict[str, Any]], monitor: bool, lag_limit_s: float | None = None,
                   lag_limit_trx: int | None = None) -> dict[str, Any]:
    """The topology: servers with roles, epoch, lag (seconds and transactions), threads; the tree; failovers."""
    doc: dict[str, Any] = {"kind": kind, "where": where, "monitor": monitor, "primary": None, "epoch": None,
                           "reason": "", "servers": [], "tree": [], "observed_ms": None,
                           "failovers": list(failovers)[-10:], "events": list(events)[-20:]}
    if kind != "mysql" or snap is None:
        return doc
    decision = analysis.writer_primary(snap)
    roles = analysis.roles(snap, decision)
    health = {h.server.endpoint: h for h in analysis.replica_health(snap, decision.primary, lag_limit_s or None,
                                                                    lag_limit_trx or None)}
    servers = []
    for s in sorted(snap.servers, key=lambda s: (s.server_id or 1 << 30, s.endpoint)):
        h = health.get(s.endpoint)
        rep = s.replication
        src = analysis.parent(snap, s) if rep else None
        servers.append({
            "endpoint": s.endpoint, "server_id": s.server_id, "role": roles[s.endpoint], "reachable": s.reachable,
            "error": s.error, "read_only": s.read_only, "version": s.version, "flavor": s.flavor,
            "epoch": s.epoch.epoch if s.epoch else None,
            "source": (src.endpoint if src else rep.source) if rep else None,
            "io_thread": rep.io_running if rep else None, "sql_thread": rep.sql_running if rep else None,
            "last_error": (rep.last_io_error or rep.last_sql_error) if rep else "",
            "lag_s": h.lag_s if h else None, "lag_trx": h.lag_trx if h else None,
            "healthy": h.healthy if h else (s.reachable and roles[s.endpoint] == "primary"),
            "problems": list(h.reasons) if h else ([] if s.reachable else [f"unreachable: {s.error}"]),
        })

    def node(t: analysis.TreeNode) -> dict[str, Any]:
        return {"endpoint": t.server.endpoint, "children": [node(c) for c in t.children]}

    doc.update(primary=decision.primary.endpoint if decision.primary else None, epoch=decision.epoch or None,
               reason=decision.reason, servers=servers, tree=[node(t) for t in analysis.tree(snap)],
               observed_ms=int(snap.taken_at * 1000) if snap.taken_at else None,
               unreachable=[s.endpoint for s in snap.servers if not s.reachable])
    return doc


def build_reads(r: ReadsFacts, database: dict[str, Any]) -> dict[str, Any]:
    """Read spreading: the strategy, the rotation, the limits, and which replicas reads would use now."""
    usable = [s["endpoint"] for s in database["servers"] if s["role"] in ("replica", "intermediate")
              and s["healthy"]]
    return {"strategy": r.strategy, "rotation": "shared" if r.shared_rotation else "local",
            "max_lag_s": r.max_lag_s, "max_lag_trx": r.max_lag_trx, "fallback_primary": r.fallback_primary,
            "readable": usable}


# ------------------------------------------------------------------------------------------------ alerts
def build_alerts(devices: Sequence[dict[str, Any]], pairs: Sequence[dict[str, Any]], gw: dict[str, Any],
                 db: dict[str, Any], reads: dict[str, Any], now_ms: int, th: Thresholds) -> list[dict[str, Any]]:
    """What needs a person: each alert has a kind, a subject and a sentence naming the cause."""
    out: list[dict[str, Any]] = []

    def alert(kind: str, subject: str, message: str) -> None:
        out.append({"kind": kind, "subject": subject, "message": message})

    if db["kind"] == "mysql" and db["primary"] is None:
        alert("no-primary", "database", f"no writable primary: {db['reason'] or 'topology not seen yet'}")
    for d in devices:
        if d["silent"]:
            since = d["last_reading_ms"]
            quiet = "never sent a reading" if since is None else \
                f"no reading since {time.strftime('%H:%M:%S', time.gmtime(since / 1000))} UTC"
            alert("device-silent", d["device"], f"{quiet} (expected every {d['period_s']:g} s"
                  f"{'' if d['period_known'] else ', assumed'}; silent after {d['silent_after_s']:g} s)")
    for p in pairs:
        if p["active"] is None:
            many = p["active_nodes"]
            alert("pair-no-active", p["device"], "two nodes claim to be active: " + ", ".join(many) if many else
                  "no node of the pair is active")
    spool = gw["spool"]
    if spool["full"] or (spool["limit"] and spool["depth"] >= th.spool_fraction * spool["limit"]):
        alert("spool-high", "spool", f"spool holds {spool['depth']} of {spool['limit']} readings"
              + (" (full: ingest paused)" if spool["full"] else f" (above {th.spool_fraction:.0%})"))
    if gw["broker_drops"]:
        alert("broker-drops", "broker", f"the broker dropped {gw['broker_drops']} messages (its queue limit: "
              "set max_queued_messages 0 and persistence true)")
    limit = reads["max_lag_s"] or th.lag_s
    for s in db["servers"]:
        if s["lag_s"] is not None and s["lag_s"] > limit:
            alert("replica-lag", s["endpoint"], f"replica lags {s['lag_s']} s (limit {limit:g} s)")
    return out


# ------------------------------------------------------------------------------------------------ all of it
def build_status(i: StatusInputs) -> dict[str, Any]:
    """The whole status document (`/api/status`)."""
    devices = build_devices(i.statuses, i.activity, i.now_ms, i.started_ms, i.thresholds)
    pairs = build_pairs(i.statuses, i.pair_switches, i.coverage_gaps_s)
    gw = build_gateway(i.gateway)
    db = build_database(i.database_kind, i.database_where, i.snapshot, i.monitor_events, i.failovers, i.monitor,
                        i.reads.max_lag_s, i.reads.max_lag_trx)
    reads = build_reads(i.reads, db)
    alerts = build_alerts(devices, pairs, gw, db, reads, i.now_ms, i.thresholds)
    return {"format": FORMAT, "generated_ms": i.now_ms, "started_ms": i.started_ms, "alerts": alerts,
            "devices": devices, "pairs": pairs, "gateway": gw, "database": db, "reads": reads,
            "history": i.history}
