"""`iotgw run` with `[failover] auto = true`: the gateway's own monitor fails the primary over while readings
flow from MQTT; the writer follows the new epoch; nothing acknowledged is lost or duplicated."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError
from gateway.ops.monitor import from_config_table
from gateway.sandbox.launch import GatewayProcess, sandbox_config, wait_for
from tests.ingest.helpers import Background, assert_exact, count_on, sim_for, unique, wait_stored

pytestmark = pytest.mark.servers


def test_failover_config_is_validated():
    assert from_config_table({"auto": False}) is None
    cfg = from_config_table({"auto": True, "interval": 0.5, "failcount": 2, "repl_password": "r"})
    assert (cfg.interval, cfg.failcount, cfg.repl) == (0.5, 2, ("repl", "r"))
    with pytest.raises(ConfigError, match="failover.intervall: unknown key"):
        from_config_table({"auto": True, "intervall": 1})
    with pytest.raises(ConfigError, match="failover.failcount: expected"):
        from_config_table({"auto": True, "failcount": "3"})


def test_gateway_with_its_own_monitor_survives_a_primary_kill(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=3, broker=True)
    servers = [f"{sb.nodes[n].host}:{sb.nodes[n].port}" for n in sb.db_names()]
    cfg = sandbox_config(sb, tmp_path, prefix=unique("t"), client_id=unique("gw-"),
                         database={"servers": servers, "admin_user": "root"},
                         failover={"auto": True, "interval": 0.5, "failcount": 2, "block_s": 30,
                                   "repl_password": sb.endpoints()["mariadb"]["users"]["repl"]})
    gw = GatewayProcess(tmp_path, cfg).start()
    try:
        wait_for(lambda: "subscribed to" in gw.log_tail(50), 60, "the gateway to subscribe")
        run = Background(sim_for(gw, sb, devices=5, count=400, rate=200, ack_timeout=3))
        wait_for(lambda: count_on(sb, "db1")[0] > 300, 60, "readings flowing into db1")
        sb.kill("db1")
        new = wait_for(lambda: sb.primary_name(), 60, f"a new primary (gateway log:\n{gw.log_tail()})")
        assert new != "db1"
        report = run.join_acked()
        assert "failover: failed over from" in gw.log_tail(400)
        wait_stored(sb, gw, report.sent)
        alive = [n for n in sb.db_names() if n != "db1"]
        assert_exact(sb, report, servers=alive)
    finally:
        gw.terminate()
