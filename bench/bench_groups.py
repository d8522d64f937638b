"""Benchmarks of HA groups: lookup latency (cold, server-cached, warm client cache) and clone speed.

Group lookup, on a 1 primary + 3 replica sandbox with a group of all four servers served by the gateway's HTTP
server (`gateway.metrics.HttpServer` + `add_group_routes`):
- cold: the client asks with `fresh=1`, so the service reads the registry and probes every member;
- server-cached: an HTTP round trip answered from the service's 0.5 s cache;
- warm: the client's own TTL cache answers (no network), what nearly every `connect(group=…)` costs.

Clone: a table scaled to ROWS rows (about 100 bytes each), cloned from a replica onto an emptied replica with
`iotgw topology clone`'s code (dump with the GTID position, load with sql_log_bin=0, catch up); the baseline of the
same run is the bare `mariadb-dump` of the same data to /dev/null. Reported as rows/s and seconds per GB of dump.

Run: .venv/bin/python bench/bench_groups.py [ROWS] → bench/results/groups.json and groups.md
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replication_common import ADMIN, WRITER, write_results  # noqa: E402

from gateway.client import groups as gc  # noqa: E402
from gateway.metrics import HttpServer  # noqa: E402
from gateway.ops import groups as g  # noqa: E402
from gateway.ops.clone import DUMP, clone  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402


def timed(fn, n: int) -> list[float]:  # noqa: ANN001
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary_ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"median_ms": statistics.median(s) * 1e3, "p90_ms": s[int(0.9 * (len(s) - 1))] * 1e3, "n": len(s)}


def lookups(sb: Sandbox) -> dict[str, dict[str, float]]:
    eps = [f"127.0.0.1:{sb.node(n).port}" for n in sb.db_names()]
    reg = g.Registry(eps, ADMIN)
    reg.create("bench")
    for i, ep in enumerate(eps):
        reg.add("bench", ep, weight=1 + i % 3)
    sb.wait_caught_up()
    http = HttpServer("127.0.0.1", 0)
    g.add_group_routes(http, g.GroupService(reg, WRITER))
    http.start()
    try:
        ask = gc.http_lookup(f"http://127.0.0.1:{http.port}")
        client = gc.GroupClient(ask, WRITER, ttl_s=3600)
        client.view("bench", fresh=True)  # first contact (connections, imports)
        cold = timed(lambda: client.view("bench", fresh=True), 40)
        ask("bench", False)
        server_cached = timed(lambda: ask("bench", False), 200)
        warm = timed(lambda: client.view("bench"), 20000)
        warm_pick = timed(lambda: client.endpoint_for("bench", "ro"), 20000)
    finally:
        http.stop()
    return {"cold": summary_ms(cold), "server_cached": summary_ms(server_cached), "warm": summary_ms(warm),
            "warm_endpoint_for_ro": summary_ms(warm_pick)}


def clone_speed(sb: Sandbox, rows: int) -> dict[str, float]:
    with sb.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS big")
        cur.execute("CREATE TABLE big.t (id INT PRIMARY KEY, device VARCHAR(32), ts BIGINT, value DOUBLE, "
                    "note VARCHAR(40)) ENGINE=InnoDB")
        batch = 2000
        for start in range(0, rows, batch):
            cur.executemany("INSERT INTO big.t VALUES (%s, %s, %s, %s, %s)",
                            [(i, f"dev{i % 50}", 1_700_000_000_000 + i, i * 0.5, "x" * 30)
                             for i in range(start, min(rows, start + batch))])
    sb.wait_caught_up(timeout=300)
    port = sb.node("db2").port
    t = time.perf_counter()
    dump = subprocess.run([DUMP, "--host=127.0.0.1", f"--port={port}", "--user=root", "--protocol=TCP",
                           "--single-transaction", "--master-data=2", "--gtid", "--databases", "big"],
                          capture_output=True, timeout=600, check=True)
    dump_s = time.perf_counter() - t
    size = len(dump.stdout)
    t = time.perf_counter()
    clone(f"127.0.0.1:{port}", f"127.0.0.1:{sb.node('db4').port}", f"127.0.0.1:{sb.node('db1').port}", ADMIN,
          ("repl", "repl"), timeout=600)
    clone_s = time.perf_counter() - t
    return {"rows": rows, "dump_bytes": size, "clone_s": clone_s, "dump_only_s": dump_s,
            "rows_per_s": rows / clone_s, "s_per_gb": clone_s / (size / 1e9), "dump_only_s_per_gb": dump_s / (size / 1e9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="?", type=int, default=300_000, help="rows in the table (default 300,000)")
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory(prefix="iotgw-bench-groups-") as tmp:
        sb = Sandbox.up(Path(tmp) / "sb", replicas=3, broker=False)
        try:
            look = lookups(sb)
            cl = clone_speed(sb, rows)
        finally:
            sb.down()
    table = ["# HA group lookup and clone", "", "1 primary + 3 replicas on loopback, same run, busy 2-core machine.",
             "", "| group lookup | median ms | p90 ms | n |", "|---|---|---|---|"]
    labels = {"cold": "cold (fresh: registry read + every member probed, over HTTP)",
              "server_cached": "HTTP, answered from the service's 0.5 s cache",
              "warm": "warm client cache (TTL)", "warm_endpoint_for_ro": "warm cache + weighted pick (`endpoint_for`)"}
    table += [f"| {labels[k]} | {v['median_ms']:.4f} | {v['p90_ms']:.4f} | {v['n']} |" for k, v in look.items()]
    table += ["", "| clone | value |", "|---|---|",
              f"| rows | {cl['rows']} |", f"| dump size | {cl['dump_bytes'] / 1e6:.1f} MB |",
              f"| clone time (dump + load + catch up) | {cl['clone_s']:.1f} s |",
              f"| rows/s | {cl['rows_per_s']:.0f} |",
              f"| seconds per GB of dump (extrapolated) | {cl['s_per_gb']:.0f} |",
              f"| baseline: bare dump, seconds per GB | {cl['dump_only_s_per_gb']:.0f} |",
              f"| clone / bare dump | {cl['clone_s'] / cl['dump_only_s']:.2f} |"]
    write_results("groups", {"lookup": look, "clone": cl}, table)


if __name__ == "__main__":
    main()
