"""Relay and clone decisions on stored snapshots (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.ops.relay import clone_refusal, leaf_refusal, relay_refusal
from gateway.topology.snapshots import load_snapshot

SNAPS = Path(__file__).parent.parent / "topology" / "snapshots"
# mariadb_intermediate.json: db1 (id 1) primary; id 2 and id 3 replicate from it; id 4 replicates from id 3.
P, R2, I3, L4 = "127.0.0.1:48657", "127.0.0.1:35359", "127.0.0.1:40593", "127.0.0.1:34713"


def _snap(mutate=None):  # noqa: ANN001, ANN202
    data = json.loads((SNAPS / "mariadb_intermediate.json").read_text())
    if mutate:
        mutate(data)
    return load_snapshot(data)


def test_relay_prerequisites() -> None:
    snap = _snap()
    assert relay_refusal(snap, snap.get(R2)) == ""
    assert "is the primary" in relay_refusal(snap, snap.get(P))

    def no_updates(data: dict) -> None:
        for raw in data["servers"]:
            if raw["endpoint"] == R2:
                raw["variables"]["log_slave_updates"] = 0

    snap2 = _snap(no_updates)
    assert "log_slave_updates=OFF" in relay_refusal(snap2, snap2.get(R2))


def test_leaf_moves_never_make_a_ring() -> None:
    snap = _snap()
    assert leaf_refusal(snap, snap.get(L4), snap.get(I3)).endswith("would make a ring")
    assert leaf_refusal(snap, snap.get(R2), snap.get(L4)) == ""
    assert "itself" in leaf_refusal(snap, snap.get(R2), snap.get(R2))


def test_clone_refuses_a_relay_donor_the_primary_as_target_and_a_target_with_replicas() -> None:
    snap = _snap()
    assert clone_refusal(snap, snap.get(R2), snap.get(L4)) == ""
    assert "is the primary" in clone_refusal(snap, snap.get(R2), snap.get(P))
    assert "replicas of its own" in clone_refusal(snap, snap.get(R2), snap.get(I3))

    def blackhole(data: dict) -> None:
        for raw in data["servers"]:
            if raw["endpoint"] == R2:
                raw["blackhole_tables"] = 3

    snap2 = _snap(blackhole)
    assert "BLACKHOLE relay" in clone_refusal(snap2, snap2.get(R2), snap2.get(L4))
