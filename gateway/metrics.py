"""Metrics (Prometheus) and the small HTTP server for /metrics, /healthz and routes other parts add."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class Metrics:
    """The gateway's metrics, in a registry of their own (no global state: several gateways per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("iotgw_received", "Messages received", ["source"], registry=r)
        self.spooled = Counter("iotgw_spooled", "Readings committed to the spool", registry=r)
        self.quarantined = Counter("iotgw_quarantined", "Messages quarantined", ["reason"], registry=r)
        self.written = Counter("iotgw_written", "Readings written to the database", registry=r)
        self.write_errors = Counter("iotgw_write_errors", "Failed database writes (retried)", registry=r)
        self.spool_depth = Gauge("iotgw_spool_depth", "Readings held in the spool", registry=r)
        self.write_latency = Histogram("iotgw_write_seconds", "Time to write one batch", registry=r,
                                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.commit_latency = Histogram("iotgw_spool_commit_seconds", "Time of one spool group commit", registry=r,
                                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
        self.worker_failures = Counter("iotgw_worker_failures", "Worker threads found dead or failed", ["worker"],
                                       registry=r)
        self.broker_dropped = Gauge("iotgw_broker_dropped_messages",
                                    "The broker's $SYS/broker/publish/messages/dropped (since it started)", registry=r)
        self.broker_dropped_seen = Counter("iotgw_broker_dropped_seen",
                                           "Growth of the broker's dropped-messages count seen by this gateway",
                                           registry=r)

    def add_ack_gate(self, held: Callable[[], tuple[int, float]]) -> None:
        """Gauges of held-back end-to-end acks (ack modes database/replica), read at scrape time."""
        streams = Gauge("iotgw_acks_held_streams", "Streams whose readings wait for the database before their ack",
                        registry=self.registry)
        oldest = Gauge("iotgw_acks_held_oldest_seconds", "How long the longest-waiting stream has waited for its ack",
                       registry=self.registry)
        streams.set_function(lambda: held()[0])
        oldest.set_function(lambda: held()[1])

    def add_device_statuses(self, snapshot: Callable[[], list]) -> None:
        """Per collector node gauges (dropped, cached, store_err) from a StatusBook snapshot, read at scrape time."""
        self.registry.register(_StatusCollector(snapshot))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StatusCollector:
    """Exposes the latest collector statuses as gauges (bounded: the StatusBook is)."""

    def __init__(self, snapshot: Callable[[], list]) -> None:
        self.snapshot = snapshot

    def describe(self) -> list:
        return []

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        labels = ["site", "device", "node"]
        families = {
            "dropped": GaugeMetricFamily("iotgw_device_dropped", "Samples a collector could not record since boot "
                                         "(cache full)", labels=labels),
            "cached": GaugeMetricFamily("iotgw_device_cached", "Records in a collector's cache", labels=labels),
            "store_err": GaugeMetricFamily("iotgw_device_store_errors", "A collector's storage failures since boot",
                                           labels=labels),
        }
        for st in self.snapshot():
            for name, family in families.items():
                value = getattr(st, name)
                if value is not None:
                    family.add_metric([st.site, st.device, st.node], value)
        yield from families.values()


Handler = Callable[..., tuple[int, str, bytes]]  # (query[, headers]) -> (status, content type, body)

_SECRET_IN_TEXT = re.compile(r"(?i)(token|password|passwd|secret)=[^&\s]*|(bearer\s+)\S+")


def redact(text: str) -> str:
    """`text` with anything that looks like a token or password (query parameters, bearer values) replaced."""
    return _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}=<redacted>" if m.group(1) else f"{m.group(2)}<redacted>", text)


def bearer_token(headers) -> str:  # noqa: ANN001 - http.client.HTTPMessage or a dict
    """The token of an `Authorization: Bearer <token>` header, or '' when there is none."""
    value = headers.get("Authorization", "") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class _BoundedServer(ThreadingHTTPServer):
    """A threading server that serves at most `max_connections` at once and answers 503 beyond."""

    daemon_threads = True
    max_connections = 32

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 - socketserver's signature
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close"
                                b"\r\n\r\nbusy\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HttpServer:
    """A tiny HTTP server (stdlib) bound to loopback by default; routes are added by path.

    Hardened for an untrusted network: a request must arrive within `timeout_s` (a slow client cannot hold a
    thread), at most `max_connections` are served at once, a failing route answers a generic 500 (details go to
    the log, with tokens and passwords redacted), and request lines are never logged with their secrets.
    """

    def __init__(self, host: str, port: int, *, timeout_s: float = 10.0, max_connections: int = 32) -> None:
        self.routes: dict[str, Handler] = {}
        self._with_headers: set[str] = set()
        routes, with_headers = self.routes, self._with_headers

        class RequestHandler(BaseHTTPRequestHandler):
            timeout = timeout_s  # socket timeout for reading the request and writing the answer

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path, _, query = self.path.partition("?")
                handler = routes.get(path)
                if handler is None:
                    status, ctype, body = 404, "text/plain", b"not found\n"
                else:
                    try:
                        status, ctype, body = handler(query, self.headers) if path in with_headers else handler(query)
                    except Exception as exc:  # a failing route must not kill the server, nor tell its insides
                        log.error("http %s failed: %s", path, redact(f"{type(exc).__name__}: {exc}"))
                        status, ctype, body = 500, "text/plain", b"internal error\n"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args) -> None:
                log.debug("http: %s", redact(fmt % args))

        server_cls = type("BoundedServer", (_BoundedServer,), {"max_connections": max_connections})
        self.server = server_cls((host, port), RequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def add_route(self, path: str, handler: Handler, *, headers: bool = False) -> None:
        """Serve `path` with `handler(query)`, or `handler(query, headers)` when `headers` is true."""
        self.routes[path] = handler
        if headers:
            self._with_headers.add(path)
        else:
            self._with_headers.discard(path)

    def add_json_route(self, path: str, produce: Callable[[], tuple[int, dict]]) -> None:
        def handler(_query: str) -> tuple[int, str, bytes]:
            status, doc = produce()
            return status, "application/json", (json.dumps(doc) + "\n").encode()

        self.routes[path] = handler

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metrics_route(metrics: Metrics) -> Handler:
    return lambda _q: (200, CONTENT_TYPE_LATEST, metrics.exposition())
