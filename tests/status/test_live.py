"""The status page, `iotgw status --json` and `--watch` against a real chain: a sandbox (MariaDB primary + 2
replicas, Mosquitto), `iotgw run` with its own failover monitor, simulated collectors, headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from gateway.protocol import encode_reading
from gateway.sandbox import Sandbox
from gateway.sandbox.launch import wait_for
from tests.ingest.helpers import Background, sim_for
from tests.status.helpers import Collectors, api_status, chromium, endpoint_of, start_gateway_with_monitor

pytestmark = [pytest.mark.servers, pytest.mark.slow]

HOSTILE_UNIT = "<b>u</b>"
HOSTILE_PAYLOAD = b"<script>window.__pwned=1</script>"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A sandbox and a gateway with its failover monitor; collectors' statuses published (retained)."""
    sb = Sandbox.up(tmp_path_factory.mktemp("status-sandbox"), replicas=2, broker=True)
    gw = None
    try:
        gw, url = start_gateway_with_monitor(sb, tmp_path_factory.mktemp("status-gateway"))
        pub = Collectors(sb, gw.config["mqtt"]["topic_prefix"])
        for dev in ("dev-001", "dev-002", "dev-003", "quiet-001"):
            pub.status(dev, period=1000)  # one reading a second expected: silent after 3 s without one
        pub.status("evil-1", period=600_000)
        pub.status("pair-1", "a", role="active", period=600_000)
        pub.status("pair-1", "b", role="standby", period=600_000)
        yield sb, gw, url, pub
        pub.close()
    finally:
        if gw is not None:
            gw.terminate()
        sb.down()


def _stable(doc: dict) -> dict:
    """The document without the two moments it names: when it was built and when the topology was probed."""
    doc = {k: v for k, v in doc.items() if k != "generated_ms"}
    doc["database"] = {k: v for k, v in doc["database"].items() if k != "observed_ms"}
    return doc


def test_cli_json_equals_api_and_watch_shows_the_primary(chain, tmp_path):
    sb, gw, url, _pub = chain
    report = Background(sim_for(gw, sb, devices=3, count=5, rate=50, device_prefix="dev", ack_timeout=3)).join()
    assert report.unacked == 0
    wait_for(lambda: len([d for d in api_status(url)["devices"] if d["last_reading_ms"]]) == 3, 30,
             "the three devices' readings in /api/status")
    # Every device here announced a 1 s period: 3 s after its last reading (quiet-001: after its status) it
    # turns silent, which changes the document. Wait for all four flips, so none can fall between the
    # documents compared below (the CLI alone takes seconds to start on a loaded machine).
    periodic = {"dev-001", "dev-002", "dev-003", "quiet-001"}
    wait_for(lambda: periodic <= {a["subject"] for a in api_status(url)["alerts"]}, 30,
             "all four 1 s devices marked silent")
    # Quiescent: the rates (over the last 10 s, sampled every tick) have fallen back to zero, and two
    # documents in a row are the same.
    wait_for(lambda: (api_status(url)["gateway"]["ingest_rate"], api_status(url)["gateway"]["drain_rate"]) == (0, 0),
             30, "ingest and drain rates back to zero")
    wait_for(lambda: _stable(api_status(url)) == _stable(api_status(url)), 30, "a steady status document")
    cli = [sys.executable, "-m", "gateway.cli", "status", "--url", url]
    before = _stable(api_status(url))
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60, check=True).stdout
    after = _stable(api_status(url))
    printed = _stable(json.loads(out))
    assert printed in (before, after), "iotgw status --json differs from /api/status"
    assert printed["database"]["primary"] == endpoint_of(sb, "db1")

    # --watch in a tmux pane (a private tmux server on its own socket, killed at the end)
    socket = f"iotgw-status-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket]
    subprocess.run([*tmux, "new-session", "-d", "-s", "w", "-x", "200", "-y", "100",
                    " ".join([*cli, "--watch", "--interval", "1"])], check=True, env={**os.environ, "COLUMNS": "200"})
    try:
        def pane() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", "w"], capture_output=True, text=True).stdout

        primary = endpoint_of(sb, "db1")
        wait_for(lambda: all(w in pane() for w in (f"primary {primary}", "servers", "dev-001")), 30,
                 f"the primary {primary}, the servers and the devices in the watch pane")
        print(pane())
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)


