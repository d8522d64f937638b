"""Metrics (Prometheus) and the small HTTP server for /metrics, /healthz and routes other parts add."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


Handler = Callable[[str], tuple[int, str, bytes]]  # query string -> (status, content type, body)


class HttpServer:
    """A tiny HTTP server (stdlib) bound to loopback by default; routes are added by path."""

    def __init__(self, host: str, port: int) -> None:
        self.routes: dict[str, Handler] = {}
        routes = self.routes

        class RequestHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path, _, query = self.path.partition("?")
                handler = routes.get(path)
                if handler is None:
                    status, ctype, body = 404, "text/plain", b"not found\n"
                else:
                    try:
                        status, ctype, body = handler(query)
                    except Exception as exc:  # a failing route must not kill the server
                        log.exception("http %s failed", path)
                        status, ctype, body = 500, "text/plain", f"error: {exc}\n".encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args) -> None:
                log.debug("http: " + fmt, *args)

        self.server = ThreadingHTTPServer((host, port), RequestHandler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

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
