"""The status model's pure builders on stored inputs: topology snapshots recorded from live sandboxes,
collector statuses, reading activity; no servers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from gateway.device_status import DeviceStatus
from gateway.status.activity import ActivityTracker, PairTracker
from gateway.status.model import (
    GatewayFacts,
    NodeActivity,
    ReadsFacts,
    StatusInputs,
    Thresholds,
    build_status,
)
from gateway.topology.snapshots import load_snapshot

TESTS = Path(__file__).resolve().parents[1]
HEALTHY = TESTS / "topology" / "snapshots" / "mariadb_1p3r_epoch.json"
PRIMARY_DEAD = TESTS / "ops" / "snapshots" / "primary_dead_lagging.json"
NOW = 1_800_000_000_000


def status(device, node="a", **kw):
    fields = {"site": "s", "boot": 1, "state": "online", "role": "single", "cached": 0, "dropped": 0,
              "period_ms": 1000, "received_ms": NOW - 500}
    fields.update(kw)
    fields = {"cap": None, "reset": None, "store_err": None, "clock": None, **fields}
    return DeviceStatus(device=device, node=node, **fields)


def activity(device, node="a", ago_s=0.5, **kw):
    return NodeActivity(device=device, node=node, site="s", boot=1, seq=41, ts=NOW - int(ago_s * 1000),
                        received_ms=NOW - int(ago_s * 1000), value=21.5, unit="C", clock="ok", **kw)


def inputs(**kw):
    base = dict(now_ms=NOW, started_ms=NOW - 600_000, database_kind="mysql", monitor=True,
                gateway=GatewayFacts(spool_limit=1000))
    base.update(kw)
    return StatusInputs(**base)


def test_healthy_topology_gives_primary_roles_lag_tree_and_no_alert():
    snap = load_snapshot(HEALTHY)
    doc = build_status(inputs(snapshot=snap, statuses=[status("d1")], activity=[activity("d1")]))
    db = doc["database"]
    primary = next(s for s in db["servers"] if s["server_id"] == 1)
    assert db["primary"] == primary["endpoint"] and db["epoch"] == 1 and primary["role"] == "primary"
    replicas = [s for s in db["servers"] if s["role"] == "replica"]
    assert len(replicas) == 3
    assert all(s["lag_s"] == 0 and s["lag_trx"] == 0 and s["io_thread"] == "Yes" and s["sql_thread"]
               for s in replicas)
    assert all(s["source"] == primary["endpoint"] for s in replicas)
    assert db["tree"][0]["endpoint"] == primary["endpoint"]
    assert sorted(c["endpoint"] for c in db["tree"][0]["children"]) == sorted(s["endpoint"] for s in replicas)
    assert doc["reads"]["readable"] == [s["endpoint"] for s in replicas]
    assert doc["alerts"] == []
    assert json.loads(json.dumps(doc)) == doc  # plain JSON all the way down


def test_dead_primary_is_an_alert_and_shows_unreachable():
    doc = build_status(inputs(snapshot=load_snapshot(PRIMARY_DEAD)))
    assert doc["database"]["primary"] is None
    assert [a["kind"] for a in doc["alerts"]] == ["no-primary"]
    assert any(s["role"] == "unreachable" and not s["healthy"] for s in doc["database"]["servers"])


def test_replica_lag_over_the_read_limit_is_an_alert():
    raw = json.loads(HEALTHY.read_text())
    lagging = copy.deepcopy(raw)
    victim = next(s for s in lagging["servers"] if s["replica_status"])
    victim["replica_status"]["Seconds_Behind_Master"] = 42
    snap = load_snapshot(lagging)
    doc = build_status(inputs(snapshot=snap, reads=ReadsFacts(max_lag_s=10)))
    assert [(a["kind"], a["subject"]) for a in doc["alerts"]] == [("replica-lag", victim["endpoint"])]
    assert build_status(inputs(snapshot=snap, reads=ReadsFacts(max_lag_s=60)))["alerts"] == []
    # without a read limit the default alert limit applies
    assert build_status(inputs(snapshot=snap, thresholds=Thresholds(lag_s=30)))["alerts"][0]["kind"] == "replica-lag"


def test_silent_devices_come_first_and_a_standby_node_alone_is_not_silence():
    sts = [status("busy"), status("quiet"), status("pair", "a", role="active"), status("pair", "b", role="standby"),
           status("nostatus-period", period_ms=None)]
    act = [activity("busy", ago_s=1), activity("quiet", ago_s=3.5), activity("pair", "a", ago_s=0.2),
           activity("nostatus-period", ago_s=100)]
    doc = build_status(inputs(statuses=sts, activity=act, database_kind="sqlite"))
    devices = {d["device"]: d for d in doc["devices"]}
    assert devices["quiet"]["silent"] and not devices["busy"]["silent"] and not devices["pair"]["silent"]
    # unknown period: the default (60 s) times the factor (3): 100 s is not silent yet
    assert not devices["nostatus-period"]["silent"] and devices["nostatus-period"]["period_s"] == 60
    assert doc["devices"][0]["device"] == "quiet"
    assert [a["kind"] for a in doc["alerts"]] == ["device-silent"] and doc["alerts"][0]["subject"] == "quiet"
    assert [n["node"] for n in devices["pair"]["nodes"]] == ["a", "b"]


def test_a_device_that_never_sent_is_silent_once_the_gateway_ran_long_enough():
    early = build_status(inputs(statuses=[status("new")], started_ms=NOW - 2000, database_kind="sqlite"))
    assert not early["devices"][0]["silent"]
    late = build_status(inputs(statuses=[status("new")], started_ms=NOW - 5000, database_kind="sqlite"))
    assert late["devices"][0]["silent"] and "never sent a reading" in late["alerts"][0]["message"]


def test_node_problems_offline_clock_dropped_make_a_device_unhealthy():
    sts = [status("d", "a", state="offline", dropped=3, clock="lost")]
    doc = build_status(inputs(statuses=sts, activity=[activity("d")], database_kind="sqlite"))
    d = doc["devices"][0]
    assert not d["healthy"] and not d["silent"]
    assert d["problems"] == ["a: offline (last will)", "a: clock lost", "a: dropped 3"]


def test_pairs_takeover_hand_back_and_no_active_node():
    pt = PairTracker()
    pt.observe([status("p", "a", role="active"), status("p", "b", role="standby")], NOW - 30_000)
    pt.observe([status("p", "a", state="offline", role="active"), status("p", "b", role="standby")], NOW - 20_000)
    pt.observe([status("p", "a", state="offline", role="active"), status("p", "b", role="active")], NOW - 19_000)
    pt.observe([status("p", "a", role="active"), status("p", "b", role="standby")], NOW - 5_000)
    assert [(s.kind, s.from_node, s.to_node) for s in pt.switches] == [("takeover", "a", "b"), ("hand-back", "b", "a")]
    sts = [status("p", "a", role="standby"), status("p", "b", role="standby")]
    doc = build_status(inputs(statuses=sts, pair_switches=list(pt.switches), coverage_gaps_s={"p": 4.2},
                              activity=[activity("p", "a")], database_kind="sqlite"))
    p = doc["pairs"][0]
    assert p["active"] is None and p["last_takeover"]["to"] == "b" and p["last_handback"]["to"] == "a"
    assert p["max_gap_s"] == 4.2 and p["switches"] == 2
    assert [a["kind"] for a in doc["alerts"]] == ["pair-no-active"]


def test_gateway_alerts_spool_and_broker_drops():
    g = GatewayFacts(spool_depth=850, spool_limit=1000, broker_drops=12, quarantine={"not_json": 2, "too_big": 1})
    doc = build_status(inputs(gateway=g, database_kind="sqlite"))
    assert [a["kind"] for a in doc["alerts"]] == ["spool-high", "broker-drops"]
    assert doc["gateway"]["quarantine"]["total"] == 3 and doc["gateway"]["ack_mode"] == "spool"
    calm = build_status(inputs(gateway=GatewayFacts(spool_depth=10, spool_limit=1000, broker_drops=0),
                               database_kind="sqlite"))
    assert calm["alerts"] == []


def test_activity_counts_each_sequence_once_and_the_last_hour_only():
    from gateway.protocol import Reading

    tracker = ActivityTracker()

    def reading(seq, at_ms, boot=1, cached=False, device="d"):
        return Reading(device, "a", boot, seq, "s", at_ms, "rtc", 1.0, "C", cached, "ok", at_ms)

    start = NOW - 2 * 3600_000
    for i in range(120):  # one reading a minute for two hours, each delivered twice
        tracker.saw_all([reading(i, start + i * 60_000)])
        tracker.saw_all([reading(i, start + i * 60_000)])
    tracker.saw_all([reading(5, start + 10, cached=True)])  # an old sequence again: not counted
    (node,) = tracker.snapshot(now_ms=start + 119 * 60_000 + 1)
    assert node.last_hour == 60 and node.seq == 119 and node.replayed == 0
    tracker.saw_all([reading(0, start + 120 * 60_000, boot=2, cached=True)])
    (node,) = tracker.snapshot(now_ms=start + 120 * 60_000 + 1)
    assert (node.boot, node.seq, node.replayed) == (2, 0, 1)
    assert tracker.gaps_s() == {"d": 60.0}
    small = ActivityTracker(max_nodes=2)
    for dev in ("x", "y", "z"):
        small.saw_all([reading(0, NOW, device=dev)])
    assert len(small) == 2 and small.untracked == 1
