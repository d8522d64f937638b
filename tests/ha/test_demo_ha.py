"""`iotgw demo --ha`, briefly: a gateway dies with its spool and a broker dies; nothing lost or duplicated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.servers


def test_demo_ha_reports_nothing_lost_per_tier(tmp_path):
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--ha", "--json", "--duration", "16",
                          "--rate", "100", "--devices", "8", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=400)
    assert run.stdout.strip(), run.stderr[-3000:]
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    assert doc["ok"], json.dumps(doc, indent=1)
    assert run.returncode == 0
    c = doc["collectors"]
    assert c["sent"] == c["acknowledged"] > 0 and c["unacknowledged"] == 0
    assert c["broker_switches"] >= 1
    assert "killed" in doc["brokers"].values() and "killed, spool deleted" in doc["gateways"].values()
    assert len(doc["database"]["servers"]) == 3
    for name, tier in doc["database"]["servers"].items():
        assert tier["lost"] == 0 and tier["duplicated"] == 0 and tier["stored"] == c["sent"], name
    assert doc["database"]["checksums_equal"]
