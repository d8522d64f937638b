"""The gateway service: ingest → spool → drain → sink, with metrics, health and a clean shutdown."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path

from gateway.config import Config, ConfigError, resolve_secret, split_hostport
from gateway.drain import DrainWorker
from gateway.ingest.mqtt import MqttIngest
from gateway.ingest.serial import SerialIngest
from gateway.metrics import HttpServer, Metrics, metrics_route
from gateway.mqttconn import BrokerSettings
from gateway.sinks.base import Sink
from gateway.spool import Spool, SpoolWriter
from gateway.status.service import StatusService

log = logging.getLogger(__name__)


def broker_settings(cfg: Config) -> BrokerSettings:
    m = cfg.mqtt
    return BrokerSettings(host=m.host, port=m.port, username=m.username, password=resolve_secret("mqtt", m),
                          tls_ca=m.tls_ca, tls_cert=m.tls_cert, tls_key=m.tls_key, keepalive=m.keepalive,
                          session_expiry=m.session_expiry, receive_maximum=m.receive_maximum)


def make_sink(cfg: Config) -> Sink:
    """The sink the configuration asks for: local SQLite (default) or MySQL/MariaDB."""
    db = cfg.database
    if db.kind == "sqlite":
        from gateway.sinks.sqlite import SQLiteSink

        return SQLiteSink(db.sqlite_path)
    from gateway.sinks.replicated import from_config

    # Always the replication-aware writer: with one server it is that server once verified as primary.
    return from_config(db)


class Gateway:
    """One running gateway. `start()` returns at once; `stop()` shuts down cleanly."""

    def __init__(self, cfg: Config, *, sink: Sink | None = None) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        Path(cfg.spool.path).parent.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(cfg.spool.path, max_readings=cfg.spool.max_readings,
                           quarantine_max=cfg.spool.quarantine_max, resume_fraction=cfg.spool.resume_fraction)
        self.writer = SpoolWriter(self.spool, group_commit_ms=cfg.spool.group_commit_ms,
                                  group_max=cfg.spool.group_max, on_commit=self._on_commit)
        self.sink = sink if sink is not None else make_sink(cfg)
        self.drain = DrainWorker(self.spool, self.sink, batch_size=cfg.database.batch_size,
                                 retry_max_s=cfg.database.retry_max_s, on_write=self._on_write,
                                 on_error=lambda _m: self.metrics.write_errors.inc())
        self.status = StatusService(self)  # the status page's model; its tracker sees each reading ingested
        ingest_writer = self.status.activity.wrap(self.writer)
        self.mqtt: MqttIngest | None = None
        if cfg.mqtt.enabled:
            self.mqtt = MqttIngest(broker_settings(cfg), client_id=cfg.mqtt.client_id, prefix=cfg.mqtt.topic_prefix,
                                   spool=self.spool, writer=ingest_writer, on_message=self._on_message)
        self.serial = [SerialIngest(p.port, baud=p.baud, site=p.site, spool=self.spool, writer=ingest_writer,
                                    on_message=self._on_message) for p in cfg.serial]
        self.http: HttpServer | None = None
        if cfg.http.enabled:
            host, port = split_hostport(cfg.http.listen, "http.listen")
            self.http = HttpServer(host, port)
            self.http.routes["/metrics"] = metrics_route(self.metrics)
            self.http.add_json_route("/healthz", lambda: (200 if self.healthy() else 503, self.health()))
            from gateway.status.http import add_status_routes

            add_status_routes(self.http, self.status.document, token=resolve_secret("http", cfg.http, "token") or None)
            if cfg.database.kind == "mysql":  # HA group lookups for clients (gateway.connect(group=...))
                from gateway.ops.groups import GroupError, GroupService, Registry, add_group_routes
                from gateway.topology.conn import credentials_from_config

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
            from gateway.ops.monitor import from_config_table

            self._monitor_config = from_config_table(cfg.failover)
            if self._monitor_config and cfg.database.kind != "mysql":
                raise ConfigError("failover.auto: needs [database] kind = \"mysql\" with the topology's servers")
        self.stopped = threading.Event()

    # --- metrics hooks --------------------------------------------------------------------------
    def _on_message(self, source: str, reason: str | None) -> None:
        self.metrics.received.labels(source).inc()
        if reason:
            self.metrics.quarantined.labels(reason).inc()

    def _on_commit(self, entries: int, quarantined: int, seconds: float) -> None:
        self.metrics.spooled.inc(self.spool.last_stored)
        self.metrics.commit_latency.observe(seconds)

    def _on_write(self, rows: int, seconds: float) -> None:
        self.metrics.written.inc(rows)
        self.metrics.write_latency.observe(seconds)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.http:
            self.http.start()
            log.info("http: /metrics and /healthz on %s:%d", self.http.server.server_address[0], self.http.port)
        self.writer.start()
        self.drain.start()
        self.status.start()
        if self._monitor_config:
            from gateway.ops.monitor import start_in_background
            from gateway.topology.conn import credentials_from_config
            # The monitor logs its own events; the writer learns the new primary from the epoch it writes.
            self.monitor, _thread = start_in_background(list(self.cfg.database.servers),
                                                        credentials_from_config(self.cfg.database, admin=True),
                                                        self._monitor_config)
            log.info("failover monitor running inside the gateway (interval %.1f s, failcount %d)",
                     self._monitor_config.interval, self._monitor_config.failcount)
        for ingest in self._ingests():
            ingest.start()
        log.info("gateway started: spool %s, sink %s", self.cfg.spool.path, type(self.sink).__name__)

    def _ingests(self) -> list:
        return ([self.mqtt] if self.mqtt else []) + list(self.serial)

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop taking messages, commit what was received, drain the spool for up to `drain_timeout` s."""
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
        """Run until SIGTERM/SIGINT; exit code 0 on a clean stop, 1 if a worker failed."""
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        failed = None
        while not stop.wait(0.5):
            failed = self.writer.error or self.drain.error
            if failed:
                log.error("stopping: a worker failed: %s", failed)
                break
        self.stop()
        return 1 if failed else 0

    # --- health ---------------------------------------------------------------------------------
    def healthy(self) -> bool:
        return self.writer.is_alive() and self.drain.is_alive() and self.writer.error is None

    def health(self) -> dict:
        return {
            "status": "ok" if self.healthy() else "failing",
            "spool_depth": self.spool.depth,
            "spool_full": self.spool.full,
            "database_available": self.drain.available,
            "database_error": self.drain.last_error,
            "mqtt_connected": self.mqtt.connected if self.mqtt else None,
            "mqtt_error": self.mqtt.last_error if self.mqtt else None,
            "serial": {s.port_name: s.connected for s in self.serial},
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
