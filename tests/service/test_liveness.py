"""Every worker is watched: one that dies of an injected fault makes /healthz unhealthy within 2 s, counts in
/metrics, and the process exits non-zero within health.exit_within_s (so systemd restarts it)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest

from gateway.sandbox.launch import GatewayProcess, http_json, sandbox_config, wait_for
from gateway.sandbox.process import _children  # the Popen of a child we started: for its exit code
from tests.ingest.helpers import SerialLine, start_gateway, unique
from tests.service.test_service import http_port

pytestmark = pytest.mark.servers


def health(port: int) -> tuple[int, dict] | None:
    try:
        return 200, http_json(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


@pytest.mark.parametrize(("point", "worker"), [("mqtt.loop:40", "mqtt-ingest"), ("writer.commit", "spool-writer"),
                                              ("drain.step:30", "drain"), ("serial.loop:30", "serial"),
                                              ("monitor.loop:3", "failover-monitor")])
def test_a_dead_worker_fails_health_and_exits_non_zero(sandbox, tmp_path, point, worker):
    exit_within = 6.0
    overrides = {"health": {"exit_within_s": exit_within, "linger_s": 1.5}}
    line = None
    if worker == "serial":
        line = SerialLine()
        cfg = sandbox_config(sandbox, tmp_path, prefix=unique("t"), client_id=unique("gw-"), database=False,
                             **overrides)
        cfg["serial"] = {"port": [{"port": line.port, "site": "bench"}]}
        gw = GatewayProcess(tmp_path, cfg, env={"IOTGW_FAULT_AT": point}).start()
    elif worker == "failover-monitor":  # the monitor runs inside the gateway only with a replicated database
        ep = sandbox.endpoints()["mariadb"]
        gw = start_gateway(sandbox, tmp_path, env={"IOTGW_FAULT_AT": point}, **overrides,
                           database={"servers": [sandbox.endpoint(n) for n in sandbox.db_names()],
                                     "admin_user": "root"},
                           failover={"auto": True, "interval": 0.5,
                                     "repl_password": ep["replication_user"]["password"]})
    else:
        gw = start_gateway(sandbox, tmp_path, database=False, env={"IOTGW_FAULT_AT": point}, **overrides)
    popen = _children[gw.pid]
    try:
        port = http_port(gw)
        if worker == "spool-writer":  # the writer's fault fires at its first commit: give it one
            import paho.mqtt.publish as publish

            b = sandbox.endpoints()["broker"]
            publish.single(f"{gw.config['mqtt']['topic_prefix']}/s/d/reading", b"{}", qos=1, hostname=b["host"],
                           port=b["port"], protocol=5)
        # The fault is raised inside the worker; from then on /healthz must say so within 2 s.
        died = wait_for(lambda: f"injected fault at {point.split(':')[0]}" in gw.log_tail(200), 20,
                        f"the injected fault (log:\n{gw.log_tail()})")
        assert died
        seen_at = time.monotonic()
        answer = wait_for(lambda: (h := health(port)) and h[0] == 503 and h, 2.5, "an unhealthy /healthz")
        assert time.monotonic() - seen_at <= 2.0
        status, doc = answer
        assert doc["status"] == "failing" and any(k.startswith(worker) for k in doc["failures"]), doc
        assert "InjectedFault" in " ".join(doc["failures"].values())
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        assert re.search(rf'iotgw_worker_failures_total\{{worker="{worker}[^"]*"\}} 1\.0', metrics), metrics
        code = popen.wait(exit_within + 1)
        assert time.monotonic() - seen_at <= exit_within + 1
        assert code == 1, gw.log_tail()
    finally:
        gw.terminate()
        if line is not None:
            line.close()
