"""`iotgw topology monitor`: the automatic failover daemon (what `mysqlfailover` did, with the lessons learned).

Every `interval` seconds it takes a snapshot (short timeouts) and asks `gateway.topology.analysis.writer_primary`
who the primary is. When there is none:

1. the old primary (`plan.old_primary`) must have failed `failcount` checks in a row, and the reachable replicas
   must have lost it too (`plan.confirm_dead`): a network problem between us and the primary is not a failover;
2. no failover may have happened in the last `block_s` seconds, by us or by anyone (the newest epoch row's
   `promoted_at` is the shared clock): a flapping topology is left to a person;
3. the single-controller lock is taken on a majority of the data-bearing servers (`MajorityLock`, `GET_LOCK`):
   it works with the primary dead, and two monitors never both act; after taking it the snapshot is taken
   again, so a monitor that waited behind another sees the new primary and does nothing;
4. then `gateway.ops.failover.failover` runs, between the optional pre/post hook commands, and the change is
   published (the epoch on the promoted server is what the writer trusts; a retained MQTT message and the
   metrics are for everything else).

When a verified primary exists, old primaries that come back (`plan.returning_primaries`) are fenced at once
and rejoined as replicas if they have not diverged; a diverged one is reported (it needs `sandbox rebuild` or a
clone) and left fenced.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Any

import pymysql

from gateway import crashpoints
from gateway.config import ConfigError, resolve_secret
from gateway.ops.clone import rejoin
from gateway.ops.failover import FailoverError, FailoverResult, failover, fence, probe_credentials
from gateway.ops.plan import confirm_dead, returning_primaries
from gateway.topology import analysis
from gateway.topology.conn import Credentials, open_connection, set_read_only
from gateway.topology.dialect import META_SCHEMA, dialect_for
from gateway.topology.discovery import ProbeConnections, discover
from gateway.topology.model import Snapshot

log = logging.getLogger(__name__)

LOCK_NAME = "iotgw.failover"
AUTOMATIC = "iotgw topology monitor"  # the epoch rows' promoted_by for automatic failovers


@dataclass
class MonitorConfig:
    """The settings that matter (see docs/replication.md)."""

    interval: float = 1.0  # seconds between checks
    failcount: int = 3  # failed checks in a row before the primary may be declared dead
    block_s: float = 60.0  # no second automatic failover within this many seconds of the last one
    rejoin: bool = True  # fence returning old primaries and rejoin those that have not diverged
    reopen: bool = True  # re-open writes on a primary that restarted read-only while the epoch still names it
    reopen_uptime_s: float = 300.0  # ... only if it restarted this recently (a fenced primary mid-switchover did not)
    repl: tuple[str, str] = ("repl", "")  # replication account, for rejoining
    apply_timeout: float = 30.0  # seconds a candidate may take to apply its relay log
    pre_hook: str = ""  # command run before a failover (env: IOTGW_OLD_PRIMARY)
    post_hook: str = ""  # command run after (env: IOTGW_OLD_PRIMARY, IOTGW_NEW_PRIMARY, IOTGW_EPOCH)
    mqtt: str = ""  # HOST:PORT of a broker for the retained topology message ('' = none)
    mqtt_topic: str = "iotgw/topology"


@dataclass
class Event:
    """One thing the monitor noticed or did (kept for the console view, tests and the metrics)."""

    at: float
    kind: str  # suspect, unconfirmed, blocked, locked-out, failover, failover-failed, fenced, rejoined, diverged, reopened
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class MajorityLock:
    """`GET_LOCK` on more than half of the data-bearing servers, in a fixed order, held on open connections.

    Every contender tries the servers in the same (sorted) order, so the one that wins the first server wins
    the rest; a server that is down counts as not granted. Released by closing the connections.
    """

    def __init__(self, endpoints: list[str], total: int, admin: Credentials, name: str = LOCK_NAME) -> None:
        self.endpoints = sorted(endpoints)
        self.total = total
        self.admin = probe_credentials(admin)
        self.name = name
        self._held: list[pymysql.connections.Connection] = []

    @property
    def needed(self) -> int:
        return self.total // 2 + 1

    def acquire(self) -> bool:
        # Connections are opened in parallel (cheap to overlap), the locks then taken one by one in order.
        with ThreadPoolExecutor(max_workers=max(1, len(self.endpoints))) as pool:
            conns = list(pool.map(self._open, self.endpoints))
        for conn in conns:
            if conn is None:
                continue  # down: counts as not granted
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT GET_LOCK(%s, 0)", (self.name,))
                    granted = cur.fetchone()[0] == 1
            except (pymysql.MySQLError, OSError):
                granted = False
            if granted:
                self._held.append(conn)
                continue
            # Someone else holds it here: they are ahead of us in the same order. Give up.
            for other in conns:
                if other is not None and other not in self._held:
                    _close_quietly(other)
            break
        for conn in conns:  # connections we did not lock on are not needed
            if conn is not None and conn not in self._held:
                _close_quietly(conn)
        if len(self._held) >= self.needed:
            return True
        self.release()
        return False

    def _open(self, ep: str) -> pymysql.connections.Connection | None:
        try:
            return open_connection(ep, self.admin)
        except (pymysql.MySQLError, OSError):
            return None

    @property
    def connections(self) -> list[pymysql.connections.Connection]:
        """The open sessions holding the lock (usable for more queries while held)."""
        return list(self._held)

    def release(self) -> None:
        for conn in self._held:
            _close_quietly(conn)  # a session's locks go with it
        self._held = []


def _close_quietly(conn: pymysql.connections.Connection) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; its locks are gone anyway
        pass


class Monitor:
    """The check loop. `check()` runs one check (tests call it directly); `run()` loops until stopped."""

    def __init__(self, seeds: list[str], admin: Credentials, config: MonitorConfig | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.admin = admin
        self.config = config or MonitorConfig()
        self.known: list[str] = list(dict.fromkeys(seeds))
        self.fails = 0
        self.reopen_seen = 0  # checks in a row that saw the epoch's primary back but read-only
        self.blocked_until = 0.0
        self.events: list[Event] = []
        self.failovers: list[FailoverResult] = []
        self.diverged: dict[str, list[str]] = {}  # endpoint -> GTIDs the primary never had (needs a rebuild)
        self._diverged_at: dict[str, str] = {}  # endpoint -> its binlog position when reported
        self.snapshot: Snapshot | None = None
        self.checks = 0
        self.error: BaseException | None = None  # set when the check loop died of an unexpected exception
        self._on_event = on_event
        self._stop = threading.Event()
        self._metrics = _Metrics.create()
        self._cache = ProbeConnections()  # probe connections kept between checks (opening one costs 30-60 ms)

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event | None = None) -> None:
        """Check every `interval` seconds until `stop` (or `self.stop()`)."""
        stop = stop or self._stop
        try:
            while not stop.is_set():
                crashpoints.fault("monitor.loop")  # outside the per-check guard: kills the loop (liveness tests)
                started = time.monotonic()
                try:
                    self.check()
                except Exception as exc:  # noqa: BLE001 - the daemon must survive any one bad check
                    self._event("error", f"check failed: {type(exc).__name__}: {exc}")
                stop.wait(max(0.0, self.config.interval - (time.monotonic() - started)))
        except BaseException as exc:  # the loop itself died: the gateway's watchdog reports this reason
            self.error = exc
            log.exception("failover monitor stopped")
            raise
        finally:
            self._cache.close()

    def stop(self) -> None:
        self._stop.set()

    @property
    def metrics_registry(self) -> Any:
        """The Prometheus registry holding this monitor's metrics (for `start_http_server`)."""
        return self._metrics.registry

    def check(self) -> None:
        """One check: look, then do at most one thing (fail over, or fence/rejoin returning primaries)."""
        self.checks += 1
        snap = self._look()
        decision = analysis.writer_primary(snap)
        self._metrics.observe(snap, decision)
        if decision.primary is not None:
            self.fails = 0
            if self.config.rejoin:
                self._handle_returning(snap)
            return
        dead = confirm_dead(snap)
        if dead.primary is None or dead.primary.reachable:
            self.fails = 0  # a primary that answers (read-only mid-promotion, say) is not ours to replace
            self._maybe_reopen(snap, dead.primary)
            return
        self.reopen_seen = 0
        self.fails += 1
        if self.fails < self.config.failcount:
            self._event("suspect", f"primary {dead.primary.endpoint} failed check {self.fails}/"
                        f"{self.config.failcount}")
            return
        if not dead.dead:
            self._event("unconfirmed", dead.reason)
            return
        self._try_failover(snap)

    # ------------------------------------------------------------------ a primary back after a restart
    def _maybe_reopen(self, snap: Snapshot, primary: Any) -> None:
        """The primary restarted (a power blip) faster than the failcount and came back read-only, as every
        server's config says: nobody else took over, the epoch still names it, so its writes are re-opened.
        Without this the writer would wait for a person to run `topology promote`."""
        state = primary.state if primary is not None else None
        others_writable = [s for s in snap.reachable if s.writable and not s.is_replica and s is not state]
        eligible = (self.config.reopen and state is not None and state.reachable and state.read_only
                    and not state.is_replica and primary.how == "epoch" and not others_writable)
        if not eligible:
            self.reopen_seen = 0
            return
        self.reopen_seen += 1
        if self.reopen_seen < self.config.failcount:
            self._event("suspect", f"primary {state.endpoint} answers but is read-only "
                        f"({self.reopen_seen}/{self.config.failcount}): restarted?")
            return
        self.reopen_seen = 0
        top = max((s.epoch.epoch for s in snap.reachable if s.epoch), default=0)
        d = dialect_for(state.flavor)
        try:
            # Declining needs no lock: only re-opening does, and then the facts are read again under it.
            refusal = self._reopen_refusal(state.endpoint, d, top)
            if refusal:
                self._event("unconfirmed", refusal)
                return
        except (pymysql.MySQLError, OSError) as exc:
            self._event("error", f"re-opening {state.endpoint} failed: {exc}")
            return
        reachable, total = self._data_bearing(snap)
        lock = MajorityLock(reachable, total, self.admin)
        if not lock.acquire():
            self._event("locked-out", "single-controller lock not obtained: not re-opening the primary")
            return
        try:
            with open_connection(state.endpoint, self.admin) as conn, conn.cursor() as cur:
                refusal = self._reopen_refusal(state.endpoint, d, top, cur)
                if refusal:
                    self._event("unconfirmed", refusal)
                    return
                set_read_only(cur, False, d)
            self._event("reopened", f"primary {state.endpoint} restarted recently, still named by the newest epoch "
                        f"{top}, nobody took over: writes re-opened (read_only=OFF)")
            self._publish({"event": "reopened", "primary": state.endpoint, "epoch": top, "at": time.time()})
        except (pymysql.MySQLError, OSError) as exc:
            self._event("error", f"re-opening {state.endpoint} failed: {exc}")
        finally:
            lock.release()

    def _reopen_refusal(self, ep: str, d: Any, top: int, cur: Any = None) -> str:
        """Why a read-only epoch holder must not be re-opened ("" if it may): it did not restart recently, holds
        an older epoch than the newest seen, or replicates from someone (a person or a switchover fenced it)."""
        if cur is None:
            with open_connection(ep, probe_credentials(self.admin)) as conn, conn.cursor() as own:
                return self._reopen_refusal(ep, d, top, own)
        cur.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
        uptime = float(cur.fetchone()[1])
        cur.execute(f"SELECT MAX(epoch) FROM `{META_SCHEMA}`.epoch")
        held = int(cur.fetchone()[0] or 0)
        cur.execute(d.replica_status_sql)
        replicating = cur.fetchone() is not None
        if uptime > self.config.reopen_uptime_s or held < top or replicating:
            return (f"primary {ep} is read-only but not a fresh restart of the epoch holder (uptime {uptime:.0f} s, "
                    f"epoch {held}/{top}{', replicating' if replicating else ''}): not re-opening; "
                    "use `iotgw topology promote` if it should be the primary")
        return ""

    # ------------------------------------------------------------------ pieces
    def _look(self) -> Snapshot:
        snap = discover(self.known, probe_credentials(self.admin), cache=self._cache)
        for s in snap.servers:  # remember every server ever seen: a dead primary stays a voter and a suspect
            if s.endpoint not in self.known:
                self.known.append(s.endpoint)
        self.snapshot = snap
        return snap

    def _data_bearing(self, snap: Snapshot) -> tuple[list[str], int]:
        """Reachable data-bearing endpoints, and the count of all known ones (unreachable ones included)."""
        reachable = [s.endpoint for s in snap.reachable if not s.blackhole]
        blackholes = {s.endpoint for s in snap.reachable if s.blackhole}
        total = len([ep for ep in self.known if ep not in blackholes])
        return reachable, total

    @staticmethod
    def _newest_epoch(lock: MajorityLock) -> tuple[int, float | None]:
        """The highest epoch on the locked servers, and its age in seconds (None unless it was automatic)."""
        best: tuple[int, float | None] = (0, None)
        for conn in lock.connections:
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT epoch, TIMESTAMPDIFF(MICROSECOND, promoted_at, NOW(6)) / 1e6, promoted_by "
                                f"FROM `{META_SCHEMA}`.epoch ORDER BY epoch DESC LIMIT 1")
                    row = cur.fetchone()
            except (pymysql.MySQLError, OSError):
                continue
            if row and int(row[0]) > best[0]:
                # Only an automatic failover starts the anti-flap window (not adoption, setup or a person).
                best = (int(row[0]), float(row[1]) if row[2] == AUTOMATIC else None)
        return best

    def _try_failover(self, snap: Snapshot) -> None:
        now = time.monotonic()
        if now < self.blocked_until:
            self._event("blocked", f"failover blocked for {self.blocked_until - now:.1f} s more "
                        "(anti-flap after our last failover)")
            return
        reachable, total = self._data_bearing(snap)
        lock = MajorityLock(reachable, total, self.admin)
        if not lock.acquire():
            self._event("locked-out", f"single-controller lock not obtained on {lock.needed} of {total} "
                        "data-bearing servers (another monitor is acting, or too few servers answer)")
            return
        try:
            # Under the lock, check nobody acted meanwhile: a higher epoch than our snapshot's on any locked
            # server means another controller promoted someone (cheaper than a second discovery).
            known_epoch = max((s.epoch.epoch for s in snap.reachable if s.epoch), default=0)
            top, age = self._newest_epoch(lock)
            if top > known_epoch:
                self.fails = 0
                self._event("resolved", f"epoch {top} was written meanwhile (by another controller): not acting")
                return
            if age is not None and age < self.config.block_s:
                self._event("blocked", f"the last promotion was {age:.1f} s ago (< {self.config.block_s:g} s): "
                            "not failing over again automatically")
                return
            dead = confirm_dead(snap)
            old = dead.primary.endpoint if dead.primary else ""
            self._hook(self.config.pre_hook, {"IOTGW_OLD_PRIMARY": old})
            try:
                result = failover([], self.admin, snapshot=snap, apply_timeout=self.config.apply_timeout,
                                  by=AUTOMATIC)
            except FailoverError as exc:
                self._event("failover-failed", str(exc))
                self._metrics.failed()
                return
            self.failovers.append(result)
            self.fails = 0
            self.blocked_until = time.monotonic() + self.config.block_s
            self._event("failover", f"failed over from {old} to {result.new_primary} (epoch {result.epoch}) "
                        f"in {result.seconds:.2f} s", {"old": old, "new": result.new_primary,
                                                        "epoch": result.epoch, "steps": result.steps})
            self._metrics.failover()
            self._publish({"event": "failover", "old_primary": old, "primary": result.new_primary,
                           "epoch": result.epoch, "at": time.time()})
            self._hook(self.config.post_hook, {"IOTGW_OLD_PRIMARY": old, "IOTGW_NEW_PRIMARY": result.new_primary,
                                               "IOTGW_EPOCH": str(result.epoch)})
        finally:
            lock.release()

    def _handle_returning(self, snap: Snapshot) -> None:
        decision = analysis.writer_primary(snap)
        assert decision.primary is not None
        for ep in list(self.diverged):  # a rebuilt (or hand-repaired) server replicates again: forget it
            s = snap.get(ep)
            if s is not None and s.is_replica:
                del self.diverged[ep]
                self._diverged_at.pop(ep, None)
        for s in returning_primaries(snap):
            if s.writable:
                self._event("fenced", fence(s.endpoint, self.admin))
            if self._diverged_at.get(s.endpoint) == s.gtid_binlog:
                continue  # already reported; it stays fenced until someone rebuilds it
            try:
                r = rejoin(s.endpoint, decision.primary.endpoint, self.admin, self.config.repl)
            except (pymysql.MySQLError, OSError) as exc:
                self._event("error", f"rejoin of {s.endpoint} failed: {exc}")
                continue
            if r.rejoined:
                self._event("rejoined", r.steps[-1], {"server": s.endpoint})
                self._publish({"event": "rejoined", "server": s.endpoint, "primary": decision.primary.endpoint})
            else:
                self.diverged[s.endpoint] = r.diverged
                self._diverged_at[s.endpoint] = s.gtid_binlog
                self._event("diverged", r.steps[-1], {"server": s.endpoint, "gtids": r.diverged})
                self._publish({"event": "diverged", "server": s.endpoint, "gtids": r.diverged})

    def _hook(self, command: str, env: dict[str, str]) -> None:
        if not command:
            return
        try:
            done = subprocess.run(shlex.split(command), env={**os.environ, **env}, capture_output=True, text=True,
                                  timeout=30)
            self._event("hook", f"{command!r} exited {done.returncode}", {"stdout": done.stdout[-500:]})
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._event("hook", f"{command!r} failed: {exc}")

    def _publish(self, payload: dict[str, Any]) -> None:
        """A retained MQTT message for listeners other than the writer (which follows the epoch)."""
        if not self.config.mqtt:
            return
        from paho.mqtt import publish

        host, _, port = self.config.mqtt.rpartition(":")
        try:
            publish.single(self.config.mqtt_topic, json.dumps(payload), qos=1, retain=True, hostname=host,
                           port=int(port))
        except OSError as exc:
            self._event("error", f"MQTT publish to {self.config.mqtt} failed: {exc}")

    def _event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        ev = Event(time.time(), kind, message, data or {})
        self.events.append(ev)
        del self.events[:-500]  # bounded
        level = logging.WARNING if kind in ("failover", "diverged", "fenced", "failover-failed", "error") else \
            logging.INFO
        log.log(level, "%s: %s", kind, message)
        if self._on_event is not None:
            self._on_event(ev)


