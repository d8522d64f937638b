"""The status routes on the gateway's HTTP server: `/` (the page), `/status/view`, `/api/status`, assets.

The token rule is the gateway's: with `[http] token` set, the data routes want an `Authorization: Bearer
<token>` header (compared in constant time; a token in the query string is refused, it would end up in
logs). A browser cannot send a header when it opens a page, so `/` then serves the page without data and
its script sends the token it finds after `#token=` in the address (a fragment never leaves the browser). A
server bound beyond loopback must have a token: the page names every device and database server.
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
Answer = tuple[int, str, bytes]


def asset(name: str) -> bytes:
    """A file of the package's `static/` folder (package data: installed with the wheel)."""
    return resources.files("gateway.status").joinpath("static", name).read_bytes()


def bearer(headers: Any) -> str:
    """The token of an `Authorization: Bearer <token>` header ('' without one)."""
    value = (headers.get("Authorization", "") if headers is not None else "") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def add_status_routes(http: Any, document: Callable[[], dict[str, Any]], token: str | None = None) -> None:
    """Serve the status page and its JSON on `http` (a `gateway.metrics.HttpServer`)."""
    host = str(http.server.server_address[0])
    if not token and host not in LOOPBACK:
        raise ConfigError(f"http.token: the HTTP server is bound to {host}; the status page needs a token there")

    def text(status: int, message: str) -> Answer:
        return status, "text/plain; charset=utf-8", (message + "\n").encode()

    def guarded(produce: Callable[[], Answer]) -> Callable[..., Answer]:
        def handler(query: str, headers: Any = None) -> Answer:
            if "token" in urllib.parse.parse_qs(query):
                return text(400, "send the token in an 'Authorization: Bearer' header, not in the URL")
            if token and not hmac.compare_digest(bearer(headers).encode(), token.encode()):
                return text(403, "missing or wrong token (Authorization: Bearer <token>)")
            return produce()
        return handler

    def page(query: str, headers: Any = None) -> Answer:
        # With a token and no header (a browser opening the page), the page comes without data: its script
        # fetches the view with the token from the address's #token= fragment.
        doc = None if token and not hmac.compare_digest(bearer(headers).encode(), token.encode()) else document()
        return 200, "text/html; charset=utf-8", render_page(doc).encode()

    def add(path: str, handler: Callable[..., Answer]) -> None:
        http.add_route(path, handler, headers=True)  # the token travels in a header: the route needs them

    add("/", page)
    add("/status/view", guarded(lambda: (200, "text/html; charset=utf-8", render_view(document()).encode())))
    add("/api/status", guarded(lambda: (200, "application/json", (json.dumps(document()) + "\n").encode())))
    for path, ctype in ASSETS.items():  # code and style only, no data: served without a token
        body = asset(path.rsplit("/", 1)[1])
        add(path, lambda _q, _h=None, body=body, ctype=ctype: (200, ctype, body))
