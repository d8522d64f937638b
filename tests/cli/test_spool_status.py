"""`iotgw spool status` while the gateway runs: batches written and waiting for a replica's confirmation live
in the gateway's memory only, so the command asks the running gateway for them instead of calling them pending."""

from __future__ import annotations

import json

import pytest

from gateway.sandbox.launch import wait_for
from gateway.sandbox.ports import free_port
from tests.helpers import cli, sql
from tests.ingest.helpers import count_on, simulate_through, start_gateway

pytestmark = pytest.mark.servers


def _status(gw) -> dict:
    code, out = cli("spool", "status", "--config", str(gw.config_path), "--json")
    assert code == 0, out
    return json.loads(out)


def test_unconfirmed_batches_of_the_running_gateway_are_not_called_pending(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=1)
    sql(sb, "db2", "STOP SLAVE SQL_THREAD")  # the replica receives but never applies: nothing is confirmed
    gw = start_gateway(sb, tmp_path, http={"listen": f"127.0.0.1:{free_port()}"})
    try:
        report = simulate_through(gw, sb, deadline_s=60, devices=2, count=10, rate=0)
        assert report.unacked == 0, report.summary()
        wait_for(lambda: count_on(sb, "db1")[0] == 20, 30, "all 20 written to the primary")
        running = wait_for(lambda: (st := _status(gw))["unconfirmed"] == 20 and st, 30, "the written batches")
        assert (running["pending"], running["unconfirmed"], running["depth"]) == (0, 20, 20), running
        assert "gateway" in running["source"]
        gw.terminate()
        stopped = _status(gw)  # the file alone: the next gateway writes them again (idempotently)
        assert (stopped["pending"], stopped["unconfirmed"], stopped["source"]) == (20, 0, "file"), stopped
    finally:
        gw.terminate()
        sql(sb, "db2", "START SLAVE SQL_THREAD")