class _Metrics:
    """Prometheus metrics: failovers, and per server health and lag (a private registry per monitor)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.failovers = Counter("iotgw_failovers", "Automatic failovers done", registry=self.registry)
        self.failures = Counter("iotgw_failover_failures", "Automatic failovers that failed", registry=self.registry)
        self.healthy = Gauge("iotgw_server_healthy", "1 if the server is healthy", ["server", "role"],
                             registry=self.registry)
        self.lag = Gauge("iotgw_replica_lag_seconds", "Seconds_Behind_Master", ["server"], registry=self.registry)

    @classmethod
    def create(cls) -> _Metrics:
        return cls()

    def failover(self) -> None:
        self.failovers.inc()

    def failed(self) -> None:
        self.failures.inc()

    def observe(self, snap: Snapshot, decision: analysis.PrimaryDecision) -> None:
        roles = analysis.roles(snap, decision)
        health = {h.server.endpoint: h for h in analysis.replica_health(snap, decision.primary)}
        for s in snap.servers:
            h = health.get(s.endpoint)
            ok = h.healthy if h else (s.reachable and roles[s.endpoint] == "primary")
            self.healthy.labels(s.endpoint, roles[s.endpoint]).set(1 if ok else 0)
            if h is not None and h.lag_s is not None:
                self.lag.labels(s.endpoint).set(h.lag_s)


def start_in_background(seeds: list[str], admin: Credentials, config: MonitorConfig | None = None,
                        on_event: Callable[[Event], None] | None = None) -> tuple[Monitor, threading.Thread]:
    """Run a monitor in a daemon thread (for `[failover] auto = true` inside the gateway); `monitor.stop()` ends it.

    The gateway's writer does not need to hear from it: it follows the epoch the failover writes.
    """
    mon = Monitor(seeds, admin, config, on_event)
    thread = threading.Thread(target=mon.run, name="iotgw-failover-monitor", daemon=True)
    thread.start()
    return mon, thread


def from_config_table(table: dict[str, Any]) -> MonitorConfig | None:
    """The `[failover]` section of the gateway's config: None unless `auto = true`. Errors name the key.

    Keys: auto, interval, failcount, block_s, rejoin, apply_timeout, pre_hook, post_hook, mqtt, mqtt_topic,
    repl_user, repl_password (or repl_password_env / repl_password_file).
    """
    table = dict(table)
    auto = table.pop("auto", False)
    if not isinstance(auto, bool):
        raise ConfigError(f"failover.auto: expected true or false, got {auto!r}")
    repl_user = table.pop("repl_user", "repl")
    secret = SimpleNamespace(**{k: table.pop(f"repl_{k}", "") for k in ("password", "password_env", "password_file")})
    known = {f.name for f in fields(MonitorConfig)} - {"repl"}
    cfg = MonitorConfig(repl=(repl_user, resolve_secret("failover.repl", secret)))
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"failover.{key}: unknown key (known: auto, repl_user, repl_password*, "
                              f"{', '.join(sorted(known))})")
        default = getattr(cfg, key)
        ok = (isinstance(value, bool) if isinstance(default, bool) else
              isinstance(value, int | float) and not isinstance(value, bool) if isinstance(default, int | float) else
              isinstance(value, str))
        if not ok:
            raise ConfigError(f"failover.{key}: expected a value like {default!r}, got {value!r}")
        setattr(cfg, key, type(default)(value))
    if cfg.failcount < 1 or cfg.interval <= 0:
        raise ConfigError("failover.failcount must be at least 1 and failover.interval above 0")
    return cfg if auto else None
