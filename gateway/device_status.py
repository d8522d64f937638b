"""Collector status messages (shared/protocol.md section 6): parsed, kept per (site, device, node), bounded.

A status names what a collector knows about itself: online/offline, its role in a pair, how full its cache is,
samples it could not record (`dropped`), why it last reset, storage errors and its clock. The gateway keeps the
latest per node in a `StatusBook` (read by the status page, /metrics and the database upsert).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from gateway.protocol import MAX_STATUS, U32_MAX, Rejected, int_field, loads_bounded, name_field

STATES = ("online", "offline")
ROLES = ("active", "standby", "single")
RESETS = ("power", "wdt", "ext", "brownout", "soft", "unknown")
CLOCKS = ("rtc", "lost", "none")


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """The latest status of one collector node; optional fields the collector did not send are None."""

    site: str
    device: str
    node: str
    boot: int | None
    state: str
    role: str | None
    cached: int | None
    cap: int | None
    dropped: int | None
    reset: str | None
    store_err: int | None
    clock: str | None
    period_ms: int | None
    received_ms: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.site, self.device, self.node)


def _opt_int(obj: dict, key: str) -> int | None:
    return int_field(obj, key, 0, U32_MAX) if key in obj else None


def _opt_choice(obj: dict, key: str, choices: tuple[str, ...]) -> str | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise Rejected("bad_type", key)
    if value not in choices:
        raise Rejected("out_of_range", key)
    return value


def parse_status(payload: bytes, *, site: str, received_ms: int, topic_device: str | None = None) -> DeviceStatus:
    """Validate one status payload (at most 256 bytes). Unknown keys are ignored; all but v/dev/node/state are
    optional. On MQTT `topic_device` must equal `dev` (a client speaks only for its own device). Raises Rejected."""
    obj = loads_bounded(payload, MAX_STATUS)
    if not isinstance(obj, dict):
        raise Rejected("not_object")
    for key in ("v", "dev", "node", "state"):
        if key not in obj:
            raise Rejected("missing_field", key)
    v = obj["v"]
    if isinstance(v, bool) or not isinstance(v, int):
        raise Rejected("bad_type", "v")
    if v != 1:
        raise Rejected("bad_version", detail=f"bad_version: {v}")
    device = name_field(obj, "dev")
    if topic_device is not None and device != topic_device:
        raise Rejected("topic_mismatch", detail=f"topic_mismatch: payload dev {device!r}, topic {topic_device!r}")
    node = name_field(obj, "node")
    state = _opt_choice(obj, "state", STATES)
    assert state is not None
    return DeviceStatus(site, device, node, _opt_int(obj, "boot"), state, _opt_choice(obj, "role", ROLES),
                        _opt_int(obj, "cached"), _opt_int(obj, "cap"), _opt_int(obj, "dropped"),
                        _opt_choice(obj, "reset", RESETS), _opt_int(obj, "store_err"),
                        _opt_choice(obj, "clock", CLOCKS), _opt_int(obj, "period"), received_ms)


class StatusBook:
    """The latest status per (site, device, node), at most `max_entries` (the least recently updated go first).

    Thread-safe: ingest threads update it, the HTTP server and the drain read it.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._latest: OrderedDict[tuple[str, str, str], DeviceStatus] = OrderedDict()
        self._changed: dict[tuple[str, str, str], DeviceStatus] = {}
        self._lock = threading.Lock()
        self.evicted = 0

    def update(self, status: DeviceStatus) -> bool:
        """Record `status`; True if it differs from the one held (ignoring the receive time)."""
        with self._lock:
            old = self._latest.pop(status.key, None)
            self._latest[status.key] = status
            changed = old is None or replace(old, received_ms=0) != replace(status, received_ms=0)
            if changed:
                self._changed[status.key] = status
            while len(self._latest) > self.max_entries:
                gone, _ = self._latest.popitem(last=False)
                self._changed.pop(gone, None)
                self.evicted += 1
            return changed

    def snapshot(self) -> list[DeviceStatus]:
        """Every status held, ordered by (site, device, node)."""
        with self._lock:
            return sorted(self._latest.values(), key=lambda s: s.key)

    def take_changed(self) -> list[DeviceStatus]:
        """The statuses changed since the last call (for the database upsert)."""
        with self._lock:
            changed, self._changed = list(self._changed.values()), {}
        return changed

    def put_back(self, statuses: list[DeviceStatus]) -> None:
        """Statuses whose upsert failed: offered again by the next take_changed (unless newer ones came)."""
        with self._lock:
            for s in statuses:
                if s.key in self._latest and s.key not in self._changed:
                    self._changed[s.key] = self._latest[s.key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._latest)