def test_page_follows_a_failover_and_marks_a_silent_device(chain, tmp_path):
    sb, gw, url, pub = chain
    busy = Background(sim_for(gw, sb, devices=3, count=3000, rate=15, device_prefix="dev", ack_timeout=3), 600)
    quiet_sim = sim_for(gw, sb, devices=1, count=3000, rate=3, device_prefix="quiet", ack_timeout=3)
    quiet = Background(quiet_sim, 600)
    pub.raw("evil-1", encode_reading("evil-1", "a", 1, 0, int(time.time() * 1000), "rtc", 1.5, HOSTILE_UNIT).encode())
    pub.raw("evil-1", HOSTILE_PAYLOAD)
    driver = chromium(tmp_path)
    try:
        driver.get(url + "/")
        driver.execute_script("window.__notReloaded = true;")
        js = driver.execute_script

        def rows() -> dict:
            return js("var out = {}; document.querySelectorAll('#devices tr[data-device]').forEach(function (tr) {"
                      " out[tr.dataset.device + '/' + tr.dataset.node] = {cells: Array.from(tr.cells).map("
                      "function (c) { return c.textContent; }), cls: tr.className}; }); return out;")

        def role_of(endpoint: str) -> str:
            return js(f"return document.querySelector('g[data-endpoint={json.dumps(endpoint)}]').dataset.role")

        def text(selector: str) -> str:
            return js(f"var e = document.querySelector({json.dumps(selector)}); return e ? e.textContent : '';")

        db1 = endpoint_of(sb, "db1")
        want = {"dev-001/a", "dev-002/a", "dev-003/a", "quiet-001/a", "evil-1/a"}
        wait_for(lambda: want <= set(rows()) and all(rows()[k]["cells"][4] for k in want), 30,
                 "every device listed with its last reading")
        assert text("#primary") == db1
        assert role_of(db1) == "primary"

        # Escaping: the hostile unit and the quarantined <script> payload are text, nothing ran or rendered.
        wait_for(lambda: HOSTILE_PAYLOAD.decode() in text("table.quarantine"), 15, "the quarantined payload shown")
        assert rows()["evil-1/a"]["cells"][4] == f"1.5 {HOSTILE_UNIT}"
        assert js("return document.querySelectorAll('#devices b, #gateway table.quarantine script').length") == 0
        assert js("return window.__pwned === undefined")

        # The primary dies; the gateway's monitor fails over; the open page follows without a reload.
        sb.kill("db1")
        new = wait_for(lambda: (lambda p: p if p and p != "db1" else None)(sb.primary_name()), 60,
                       f"a new primary (gateway log:\n{gw.log_tail()})")
        promoted = time.monotonic()
        new_ep = endpoint_of(sb, new)
        wait_for(lambda: text("#primary") == new_ep and new_ep in text("table.failovers"), 5,
                 f"the page to show {new} as primary and the failover within 5 s")
        shown_after = time.monotonic() - promoted
        print(f"page showed the new primary {shown_after:.2f} s after the promotion was visible")
        assert js("return window.__notReloaded === true")
        assert role_of(db1) == "unreachable"

        # The pair's active node goes offline (its last will) and the standby takes over: a takeover on the page.
        pub.status("pair-1", "a", state="offline", role="active", period=600_000)
        pub.status("pair-1", "b", role="active", period=600_000)
        wait_for(lambda: "a → b" in text("#pairs"), 10, "the pair's takeover a → b on the page")

        # A device that stops publishing is marked silent; the others are not.
        quiet_sim.stop()
        quiet.join()
        wait_for(lambda: "silent" in rows()["quiet-001/a"]["cls"], 15, "quiet-001 marked silent")
        assert "device-silent" in text("#alerts") and "quiet-001" in text("#alerts")
        current = rows()
        assert not any("silent" in current[f"dev-00{i}/a"]["cls"] for i in (1, 2, 3)), current
        first = js("return document.querySelector('#devices tr[data-device]').dataset.device")
        assert first == "quiet-001", "silent devices come first"

        shot = tmp_path / "status-page.png"
        driver.set_window_size(1400, max(1500, js("return document.body.scrollHeight")))
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
        busy.sim.stop()
        busy.join()
