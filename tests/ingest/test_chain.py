"""The durable ingest chain on real servers: simulator → Mosquitto → gateway → spool → MariaDB → replicas."""

from __future__ import annotations

import pytest

from tests.ingest.helpers import assert_exact, simulate_through, start_gateway, wait_stored

pytestmark = pytest.mark.servers


def test_10k_readings_from_20_devices_land_exactly_once_everywhere(sandbox, tmp_path):
    gw = start_gateway(sandbox, tmp_path)
    try:
        report = simulate_through(gw, sandbox, deadline_s=180, devices=20, count=500, rate=0)
        assert report.sent == 10_000 and report.unacked == 0, report.summary()
        wait_stored(sandbox, gw, 10_000)
        assert_exact(sandbox, report)
    finally:
        gw.terminate()
