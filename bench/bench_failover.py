"""Recovery time of the automatic failover monitor: kill -9 of the primary → first write on the new one.

One 1+3 sandbox; readings flow through the real spool, drain worker and `ReplicatedSink`; the monitor
(`gateway.ops.monitor.Monitor`, interval 1 s, failcount 2) runs in a thread. Each round: readings flow, the
primary is killed with SIGKILL, the monitor detects it and fails over, and we time from the kill to (a) the
monitor's failover done and (b) the first successful write of the drain worker on the new primary. The killed
node is then brought back (rejoined by the monitor if it has not diverged, else rebuilt by a logical-dump clone)
so every round starts from 1+3. At the end every acknowledged reading must be on the primary exactly once.

Run: .venv/bin/python bench/bench_failover.py [--rounds 20] [--retry-max 1.0]
     → bench/results/failover.json and failover.md   (targets: median ≤ 3 s, max ≤ 5 s, lost 0)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from replication_common import ADMIN, WRITER, Producer, summary, wait_for, write_results  # noqa: E402

from gateway.drain import DrainWorker  # noqa: E402
from gateway.ops.monitor import Monitor, MonitorConfig  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402
from gateway.sandbox.rebuild import rebuild_node  # noqa: E402
from gateway.sinks.replicated import ReplicatedSink  # noqa: E402
from gateway.spool import Spool  # noqa: E402


def ep(sb: Sandbox, name: str) -> str:
    return f"127.0.0.1:{sb.node(name).port}"


def rows_on(sb: Sandbox, name: str) -> int:
    try:
        with sb.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM iot.readings")
            return int(cur.fetchone()[0])
    except Exception:  # noqa: BLE001 - not created yet, or down
        return 0


def replicates_from(sb: Sandbox, name: str, source: str) -> bool:
    try:
        with sb.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            cols = [c[0] for c in cur.description]
            row = dict(zip(cols, cur.fetchone() or (), strict=False))
    except Exception:  # noqa: BLE001
        return False
    return row.get("Master_Port") == sb.node(source).port and row.get("Slave_SQL_Running") == "Yes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--failcount", type=int, default=2)
    parser.add_argument("--retry-max", type=float, default=1.0, help="drain worker backoff cap ([database] retry_max_s)")
    args = parser.parse_args()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="iotgw-bench-mon-") as tmp:
        sb = Sandbox.up(Path(tmp) / "sb", replicas=3, broker=False)
        spool = Spool(Path(tmp) / "spool.db")
        sink = ReplicatedSink([ep(sb, n) for n in sb.db_names()], WRITER)
        writes: list[tuple[float, str]] = []
        drain = DrainWorker(spool, sink, batch_size=200, retry_max_s=args.retry_max,
                            on_write=lambda n, dt: writes.append((time.monotonic(), sink.primary.endpoint)))
        drain.start()
        producer = Producer(spool, "bench")
        producer.start()
        done_at: list[float] = []
        cfg = MonitorConfig(interval=args.interval, failcount=args.failcount, block_s=1.0, repl=("repl", "repl"))
        monitor = Monitor([ep(sb, n) for n in sb.db_names()], ADMIN, cfg,
                          on_event=lambda e: done_at.append(time.monotonic()) if e.kind == "failover" else None)
        stop = threading.Event()
        thread = threading.Thread(target=monitor.run, args=(stop,), daemon=True)
        thread.start()
        primary = "db1"
        try:
            for i in range(args.rounds):
                base = rows_on(sb, primary)
                wait_for(lambda p=primary, b=base: rows_on(sb, p) >= b + 300, 60, "readings to flow")
                n_done = len(monitor.failovers)
                t_kill = time.monotonic()
                sb.kill(primary)
                wait_for(lambda n=n_done: len(monitor.failovers) > n, 60, "the failover")
                result = monitor.failovers[-1]
                new = result.new_primary
                wait_for(lambda b=new, t=t_kill: any(e == b and w > t for w, e in writes), 60, "a write on the new primary")
                first = min(w for w, e in writes if e == new and w > t_kill)
                new_name = next(n for n in sb.db_names() if ep(sb, n) == new)
                sb.restart(primary)
                wait_for(lambda o=primary, n=new_name: replicates_from(sb, o, n)
                         or ep(sb, o) in monitor.diverged, 60, "rejoin or divergence report")
                back = "rejoined"
                if not replicates_from(sb, primary, new_name):
                    rebuild_node(sb, primary)
                    back = "rebuilt"
                rounds.append({"round": i, "old": primary, "new": new_name, "failover_done_s": done_at[-1] - t_kill,
                               "failover_s": result.seconds, "first_write_s": first - t_kill, "back": back})
                print(f"  round {i}: {primary} → {new_name}: failover done {done_at[-1] - t_kill:.2f} s "
                      f"(itself {result.seconds:.2f} s), first write {first - t_kill:.2f} s after the kill; "
                      f"old primary {back}", flush=True)
                primary = new_name
            producer.stop()
            wait_for(lambda: spool.stats().pending == 0, 120, "the spool to drain")
            stored = rows_on(sb, primary)
        finally:
            stop.set()
            thread.join(30)
            producer.stop()
            drain.stop()
            drain.join(30)
            sink.close()
            spool.close()
            sb.down()
    first = summary([r["first_write_s"] for r in rounds])
    done = summary([r["failover_done_s"] for r in rounds])
    itself = summary([r["failover_s"] for r in rounds])
    lost = producer.acked - stored
    met = first["median"] <= 3.0 and first["max"] <= 5.0 and lost == 0
    data = {"rounds": rounds, "first_write_s": first, "failover_done_s": done, "failover_s": itself,
            "acknowledged": producer.acked, "stored": stored, "lost": lost,
            "settings": {"interval_s": args.interval, "failcount": args.failcount, "drain_retry_max_s": args.retry_max,
                         "slave_net_timeout": 4},
            "targets": {"median_s": 3.0, "max_s": 5.0, "lost": 0}, "met": met}
    rebuilt = sum(r["back"] == "rebuilt" for r in rounds)
    table = [
        "# Automatic failover: kill -9 of the primary → first write on the new primary",
        "",
        f"{len(rounds)} rounds, 1 primary + 3 replicas, readings flowing (spool → drain → ReplicatedSink), monitor "
        f"interval {args.interval:g} s, failcount {args.failcount}, drain backoff cap {args.retry_max:g} s.",
        "",
        "| from the kill to | median s | min s | max s |",
        "|---|---|---|---|",
        f"| the monitor's failover done | {done['median']:.2f} | {done['min']:.2f} | {done['max']:.2f} |",
        f"| (the failover itself) | {itself['median']:.2f} | {itself['min']:.2f} | {itself['max']:.2f} |",
        f"| the first write on the new primary | {first['median']:.2f} | {first['min']:.2f} | {first['max']:.2f} |",
        "",
        f"Targets (median ≤ 3 s, max ≤ 5 s, 0 lost): {'met' if met else 'NOT met'}. Acknowledged {producer.acked}, "
        f"stored {stored}, lost {lost}. Old primary rejoined {len(rounds) - rebuilt} times, rebuilt {rebuilt} times.",
    ]
    write_results("failover", data, table)


if __name__ == "__main__":
    main()
