"""The page, the terminal view, the routes and the history bound, on a gateway without servers (SQLite sink,
no broker) or on the pure model."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from gateway import config as config_mod
from gateway.device_status import DeviceStatus
from gateway.metrics import HttpServer
from gateway.protocol import Reading
from gateway.service import Gateway
from gateway.status.cli import status as status_cmd
from gateway.status.http import add_status_routes
from gateway.status.model import GatewayFacts, NodeActivity, StatusInputs, build_status
from gateway.status.page import render_page, render_view
from gateway.status.service import StatusService
from gateway.status.term import render

NOW = 1_800_000_000_000
PAGE_TAGS = {"div", "p", "section", "h2", "h3", "table", "thead", "tbody", "tr", "th", "td", "b", "span", "ul", "li",
             "svg", "g", "rect", "text", "title", "line", "polyline", "circle", "figure", "figcaption", "dl", "dt",
             "dd", "code", "i"}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)

    def handle_data(self, data):
        self.text.append(data)


def hostile_doc(name: str, unit: str, payload: str, error: str) -> dict:
    facts = GatewayFacts(spool_limit=10, quarantine={name: 1}, quarantine_recent=[
        {"id": 1, "received_ms": NOW, "source": "mqtt", "topic": f"iot/s/{name}/reading", "reason": name,
         "detail": error, "raw": payload}], mqtt={"connected": False, "error": error, "url": "mqtt://x"})
    sts = [DeviceStatus("s", name, name[:16] or "a", 1, "online", "active", 0, None, 0, None, None, error[:16], 1000,
                        NOW)]
    act = [NodeActivity(name, name[:16] or "a", "s", 1, 2, NOW, NOW, 1.0, unit, "ok")]
    return build_status(StatusInputs(now_ms=NOW, started_ms=NOW - 10_000, statuses=sts, activity=act, gateway=facts,
                                     database_kind="sqlite", database_where=error))


def test_a_script_name_is_text_on_the_page():
    name, unit = "<script>alert(1)</script>", "<b>u</b>"
    doc = hostile_doc(name, unit, "<img src=x onerror=alert(2)>", "<iframe>")
    page = render_page(doc)
    parser = Tags()
    parser.feed(render_view(doc))
    assert parser.tags <= PAGE_TAGS
    text = "".join(parser.text)
    assert name in text and unit in text and "<img src=x onerror=alert(2)>" in text and "<iframe>" in text
    assert page.count("<script") == 1  # the page's own /static/status.js, nothing else
    console = Console(file=io.StringIO(), width=300, color_system=None)
    markup = "[red]boom[/red]"
    console.print(render(hostile_doc(markup, "[b]C", "", "")))
    assert markup in console.file.getvalue() and "[b]C" in console.file.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(min_size=1, max_size=40), unit=st.text(max_size=16), payload=st.text(max_size=60),
       error=st.text(max_size=40))
def test_any_text_stays_text(name, unit, payload, error):
    doc = hostile_doc(name, unit, payload, error)
    parser = Tags()
    parser.feed(render_view(doc))
    parser.close()
    assert parser.tags <= PAGE_TAGS
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(render(doc))  # rich markup in a name ("[bold]", "[/]") must neither raise nor style
    out = console.file.getvalue()
    if name.isprintable() and "[" in name and len(name) < 20:
        assert name in out


def _gateway(tmp_path, **http) -> Gateway:
    cfg = config_mod.parse({"mqtt": {"enabled": False}, "spool": {"path": str(tmp_path / "spool.db")},
                            "database": {"kind": "sqlite", "sqlite_path": str(tmp_path / "r.db")},
                            "http": {"listen": "127.0.0.1:0", **http}})
    return Gateway(cfg)


def test_history_stays_bounded_over_an_hour_of_simulated_time(tmp_path):
    gw = _gateway(tmp_path, enabled=False)
    clock = [1_000_000.0]
    svc = StatusService(gw, clock=lambda: clock[0], history_step_s=10.0)
    try:
        for second in range(2 * 3600):  # two hours, one tick a second, readings flowing all along
            clock[0] = 1_000_000.0 + second
            gw.metrics.received.labels("mqtt").inc(5)
            svc.activity.saw_all([Reading("d", "a", 1, second, "s", int(clock[0] * 1000), "rtc", 1.0, "C", False,
                                          "ok", int(clock[0] * 1000))])
            svc.tick(clock[0])
        hist = svc.history.to_dict()
        assert len(hist["points"]) == svc.history.capacity == 360
        assert hist["points"][-1]["t"] - hist["points"][0]["t"] == pytest.approx(3590)
        assert hist["points"][-1]["ingest"] == pytest.approx(5.0)
        doc = build_status(svc.inputs(clock[0]))
        assert len(json.dumps(doc["history"])) < 40_000
        # counted per minute: the 59 whole minutes before this one and this one so far
        assert 3540 < doc["devices"][0]["last_hour"] <= 3600
    finally:
        svc.stop()
        gw.spool.close()


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_routes_serve_page_view_api_and_assets(tmp_path):
    gw = _gateway(tmp_path)
    gw.start()
    try:
        base = f"http://127.0.0.1:{gw.http.port}"
        status, body = _get(base + "/api/status")
        assert status == 200 and json.loads(body)["format"] == "iotgw-status/1"
        for path, marker in (("/", b"<main id=\"main\">"), ("/status/view", b'<div id="view"'),
                             ("/static/status.js", b"/status/view"), ("/static/status.css", b"--bad")):
            status, body = _get(base + path)
            assert status == 200 and marker in body, path
        status, body = _get(base + "/healthz")
        assert json.loads(body)["alerts"] == []
    finally:
        gw.stop()


def test_token_is_a_bearer_header_never_a_query(tmp_path):
    http = HttpServer("127.0.0.1", 0)
    doc = hostile_doc("secret-device", "C", "", "")
    add_status_routes(http, lambda: doc, token="s3cret")
    http.start()
    try:
        base = f"http://127.0.0.1:{http.port}"
        assert _get(base + "/api/status")[0] == 403
        assert _get(base + "/api/status?token=s3cret")[0] == 400
        assert _get(base + "/status/view", {"Authorization": "Bearer wrong"})[0] == 403
        status, body = _get(base + "/api/status", {"Authorization": "Bearer s3cret"})
        assert status == 200 and json.loads(body)["devices"][0]["device"] == "secret-device"
        status, body = _get(base + "/")  # a browser opening the page: no data, the script brings it
        assert status == 200 and b"secret-device" not in body and b"loading" in body
    finally:
        http.stop()


def test_beyond_loopback_needs_a_token():
    http = HttpServer("0.0.0.0", 0)
    try:
        with pytest.raises(config_mod.ConfigError, match="http.token"):
            add_status_routes(http, lambda: {})
    finally:
        http.server.server_close()


def test_cli_names_the_url_it_cannot_reach():
    result = CliRunner().invoke(status_cmd, ["--url", "http://127.0.0.1:9", "--json"])
    assert result.exit_code == 1 and "http://127.0.0.1:9/api/status" in result.output


def test_the_demo_live_view_is_the_status_view(tmp_path):
    from gateway.demo import Demo
    from gateway.demo import render as demo_render

    gw = _gateway(tmp_path, enabled=False)
    try:
        demo = Demo(tmp_path, duration=1, rate=1, devices=1)
        demo.gateway = gw
        demo.event("FAULT: primary db1 killed")
        console = Console(file=io.StringIO(), width=160, color_system=None)
        console.print(demo_render(demo))
        out = console.file.getvalue()
        assert "database: SQLite" in out and "alerts (0)" in out and "FAULT: primary db1 killed" in out
    finally:
        gw.spool.close()
