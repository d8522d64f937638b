"""Snapshots from raw observations: each server's probe parsed by its flavour's dialect, and stored
snapshots (JSON written by `Snapshot.to_json`) reloaded through exactly the same parsing as a live probe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.topology.dialect import dialect_for
from gateway.topology.model import RawObservation, ServerState, Snapshot


def snapshot_from_raw(raws: list[RawObservation], taken_at: float = 0.0) -> Snapshot:
    """Parse raw observations into a snapshot; one server reached under two names is kept once."""
    servers: list[ServerState] = []
    seen_ids: set[int] = set()
    for raw in raws:
        state = dialect_for(raw.flavor).parse_observation(raw)
        if state.reachable and state.server_id in seen_ids:
            continue
        if state.reachable:
            seen_ids.add(state.server_id)
        servers.append(state)
    return Snapshot(servers=tuple(servers), taken_at=taken_at, raw=tuple(raws))


def load_snapshot(source: str | Path | dict[str, Any]) -> Snapshot:
    """Load a stored snapshot (a JSON file path, JSON text, or the parsed dict) and parse it."""
    if isinstance(source, dict):
        data = source
    else:
        text = Path(source).read_text() if not str(source).lstrip().startswith("{") else str(source)
        data = json.loads(text)
    raws = [RawObservation.from_dict(r) for r in data["servers"]]
    return snapshot_from_raw(raws, taken_at=float(data.get("taken_at", 0.0)))
