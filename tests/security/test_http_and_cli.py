"""The HTTP API and the CLI with untrusted data: the group-lookup token travels in a header and shows up in no
log line and no error text; a failing route answers a generic 500; the connection count is bounded; quarantined
device bytes reach the terminal escaped; check-broker reports what it can see."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
import urllib.error
import urllib.request

import pymysql
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.client import groups as gc
from gateway.metrics import HttpServer
from gateway.ops import groups as g
from gateway.protocol import Rejected
from gateway.sandbox.mosquitto import start_standalone, stock_config
from gateway.sandbox.ports import free_port
from gateway.spool import Entry, Spool, quarantined
from gateway.topology.conn import Credentials

TOKEN = "tok-9f8e7d6c5b4a"


@pytest.fixture
def server():
    http = HttpServer("127.0.0.1", 0, timeout_s=1.0, max_connections=4)
    dead = f"127.0.0.1:{free_port()}"  # nobody listens: every lookup fails inside the route
    creds = Credentials("iotgw", "pw", connect_timeout=0.5)
    g.add_group_routes(http, g.GroupService(g.Registry([dead], creds), creds), token=TOKEN)
    http.start()
    yield http
    http.stop()


def test_failed_lookups_never_show_the_token(server, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{server.port}"
    errors = []
    for token in (TOKEN, "wrong-" + TOKEN, None):  # right token (the route fails), wrong token, none
        with pytest.raises(pymysql.err.OperationalError) as exc:
            gc.http_lookup(url, token)("sensors", True)
        errors.append(str(exc.value))
    assert "404" in errors[0] and "403" in errors[1] and "403" in errors[2]  # 404: no registry reachable
    with pytest.raises(pymysql.err.OperationalError) as exc:  # the gateway is down: connection refused
        gc.http_lookup(f"http://127.0.0.1:{free_port()}", TOKEN)("sensors", True)
    errors.append(str(exc.value))
    # A route failing with a secret in its exception: a generic 500 body, the log line redacted.
    def boom(_query: str) -> tuple[int, str, bytes]:
        raise RuntimeError(f"could not ask with token={TOKEN} (Authorization: Bearer {TOKEN})")

    server.add_route("/boom", boom)
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(f"{url}/boom", timeout=5)
    assert http_err.value.code == 500 and http_err.value.read() == b"internal error\n"
    # The token in the URL (an old client) is refused, and even then not logged.
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(f"{url}/groups/lookup?name=x&token={TOKEN}", timeout=5)
    assert http_err.value.code == 400
    cli = CliRunner().invoke(main, ["group", "lookup", "sensors", "--url", url], env={"IOTGW_HTTP_TOKEN": TOKEN})
    assert cli.exit_code != 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "http /boom failed: RuntimeError" in logged  # the failure itself is logged, for the operator
    for text in (*errors, logged, cli.output):
        assert TOKEN not in text


def test_slow_clients_time_out_and_connections_are_bounded(server):
    url = f"http://127.0.0.1:{server.port}/metrics"
    server.routes["/metrics"] = lambda _q: (200, "text/plain", b"ok\n")
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]  # send nothing
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", server.port))
        extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert extra.recv(100).startswith(b"HTTP/1.1 503")  # over the bound: refused at once
        extra.close()
        time.sleep(1.5)  # the idle ones time out after timeout_s and free their slots
        assert urllib.request.urlopen(url, timeout=5).read() == b"ok\n"
    finally:
        for s in idle:
            s.close()


def test_quarantine_listing_escapes_control_characters(tmp_path):
    spool = Spool(tmp_path / "spool.db")
    raw = b"\x1b]0;pwned\x07\x1b[2J{\"v\":1}\xff\x00"
    spool.commit_group([Entry(
        quarantined("mqtt", "iot/s/\x1b[31mred/reading", "s", Rejected("not_json"), raw, 1))])
    spool.close()
    (tmp_path / "c.toml").write_text(f'[spool]\npath = "{tmp_path / "spool.db"}"\n')
    out = CliRunner().invoke(main, ["spool", "quarantine", "--config", str(tmp_path / "c.toml")]).output
    assert "\x1b" not in out and "\x07" not in out and "\x00" not in out
    assert "\\x1b]0;pwned\\x07" in out and "\\xff" in out
    row = sqlite3.connect(tmp_path / "spool.db").execute("SELECT raw, raw_len FROM quarantine").fetchone()
    assert row == (raw, len(raw))
    spool = Spool(tmp_path / "spool.db")
    spool.commit_group([Entry(
        quarantined("mqtt", "t", "s", Rejected("too_large"), b"[" * 5000, 2))])
    spool.close()
    out = CliRunner().invoke(main, ["spool", "quarantine", "--config", str(tmp_path / "c.toml")]).output
    assert "[5000 bytes, first 1024 kept]" in out


@pytest.mark.servers
def test_check_broker_reports_version_and_drops(tmp_path):
    port = free_port()
    broker = start_standalone(tmp_path / "b", stock_config(tmp_path / "b", port, sys_interval=1), port)
    try:
        (tmp_path / "c.toml").write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n')
        out = CliRunner().invoke(main, ["check-broker", "--config", str(tmp_path / "c.toml"), "--wait", "5"])
        assert out.exit_code == 0, out.output
        assert "version" in out.output and "mosquitto version 2." in out.output
        assert "publish/messages/dropped" in out.output and "max_queued_messages" in out.output
    finally:
        broker.stop()
