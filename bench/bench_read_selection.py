"""Cost of one read selection: local rotation, shared rotation, and the classic recipe.

On a 1 primary + 3 replica sandbox: `ReadSelector.next()` with the topology cached (local rotation), with a
fresh probe of every server on each call (refresh 0: what a dead replica costs to notice at once), with the
rotation shared through `read_scaling.current_slave` (one transaction on the primary per choice), and the
baseline of the same run: the classic selector (a new connection, `SHOW SLAVE HOSTS`, `LOCK TABLES`,
an UPDATE, `UNLOCK TABLES` per call).

Run: .venv/bin/python bench/bench_read_selection.py → bench/results/read_selection.json and read_selection.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pymysql  # noqa: E402
from replication_common import ADMIN, WRITER, write_results  # noqa: E402

from gateway.client.reads import ReadSelector, SharedRotation, TopologySource  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402


def per_call_us(fn, n: int) -> float:  # noqa: ANN001
    fn()  # warm up (first discovery, table creation)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def classic_selector(port: int):  # noqa: ANN201
    """The classic selector's algorithm (parameterised here), as the baseline: everything per call."""
    cursor = {"id": 0}

    def next_server() -> int:
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SHOW SLAVE HOSTS")
            servers = sorted((r[0], r[1], r[2]) for r in cur.fetchall())
            cur.execute("SELECT server_id FROM read_scaling.current_slave WHERE id = 1")
            cursor["id"] = cur.fetchone()[0]
            chosen = next((s for s in servers if s[0] > cursor["id"]), servers[0])
            cur.execute("LOCK TABLES read_scaling.current_slave WRITE")
            cur.execute("UPDATE read_scaling.current_slave SET server_id=%s, host=%s, port=%s WHERE id = 1", chosen)
            cur.execute("UNLOCK TABLES")
        conn.close()
        return chosen[0]

    return next_server


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    with tempfile.TemporaryDirectory(prefix="iotgw-bench-rs-") as tmp:
        sb = Sandbox.up(Path(tmp) / "sb", replicas=3, broker=False)
        try:
            seeds = [f"127.0.0.1:{sb.node('db1').port}"]
            cached = ReadSelector(TopologySource(seeds, WRITER, refresh_s=3600))
            fresh = ReadSelector(TopologySource(seeds, WRITER, refresh_s=0))
            shared = ReadSelector(TopologySource(seeds, WRITER, refresh_s=3600), rotation=SharedRotation(ADMIN))
            results = {
                "local_cached_us": per_call_us(cached.next, 20000),
                "local_probe_every_call_us": per_call_us(fresh.next, 200),
                "shared_rotation_us": per_call_us(shared.next, 1000),
                "classic_recipe_us": per_call_us(classic_selector(sb.node("db1").port), 300),
            }
            for s in (cached, fresh, shared):
                s.close()
        finally:
            sb.down()
    base = results["classic_recipe_us"]
    rows = [("local rotation, topology cached (refresh 1 s in practice)", "local_cached_us"),
            ("local rotation, every server probed on each call", "local_probe_every_call_us"),
            ("shared rotation (read_scaling.current_slave, one transaction)", "shared_rotation_us"),
            ("baseline: classic selector (new connection per call)", "classic_recipe_us")]
    table = ["# Cost of one read selection", "", "1 primary + 3 replicas, same run.", "",
             "| mode | µs per selection | vs classic recipe |", "|---|---|---|"]
    table += [f"| {label} | {results[key]:.1f} | {results[key] / base:.3f} |" for label, key in rows]
    write_results("read_selection", {"results_us": results, "baseline": "classic_recipe_us"}, table)


if __name__ == "__main__":
    main()
