"""HA groups without servers: the smooth weighted rotation, the lookup answer on stored snapshots, the HTTP
token rule, and the client's cache and bounded retries against a scripted lookup."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pymysql
import pytest

from gateway.client import groups as gc
from gateway.ops import groups as g
from gateway.topology.conn import Credentials
from gateway.topology.snapshots import load_snapshot

SNAP = Path(__file__).parent.parent / "topology" / "snapshots" / "mariadb_1p3r_epoch.json"
PRIMARY, R4, R3, R2 = "127.0.0.1:48657", "127.0.0.1:34713", "127.0.0.1:40593", "127.0.0.1:35359"


def test_smooth_weighted_gives_exact_shares_evenly_interleaved() -> None:
    rot = gc.SmoothWeighted()
    picks = [rot.pick({"a": 3, "b": 1}) for _ in range(1000)]
    assert Counter(picks) == {"a": 750, "b": 250}
    assert picks[:8] == ["a", "a", "b", "a"] * 2  # never four a's in a row: evenly spread
    # Any prefix is within one cycle of the exact share.
    for n in range(1, 1000):
        assert abs(picks[:n].count("a") - 0.75 * n) <= 1
    rot2 = gc.SmoothWeighted()
    assert Counter(rot2.pick({"a": 3, "b": 1, "c": 0}) for _ in range(400)) == {"a": 300, "b": 100}
    with pytest.raises(ValueError):
        rot2.pick({"a": 0})


def test_group_view_on_a_stored_snapshot() -> None:
    snap = load_snapshot(SNAP)
    group = g.Group("sensors", "", (g.Member(PRIMARY, 1, "rw"), g.Member(R2, 3, "rw"), g.Member(R3, 1, "ro"),
                                    g.Member(R4, 2, "offline")))
    view = g.group_view(group, snap, ttl_s=5)
    assert view["primary"] == PRIMARY and view["epoch"] >= 1
    assert [(r["endpoint"], r["weight"]) for r in view["readers"]] == [(R2, 3), (R3, 1)]
    assert view["skipped"] == [{"endpoint": R4, "why": "offline"}]
    # A group that does not contain the topology's primary gets no primary, and says why.
    readers_only = g.Group("reports", "", (g.Member(R2, 1, "ro"),))
    v2 = g.group_view(readers_only, snap, ttl_s=5)
    assert v2["primary"] is None and "not a member" in v2["primary_reason"]


def test_routes_need_a_token_beyond_loopback() -> None:
    routes: dict = {}
    fake = SimpleNamespace(server=SimpleNamespace(server_address=("10.1.2.3", 8080)), routes=routes,
                           add_route=lambda path, handler, headers=False: routes.__setitem__(path, handler))
    with pytest.raises(g.GroupError, match="need a token"):
        g.add_group_routes(fake, service=None)  # type: ignore[arg-type]
    g.add_group_routes(fake, service=None, token="s3cret")  # type: ignore[arg-type]
    status, _, body = routes["/groups/lookup"]("name=x", {"Authorization": "Bearer wrong"})
    assert status == 403 and b"token" in body
    status, _, body = routes["/groups/lookup"]("name=x&token=s3cret", {})  # never in the URL (access logs)
    assert status == 400 and b"Authorization" in body


def test_client_caches_for_the_ttl_and_retries_a_bounded_number_of_times() -> None:
    asked: list[bool] = []
    view = {"group": "x", "primary": "127.0.0.1:1", "readers": [], "ttl_s": 60}

    def lookup(name: str, fresh: bool) -> dict:
        asked.append(fresh)
        return view

    client = gc.GroupClient(lookup, Credentials("u", "p", connect_timeout=0.5), attempts=3, backoff_s=0.01)
    assert client.view("x") is client.view("x") and asked == [False]  # warm: answered from the cache
    with pytest.raises(pymysql.err.OperationalError, match="after 3 attempts"):
        client.run("x", "rw", lambda conn: None)  # port 1: nobody listens
    # Every retry dropped the cache and asked afresh; exactly `attempts` tries in all.
    assert asked[1:] == [True, True] and client.stats.retries == 2
    with pytest.raises(pymysql.err.OperationalError, match="no healthy reader"):
        client.endpoint_for("x", "ro")
