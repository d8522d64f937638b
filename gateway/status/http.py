"""The status routes on the gateway's HTTP server: `/` (the page), `/status/view`, `/api/status`, assets.

The token rule is the gateway's: with `[http] token` set, every route here wants `?token=…` (compared in
constant time; the page passes it on to its own requests); a server bound beyond loopback must have one,
because the page names every device and database server.
"""

from __future__ import annotations

import hmac
import json
import urllib.parse
from collections.abc import Callable
from importlib import resources
from typing import Any

from gateway.config import ConfigError
from gateway.status.page import render_page, render_view

ASSETS = {"/static/status.js": "text/javascript; charset=utf-8", "/static/status.css": "text/css; charset=utf-8"}
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def asset(name: str) -> bytes:
    """A file of the package's `static/` folder (package data: installed with the wheel)."""
    return resources.files("gateway.status").joinpath("static", name).read_bytes()


def add_status_routes(http: Any, document: Callable[[], dict[str, Any]], token: str | None = None) -> None:
    """Serve the status page and its JSON on `http` (a `gateway.metrics.HttpServer`)."""
    host = str(http.server.server_address[0])
    if not token and host not in LOOPBACK:
        raise ConfigError(f"http.token: the HTTP server is bound to {host}; the status page needs a token there")

    def allowed(query: str) -> bool:
        if not token:
            return True
        given = urllib.parse.parse_qs(query).get("token", [""])[0]
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(produce: Callable[[str], tuple[int, str, bytes]]) -> Callable[[str], tuple[int, str, bytes]]:
        def handler(query: str) -> tuple[int, str, bytes]:
            if not allowed(query):
                return 403, "text/plain; charset=utf-8", b"missing or wrong token (?token=...)\n"
            return produce(query)
        return handler

    def page(query: str) -> tuple[int, str, bytes]:
        given = urllib.parse.parse_qs(query).get("token", [""])[0]
        return 200, "text/html; charset=utf-8", render_page(document(), given).encode()

    def view(_query: str) -> tuple[int, str, bytes]:
        return 200, "text/html; charset=utf-8", render_view(document()).encode()

    def api(_query: str) -> tuple[int, str, bytes]:
        return 200, "application/json", (json.dumps(document()) + "\n").encode()

    http.routes["/"] = guarded(page)
    http.routes["/status/view"] = guarded(view)
    http.routes["/api/status"] = guarded(api)
    for path, ctype in ASSETS.items():
        body = asset(path.rsplit("/", 1)[1])
        http.routes[path] = guarded(lambda _q, body=body, ctype=ctype: (200, ctype, body))
