"""The gateway service: ingest → spool → drain → sink, with metrics, health and a clean shutdown."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from gateway.acks import make_gate
from gateway.config import Config, ConfigError, resolve_secret, split_hostport
from gateway.device_status import StatusBook
from gateway.drain import DrainWorker
from gateway.ingest.mqtt import MqttIngest
from gateway.ingest.serial import SerialIngest
from gateway.metrics import HttpServer, Metrics, metrics_route
from gateway.mqttconn import BrokerSettings
from gateway.ops.groups import GroupError, GroupService, Registry, add_group_routes
from gateway.ops.monitor import from_config_table, start_in_background
from gateway.sinks.base import Sink
from gateway.sinks.replicated import from_config
from gateway.sinks.sqlite import SQLiteSink
from gateway.spool import Spool, SpoolWriter
from gateway.status.http import add_status_routes
from gateway.status.service import StatusService
from gateway.topology.conn import credentials_from_config

log = logging.getLogger(__name__)


def broker_settings(cfg: Config) -> BrokerSettings:
    m = cfg.mqtt
    # A member of a shared group keeps no session: see MqttIngest.share_group for why.
    return BrokerSettings(host=m.host, port=m.port, user=m.username, password=resolve_secret("mqtt", m),
                          tls_ca=m.tls_ca, tls_cert=m.tls_cert, tls_key=m.tls_key, keepalive=m.keepalive,
                          session_expiry=0 if m.share_group else m.session_expiry,
                          receive_maximum=m.receive_maximum)


def all_broker_settings(cfg: Config) -> list[BrokerSettings]:
    """One BrokerSettings per configured broker: `mqtt.brokers`, or `mqtt.host`/`mqtt.port` when that is empty."""
    base = broker_settings(cfg)
    if not cfg.mqtt.brokers:
        return [base]
    return [dataclasses.replace(base, host=host, port=port)
            for host, port in (split_hostport(b, f"mqtt.brokers[{i}]") for i, b in enumerate(cfg.mqtt.brokers))]


def make_sink(cfg: Config) -> Sink:
    """The sink the configuration asks for: local SQLite (default) or MySQL/MariaDB."""
    db = cfg.database
    if db.kind == "sqlite":
        return SQLiteSink(db.sqlite_path)

    # Always the replication-aware writer: with one server it is that server once verified as primary.
    return from_config(db)


class Gateway:
    """One running gateway. `start()` returns at once; `stop()` shuts down cleanly."""

    def __init__(self, cfg: Config, *, sink: Sink | None = None) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        Path(cfg.spool.path).parent.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(cfg.spool.path, max_readings=cfg.spool.max_readings,
                           quarantine_max=cfg.spool.quarantine_max,
                           quarantine_max_bytes=cfg.spool.quarantine_max_bytes,
                           resume_fraction=cfg.spool.resume_fraction)
        # The latest status of every collector node (MQTT and serial); read by /metrics, the status page
        # and the drain, which upserts changes into the database's device_status table.
        self.statuses = StatusBook(cfg.health.max_device_statuses)
        self.metrics.add_device_statuses(self.statuses.snapshot)
        self.writer = SpoolWriter(self.spool, group_commit_ms=cfg.spool.group_commit_ms,
                                  group_max=cfg.spool.group_max, on_commit=self._on_commit)
        self.sink = sink if sink is not None else make_sink(cfg)
        self.drain = DrainWorker(self.spool, self.sink, batch_size=cfg.database.batch_size,
                                 retry_max_s=cfg.database.retry_max_s, on_write=self._on_write,
                                 on_error=lambda _m: self.metrics.write_errors.inc(), statuses=self.statuses)
        # `[ack] after` = database/replica: end-to-end acks wait for the database (gateway.acks); None for spool.
        self.acks = make_gate(cfg, self.sink)
        if self.acks is None:
            # Acks come from the spool: during a burst the drain waits for it to end (the readings are durable
            # already; the drain's CPU, and the database servers' on the same machine, would only delay every
            # collector's ack).
            self.drain.yield_to = self.writer.bursting
        if self.acks is not None:
            self.metrics.add_ack_gate(self.acks.held)
            self.acks.on_acked = self.spool.raise_marks
        self.status = StatusService(self)  # the status page's model; its tracker sees each reading ingested
        ingest_writer = self.status.activity.wrap(self.writer)
        # One MQTT ingest per broker (`mqtt.brokers`); each acks on its own connection, i.e. on the broker the
        # reading came from. `self.mqtt` is the first (what /healthz and the status page show as "the" broker).
        self.mqtt: MqttIngest | None = None
        self.mqtt_more: list[MqttIngest] = []
        if cfg.mqtt.enabled:
            ingests = []
            for i, settings in enumerate(all_broker_settings(cfg)):
                ingest = MqttIngest(settings, client_id=cfg.mqtt.client_id, prefix=cfg.mqtt.topic_prefix,
                                    spool=self.spool, writer=ingest_writer, on_received=self._on_received,
                                    statuses=self.statuses,
                                    on_broker_dropped=functools.partial(self._on_broker_dropped, i, settings.url))
                ingest.ack_gate = self.acks
                ingest.share_group = cfg.mqtt.share_group
                ingests.append(ingest)
            self.mqtt, self.mqtt_more = ingests[0], ingests[1:]
        self.serial = [SerialIngest(p.port, baud=p.baud, site=p.site, spool=self.spool, writer=ingest_writer,
                                    on_received=self._on_received, statuses=self.statuses) for p in cfg.serial]
        for port in self.serial:
            port.ack_gate = self.acks
        # The broker's dropped-messages count as last seen (kept in the spool, so drops while this gateway was
        # down are noticed after a restart too); growth makes /healthz "degraded" for a while.
        # Per broker (by its place in `mqtt.brokers`): each counts its own drops.
        self._dropped_seen: dict[int, int] = {}
        self._dropped_at: float | None = None
        self._dropped_growth = 0
        self._dropped_lock = threading.Lock()  # one ingest thread per broker reports
        self._failures: dict[str, str] = {}  # worker name -> why it is considered dead
        self._failures_lock = threading.Lock()  # the watchdog loop and the HTTP threads both check
        self._stopping = False
        self._monitor_thread: threading.Thread | None = None
        self.http: HttpServer | None = None
        if cfg.http.enabled:
            host, port = split_hostport(cfg.http.listen, "http.listen")
            self.http = HttpServer(host, port)
            self.http.routes["/metrics"] = metrics_route(self.metrics)
            self.http.add_json_route("/healthz", lambda: (200 if self.healthy() else 503, self.health()))
            add_status_routes(self.http, self.status.document, token=resolve_secret("http", cfg.http, "token") or None)
            if cfg.database.kind == "mysql":  # HA group lookups for clients (gateway.connect(group=...))
                creds = credentials_from_config(cfg.database)
                try:
                    add_group_routes(self.http, GroupService(Registry(list(cfg.database.servers), creds), creds),
                                     token=resolve_secret("http", cfg.http, "token") or None)
                except GroupError as exc:
                    raise ConfigError(f"http.token: {exc}") from None
        self.metrics.spool_depth.set_function(lambda: self.spool.depth)
        self.monitor = None  # the automatic failover monitor, with [failover] auto = true
        self._monitor_config = None
        if cfg.failover:
            self._monitor_config = from_config_table(cfg.failover)
            if self._monitor_config and cfg.database.kind != "mysql":
                raise ConfigError("failover.auto: needs [database] kind = \"mysql\" with the topology's servers")
        self.stopped = threading.Event()

    # --- metrics hooks --------------------------------------------------------------------------
    def _on_received(self, source: str, count: int, reasons: list[str]) -> None:
        self.metrics.received.labels(source).inc(count)
        for reason in reasons:
            self.metrics.quarantined.labels(reason).inc()

    def _on_commit(self, entries: int, quarantined: int, seconds: float) -> None:
        self.metrics.spooled.inc(self.spool.last_stored)
        self.metrics.commit_latency.observe(seconds)

    def _on_write(self, rows: int, seconds: float) -> None:
        self.metrics.written.inc(rows)
        self.metrics.write_latency.observe(seconds)
        if self.acks is not None:
            self.acks.wake()

    def _on_broker_dropped(self, index: int, url: str, value: int) -> None:
        """Broker number `index` (at `url`) published its dropped-messages count (every sys_interval)."""
        # The first broker's count keeps the spool key it always had; the others get one each.
        key = "broker_dropped_seen" if index == 0 else f"broker_dropped_seen.{index}"
        with self._dropped_lock:
            if index not in self._dropped_seen:
                self._dropped_seen[index] = self.spool.read_counter(key) or 0
            last = self._dropped_seen[index]
            growth = value - last if value >= last else value  # a smaller count: the broker restarted from 0
            self._dropped_seen[index] = value
            self.metrics.broker_dropped.set(sum(self._dropped_seen.values()))
            if growth > 0:
                self.metrics.broker_dropped_seen.inc(growth)
                self._dropped_growth += growth
                self._dropped_at = time.monotonic()
        if growth > 0:
            log.warning("broker dropped %d messages (%s, %d since it started): messages published to this gateway "
                        "were lost before it could take them; set max_queued_messages 0 (and persistence true) in "
                        "mosquitto.conf, see docs/operations.md", growth, url, value)
        if value != last:
            self.spool.write_counter(key, value)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.http:
            self.http.start()
            log.info("http: /metrics and /healthz on %s:%d", self.http.server.server_address[0], self.http.port)
        self.writer.start()
        self.drain.start()
        if self.acks is not None:
            self.acks.start()
        self.status.start()
        if self._monitor_config:
            # The monitor logs its own events; the writer learns the new primary from the epoch it writes.
            self.monitor, self._monitor_thread = start_in_background(list(self.cfg.database.servers),
                                                        credentials_from_config(self.cfg.database, admin=True),
                                                        self._monitor_config)
            log.info("failover monitor running inside the gateway (interval %.1f s, failcount %d)",
                     self._monitor_config.interval, self._monitor_config.failcount)
        for ingest in self._ingests():
            ingest.start()
        log.info("gateway started: spool %s, sink %s", self.cfg.spool.path, type(self.sink).__name__)

    def _ingests(self) -> list:
        return ([self.mqtt] if self.mqtt else []) + self.mqtt_more + list(self.serial)

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop taking messages, commit what was received, drain the spool for up to `drain_timeout` s."""
        self._stopping = True
        if self.monitor is not None:
            self.monitor.stop()
        for ingest in self._ingests():
            ingest.stop()
        for ingest in self._ingests():
            ingest.join(timeout=5)
        self.writer.stop()
        self.writer.join(timeout=10)
        deadline = time.monotonic() + drain_timeout
        while self.spool.depth and time.monotonic() < deadline and self.drain.is_alive():
            time.sleep(0.05)
        if self.acks is not None:
            self.acks.stop()
            self.acks.join(timeout=10)
        self.drain.stop()
        self.drain.join(timeout=10)
        self.status.stop()
        if self.http:
            self.http.stop()
        left = self.spool.depth
        self.spool.close()
        log.info("gateway stopped; %d readings stay in the spool for the next start", left)
        self.stopped.set()

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT; exit code 0 on a clean stop, 1 if a worker failed.

        Every worker is checked every `health.check_interval_s`. When one died, /healthz answers "failing" with
        the reason for `health.linger_s`, then the service stops; a backstop ends the process with exit code 1
        after `health.exit_within_s` even if the shutdown hangs, so systemd restarts it in bounded time.
        """
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        h = self.cfg.health
        failed: dict[str, str] = {}
        while not stop.wait(h.check_interval_s):
            failed = self.failures()
            if failed:
                break
        if not failed:
            self.stop()
            return 0
        backstop = threading.Timer(h.exit_within_s, lambda: os._exit(1))
        backstop.daemon = True
        backstop.start()
        log.error("stopping: worker failed: %s", "; ".join(f"{k}: {v}" for k, v in failed.items()))
        stop.wait(max(0.0, h.linger_s))
        self.stop(drain_timeout=min(1.0, h.exit_within_s / 4))
        return 1

    # --- health ---------------------------------------------------------------------------------
    def _workers(self) -> list[tuple[str, threading.Thread, BaseException | None]]:
        workers: list[tuple[str, threading.Thread, BaseException | None]] = [
            ("spool-writer", self.writer, self.writer.error), ("drain", self.drain, self.drain.error)]
        if self.mqtt:
            workers.append(("mqtt-ingest", self.mqtt, self.mqtt.error))
        workers += [(f"mqtt-ingest {m.settings.url}", m, m.error) for m in self.mqtt_more]
        workers += [(f"serial {s.port_name}", s, s.error) for s in self.serial]
        if self._monitor_thread is not None:
            workers.append(("failover-monitor", self._monitor_thread, self.monitor.error if self.monitor else None))
        if self.acks is not None:
            workers.append(("ack-gate", self.acks, self.acks.error))
        return workers

    def failures(self) -> dict[str, str]:
        """Workers that died or failed (empty while all are well); each newly found one counts in /metrics."""
        with self._failures_lock:
            if not self._stopping:
                self._find_failures()
            return dict(self._failures)

    def _find_failures(self) -> None:
        for name, thread, error in self._workers():
            if name in self._failures:
                continue
            why = None
            if error is not None:
                why = f"failed: {type(error).__name__}: {error}"
            elif thread.ident is not None and not thread.is_alive():
                why = "thread ended"
            if why:
                self._failures[name] = why[:300]
                self.metrics.worker_failures.labels(name).inc()
                log.error("worker %s %s", name, why)

    def degraded(self) -> list[str]:
        """Problems that lose nothing here but need an operator (the broker dropped messages recently)."""
        problems = []
        if self._dropped_at is not None and time.monotonic() - self._dropped_at < self.cfg.health.broker_drops_degraded_s:
            problems.append(f"the broker dropped {self._dropped_growth} messages (set max_queued_messages 0 in "
                            "mosquitto.conf)")
        if self.acks is not None:
            streams, oldest = self.acks.held()
            if oldest >= self.cfg.ack.held_degraded_s:
                problems.append(f"acks held back for {oldest:.0f} s on {streams} streams (ack.after = "
                                f"{self.cfg.ack.after!r}): the collectors' caches are filling; "
                                f"{self.acks.last_error or 'the database has not stored their readings yet'}")
        return problems

    def _ack_health(self) -> dict:
        """The ack point and, in the database/replica modes, how many streams wait for an ack and how long."""
        if self.acks is None:
            return {"after": "spool"}
        streams, oldest = self.acks.held()
        return {"after": self.cfg.ack.after, "held_streams": streams, "oldest_held_s": oldest,
                "error": self.acks.last_error}

    def healthy(self) -> bool:
        return not self.failures()

    def health(self) -> dict:
        failures = self.failures()
        degraded = self.degraded()
        return {
            "status": "failing" if failures else "degraded" if degraded else "ok",
            "failures": failures,
            "degraded": degraded,
            "spool_depth": self.spool.depth,
            "spool_full": self.spool.full,
            "database_available": self.drain.available,
            "database_error": self.drain.last_error,
            "mqtt_connected": self.mqtt.connected if self.mqtt else None,
            "mqtt_error": self.mqtt.last_error if self.mqtt else None,
            "brokers": {m.settings.url: m.connected for m in ([self.mqtt] if self.mqtt else []) + self.mqtt_more},
            "broker_dropped": sum(self._dropped_seen.values()) if self._dropped_seen else None,
            "acks": self._ack_health(),
            "serial": {s.port_name: s.connected for s in self.serial},
            "devices": len(self.statuses),
            "alerts": self.status.alerts(),
        }


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (log.format = "json")."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
