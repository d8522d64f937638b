"""Drain benchmark: a spool backlog written by the gateway's drain worker, on loopback and across a delay.

Same run, same primary (with 2 replicas, durable settings): raw multi-row inserts (statements built before the
clock starts, 1,000 or 10,000 rows each, whichever is faster, a commit each, one connection: the database's own
ceiling for this client), the gateway's drain on loopback
with confirmation on a replica (the default configuration) and without, and both again through a TCP proxy
written here that adds 5 ms each way (loopback only), as a database across a network would. The loopback runs
come in rounds: both drain kinds (in turn first) between two raw ceiling runs. A round's ceiling is the mean of
those two runs, at the batch size that is faster over all the ceiling runs; each round's ratios are taken within
the round and the median is reported. The stricter figure against the faster of the two neighbouring runs is
reported too: it compares one drain run with the luckier of two raw runs, which biases the ceiling upward by
about half the run-to-run spread. The raw runs are also timed until a replica has applied them: the like-for-like
ceiling of a drain confirmed on a replica (reported, not a target).

Run: .venv/bin/python bench/bench_drain.py [--quick]   → bench/results/drain.json and drain.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pymysql  # noqa: E402
from delayproxy import DelayProxy  # noqa: E402
from loadgen import load_average, median, proc_sample  # noqa: E402
from replication_common import wait_for  # noqa: E402  (fixed polling: this bench times what it waits for)

from gateway import native  # noqa: E402
from gateway.drain import DrainWorker  # noqa: E402
from gateway.protocol import Reading  # noqa: E402
from gateway.sandbox import Sandbox  # noqa: E402
from gateway.sinks.mysql import connect, init_schema, values_sql  # noqa: E402
from gateway.sinks.replicated import ReplicatedSink  # noqa: E402
from gateway.spool import Entry, Spool, StoredReading  # noqa: E402
from gateway.topology.conn import Credentials  # noqa: E402
from gateway.topology.dialect import MARIADB as SQL  # noqa: E402  (the sandbox runs MariaDB)

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS = 9
# How far above the raw ceiling a drain's median ratio may land before the ceiling itself is in doubt: the medians
# of nine rounds here still move by a few hundredths from run to run.
CEILING_SLACK = 0.05


def rows_for(tag: str, n: int) -> list[StoredReading]:
    now = int(time.time() * 1000)
    return [StoredReading(f"{tag}-{i % 50}", "a", 1, i, "bench", now + i, "rtc", "ok", 1.5, "C", 0, now)
            for i in range(n)]


def fresh_tables(host: str, port: int) -> None:
    """Empty the readings tables before a run: every run then inserts into the same empty table (a table
    already holding earlier runs' rows made later runs ~15 % slower, whatever they were)."""
    conn = connect(f"{host}:{port}", Credentials("root", ""), database="")
    try:
        with conn.cursor() as cur:
            for table in ("iot.readings", "rawbench.readings"):
                try:
                    cur.execute(f"TRUNCATE TABLE {table}")
                except pymysql.err.ProgrammingError as exc:
                    if exc.args[0] != 1146:  # ER_NO_SUCH_TABLE: not made yet
                        raise
    finally:
        conn.close()


class CpuMeter:
    """CPU seconds (from /proc) of the database servers and of this process over a timed section: on this 2-core
    machine the servers and the drain share the CPU, so these explain a ratio below 1."""

    def __init__(self, server_pids: list[int]) -> None:
        self.server_pids = server_pids

    def read(self) -> tuple[float, float]:
        return sum(proc_sample(pid).cpu_s for pid in self.server_pids), time.process_time()

    @staticmethod
    def spent(before: tuple[float, float], after: tuple[float, float]) -> dict:
        return {"server_cpu_s": round(after[0] - before[0], 2), "client_cpu_s": round(after[1] - before[1], 2)}


def first_replica_applied(primary: pymysql.connections.Connection, replicas: list[str], started: float) -> float:
    """Seconds from `started` until the first of `replicas` has applied everything the primary has committed
    (the guarantee a confirmed drain gives), polled every 2 ms."""
    with primary.cursor() as cur:
        cur.execute(SQL.binlog_position_sql)
        position = cur.fetchone()[0]
    conns = [connect(ep, Credentials("root", ""), database="") for ep in replicas]
    try:
        while True:
            for conn in conns:
                with conn.cursor() as cur:
                    cur.execute(*SQL.wait_for_gtid_sql(position, 0))
                    if str(cur.fetchone()[0]) == "0":
                        return time.monotonic() - started
            if time.monotonic() - started > 600:
                raise TimeoutError(f"no replica applied {position}")
            time.sleep(0.002)
    finally:
        for conn in conns:
            conn.close()


def raw_inserts(host: str, port: int, rows: list[StoredReading], batch: int, settle: Callable[[], None],
                replicas: list[str], cpu: CpuMeter) -> dict:
    """The ceiling for one client connection: multi-row INSERT IGNORE statements of `batch` rows, all built
    before the clock starts (the gateway builds its own while writing), each sent and committed in turn. Also
    the time until a replica has applied them all: the ceiling with the guarantee of a confirmed drain."""
    fresh_tables(host, port)
    load = load_average()
    conn = connect(f"{host}:{port}", Credentials("root", ""), database="")
    init_schema(conn, "rawbench")
    statements = [values_sql(conn, rows[i:i + batch]) for i in range(0, len(rows), batch)]
    settle()
    cpu_before = cpu.read()
    started = time.monotonic()
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            conn.commit()
    elapsed = time.monotonic() - started
    spent = cpu.spent(cpu_before, cpu.read())
    applied = first_replica_applied(conn, replicas, started) if replicas else elapsed
    conn.close()
    return {"rows": len(rows), "batch": batch, "seconds": round(elapsed, 2), "rate": round(len(rows) / elapsed),
            "applied_seconds": round(applied, 2), "applied_rate": round(len(rows) / applied), **spent,
            "load": f"{load} → {load_average()}"}


CEILING_BATCHES = (1000, 10_000)  # the drain's batch size adapts between these


def ceiling(host: str, port: int, tag: str, n: int, settle: Callable[[], None], replicas: list[str],
            cpu: CpuMeter) -> dict[int, dict]:
    """Raw inserts in batches of 1,000 and of 10,000 rows (the drain's smallest and largest), by batch size."""
    return {batch: raw_inserts(host, port, rows_for(f"{tag}b{batch}", n), batch, settle, replicas, cpu)
            for batch in CEILING_BATCHES}


def round_ceiling(before: dict, after: dict) -> dict:
    """A round's ceiling from the raw runs on either side of it: their mean rates (the unbiased estimate of the
    ceiling while the round ran), and the faster run's rates (the stricter, upward-biased figure)."""
    mean = {key: round((before[key] + after[key]) / 2) for key in ("rate", "applied_rate")}
    fast = {key: max(before[key], after[key]) for key in ("rate", "applied_rate")}
    return {"batch": before["batch"], **mean, "seconds": round(before["rows"] / mean["rate"], 2),
            "applied_seconds": round(before["rows"] / mean["applied_rate"], 2), "load": before["load"],
            "fastest_rate": fast["rate"], "fastest_applied_rate": fast["applied_rate"]}


def drain(work: Path, seed: str, tag: str, n: int, confirm: bool, settle: Callable[[], None], cpu: CpuMeter,
          use_native: bool = True) -> dict:
    """Fill a spool with n readings, then time the drain worker until the spool is empty."""
    host, port = seed.rsplit(":", 1)
    fresh_tables(host, int(port))
    spool = Spool(work / f"spool-{tag}.db", max_readings=n + 1)
    now = int(time.time() * 1000)
    for start in range(0, n, 5000):
        spool.commit_group([Entry(Reading(f"{tag}-{i % 50}", "a", 1, i, "bench", now + i, "rtc", 1.5, "C", False,
                                          "ok", now)) for i in range(start, min(n, start + 5000))])
    sink = ReplicatedSink([seed], Credentials("iotgw", "iotgw"), confirm=confirm)
    sink.write([StoredReading(f"{tag}-warm", "a", 1, 0, "bench", now, "rtc", "ok", 1.5, "C", 0, now)])  # connected, schema ready
    writing = [0.0]  # seconds the sender spent in the database's writes, summed over the batches

    def wrote(_rows: int, seconds: float) -> None:
        writing[0] += seconds

    worker = DrainWorker(spool, sink, on_write=wrote, use_native=use_native)
    settle()
    load = load_average()
    cpu_before = cpu.read()
    started = time.monotonic()
    worker.start()
    wait_for(lambda: spool.depth == 0, 900, f"drain {tag}", interval=0.005)
    elapsed = time.monotonic() - started
    spent = cpu.spent(cpu_before, cpu.read())
    worker.stop()
    worker.join(10)
    spool.close()
    return {"rows": n, "confirm": confirm, "seconds": round(elapsed, 2), "rate": round(n / elapsed),
            "writing_seconds": round(writing[0], 2), **spent,
            "load": f"{load} → {load_average()}"}


def mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fifth of the rows (a smoke test)")
    parser.add_argument("--out", default="drain", help="result file stem in bench/results (default: drain)")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="delay added each way by the proxy")
    parser.add_argument("--python-path", action="store_true",
                        help="the drain renders batches in Python even where the native reader is built (the fallback)")
    args = parser.parse_args()
    native_path = native.AVAILABLE and not args.python_path
    path_text = ("with the native reader (gateway/native: read and rendered in C)" if native_path else
                 "in Python (" + ("--python-path" if native.AVAILABLE else f"the native reader is {native.WHY_NOT}")
                 + ")")
    n = int(100_000 * (0.2 if args.quick else 1.0))
    stamp = int(time.time())
    with tempfile.TemporaryDirectory(prefix="iotgw-bench-") as tmp:
        work = Path(tmp)
        with Sandbox.up(work / "sb", replicas=2, broker=False) as sb:
            node = sb.nodes[sb.primary_name()]
            direct = f"{node.host}:{node.port}"
            proxy = DelayProxy((node.host, node.port), args.delay_ms / 1000)
            try:
                # Rounds of raw and both drain kinds, the kinds taking turns going first: single runs swing by a
                # fifth on this shared machine, so each round's ratios are taken within the round and the median
                # round is reported (every round is listed).
                # Every run starts with the replicas caught up: a run's replication (the raw inserts' above all,
                # whose clock stops at the primary's last commit) would otherwise be applied during the next run.
                def settle() -> None:
                    sb.wait_caught_up(timeout=300)

                replicas = [f"{sb.nodes[name].host}:{sb.nodes[name].port}" for name in sb.nodes
                            if name != sb.primary_name()]

                # Each round's drains run between two ceiling runs, and the round's ceiling is their mean (see
                # round_ceiling): single runs swing by a tenth and more.
                cpu = CpuMeter([server.pid for server in sb.nodes.values() if server.pid])
                confirms, plains, ceilings = [], [], []
                ceilings.append(ceiling(node.host, node.port, f"raw{stamp}r0", n, settle, replicas, cpu))
                for r in range(2 if args.quick else ROUNDS):
                    for confirm in ((True, False) if r % 2 == 0 else (False, True)):
                        runs = confirms if confirm else plains
                        runs.append(drain(work, direct, f"{'c' if confirm else 'p'}{stamp}r{r}", n, confirm=confirm,
                                           use_native=native_path,
                                          settle=settle, cpu=cpu))
                    ceilings.append(ceiling(node.host, node.port, f"raw{stamp}r{r + 1}", n, settle, replicas, cpu))
                # The ceiling's batch size: the faster over all ceiling runs (chosen once, not per run, so no
                # round's ceiling is the luckier of two batch sizes).
                batch = max(CEILING_BATCHES, key=lambda b: median([c[b]["rate"] for c in ceilings]))
                raws = [round_ceiling(ceilings[r][batch], ceilings[r + 1][batch]) for r in range(len(confirms))]
                ratios = [c["rate"] / w["rate"] for c, w in zip(confirms, raws, strict=True)]
                plain_ratios = [p["rate"] / w["rate"] for p, w in zip(plains, raws, strict=True)]
                strict_ratios = [c["rate"] / w["fastest_rate"] for c, w in zip(confirms, raws, strict=True)]
                strict_plain = [p["rate"] / w["fastest_rate"] for p, w in zip(plains, raws, strict=True)]
                # Like for like: the confirmed drain ends when a replica has applied its last row, so against
                # raw inserts until a replica has applied theirs.
                applied_ratios = [c["rate"] / w["applied_rate"] for c, w in zip(confirms, raws, strict=True)]
                middle = sorted(range(len(ratios)), key=lambda i: ratios[i])[len(ratios) // 2]
                raw, confirmed, plain = raws[middle], confirms[middle], plains[middle]
                far = drain(work, proxy.endpoint, f"f{stamp}", n, confirm=False, settle=settle, cpu=cpu,
                            use_native=native_path)
                raw_far = max(ceiling("127.0.0.1", proxy.port, f"rawf{stamp}", n, settle, [], cpu).values(),
                              key=lambda c: c["rate"])
            finally:
                proxy.close()
    r_loop = ratios[middle]
    r_plain = median(plain_ratios)
    r_strict, r_strict_plain = median(strict_ratios), median(strict_plain)
    r_applied = median(applied_ratios)
    r_far = far["rate"] / plain["rate"]
    ceiling_verdict = ("the ceiling holds (medians within the slack)" if max(r_loop, r_plain) <= 1 + CEILING_SLACK
                       else "**the drain beats the ceiling: the ceiling is wrong**")
    # CPU accounting (medians over the runs): the servers' and the client's CPU-s per run, and the cores busy.
    raw_runs = [c[batch] for c in ceilings]

    def account(runs: list[dict]) -> dict:
        return {"server_cpu_s": median([r["server_cpu_s"] for r in runs]),
                "client_cpu_s": median([r["client_cpu_s"] for r in runs]),
                "cores_busy": round(median([(r["server_cpu_s"] + r["client_cpu_s"]) / r["seconds"] for r in runs]), 2)}

    cpu_raw, cpu_confirmed, cpu_plain = account(raw_runs), account(confirms), account(plains)
    # Like for like: the plain drain's clock, like raw's, stops at the primary's last commit (the confirmed
    # drain's also holds a replica's last apply, whose CPU raw's clock does not see).
    cpu_predicted = (cpu_raw["server_cpu_s"] + cpu_raw["client_cpu_s"]) / (cpu_plain["server_cpu_s"]
                                                                          + cpu_plain["client_cpu_s"])
    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "delay_ms_each_way": args.delay_ms,
           "native_reader": native_path, "ceiling_holds": max(r_loop, r_plain) <= 1 + CEILING_SLACK,
           "raw_loopback": raw, "drain_loopback_confirmed": confirmed, "drain_loopback": plain,
           "drain_delayed": far, "raw_delayed": raw_far,
           "rounds": {"raw": raws, "confirmed": confirms, "plain": plains}, "ceiling_batch": batch,
           "ceiling_runs": [{str(b): c[b] for b in c} for c in ceilings],
           "ratio_drain_to_raw": round(r_loop, 3), "ratio_plain_drain_to_raw": round(r_plain, 3),
           "ratio_drain_to_faster_raw": round(r_strict, 3), "ratio_plain_drain_to_faster_raw": round(r_strict_plain, 3),
           "ratio_drain_to_raw_applied_on_a_replica": round(r_applied, 3), "ratio_delayed_to_loopback": round(r_far, 3),
           "cpu": {"raw": cpu_raw, "confirmed": cpu_confirmed, "plain": cpu_plain,
                   "ratio_of_total_cpu_raw_to_plain": round(cpu_predicted, 3)}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=1) + "\n")
    md = [
        "# Drain benchmark", "",
        f"Run {out['date']}{' (quick)' if args.quick else ''}: a {n}-reading spool backlog, primary with 2 "
        "replicas (sync_binlog=1, innodb_flush_log_at_trx_commit=1), this shared 2-core machine.", "",
        "| run | rows/s | seconds | of which writing | load (1/5/15) |", "|---|---|---|---|---|",
        f"| raw multi-row inserts, loopback (statements built beforehand, {raw['batch']:,} rows each, commit each; mean of the runs before and after the round) | {raw['rate']} | {raw['seconds']} | {raw['seconds']} | {raw['load']} |",
        f"| raw multi-row inserts, loopback, until a replica has applied them (the same run) | {raw['applied_rate']} | {raw['applied_seconds']} | {raw['seconds']} | {raw['load']} |",
        f"| gateway drain, loopback, confirmed on a replica (default) | {confirmed['rate']} | {confirmed['seconds']} | {confirmed['writing_seconds']} | {confirmed['load']} |",
        f"| gateway drain, loopback, no confirmation | {plain['rate']} | {plain['seconds']} | {plain['writing_seconds']} | {plain['load']} |",
        f"| gateway drain, {args.delay_ms:g} ms each way, no confirmation | {far['rate']} | {far['seconds']} | {far['writing_seconds']} | {far['load']} |",
        f"| raw multi-row inserts, {args.delay_ms:g} ms each way ({raw_far['batch']:,} rows each) | {raw_far['rate']} | {raw_far['seconds']} | {raw_far['seconds']} | {raw_far['load']} |",
        "", "| target | measured | |", "|---|---|---|",
        f"| drain ≥ 0.9 × raw multi-row inserts (loopback, default: confirmed on a replica) | {r_loop:.2f} | {mark(r_loop >= 0.9)} |",
        f"| the same without confirmation | {r_plain:.2f} | {mark(r_plain >= 0.9)} |",
        f"| (stricter, not the target: against the faster of the two neighbouring raw runs) confirmed / without | "
        f"{r_strict:.2f} / {r_strict_plain:.2f} | |",
        f"| (like for like, not a target: the confirmed drain against raw inserts until a replica has applied "
        f"them; see below) | {r_applied:.2f} | |",
        f"| drain with {args.delay_ms:g} ms each way ≥ 0.5 × loopback drain | {r_far:.2f} | {mark(r_far >= 0.5)} |",
        f"| drain ≥ 50,000 rows/s (absolute, from an earlier, less loaded machine) | {confirmed['rate']} | "
        f"{mark(confirmed['rate'] >= 50_000)} |",
        "", f"The drain took and rendered its batches {path_text}.",
        "The like-for-like figure can exceed 1 without a ceiling being wrong: the drain writes a backlog's end in "
        "halving batches (down to 1,000 rows), so a replica's last apply is short, while raw's last batch is "
        f"{raw['batch']:,} rows. The delayed raw run is one run beside the delayed drain, for scale, not the target's "
        "baseline: single runs here swing by a tenth and more.",
        "The delayed runs write without confirmation on both sides of the ratio: the replicas replicate from "
        "the primary's real address, which the proxy does not stand for, so the writer could not match them "
        "to the primary it reaches through the proxy.",
        f"Every run starts from empty readings tables, with the replicas caught up. Loopback runs: {len(raws)} rounds of both "
        "drain kinds (in turn first), each round between two raw ceiling runs and measured against their mean, at "
        f"the batch size faster over all ceiling runs ({batch:,} rows; ceiling runs at 1,000 rows "
        f"{[c[1000]['rate'] for c in ceilings]}, at 10,000 rows {[c[10_000]['rate'] for c in ceilings]} rows/s). "
        "The table shows the round with the median ratio (confirmed); the ratios are medians of the rounds' own "
        f"ratios (ceiling {[x['rate'] for x in raws]}, confirmed {[x['rate'] for x in confirms]}, "
        f"no confirmation {[x['rate'] for x in plains]} rows/s; ratios confirmed {[round(x, 2) for x in ratios]}, "
        f"no confirmation {[round(x, 2) for x in plain_ratios]}; against the faster neighbour, confirmed "
        f"{[round(x, 2) for x in strict_ratios]}, no confirmation {[round(x, 2) for x in strict_plain]}; confirmed "
        f"against raw applied on a replica {[round(x, 2) for x in applied_ratios]}). "
        "Why the mean: single runs of the same thing swing by a tenth and more here, so the faster of two raw runs "
        "is the luckier one, a ceiling biased upward by about half that swing, while each drain is one run. "
        "\"Of which writing\": the drain's time inside the database's writes, summed over its batches; the rest is "
        "starting (the first, smallest batches), the last batch's delete from the spool, and waits between batches. "
        f"Writes alone against raw: {raw['seconds'] / max(confirmed['writing_seconds'], 0.01):.2f} (confirmed), "
        f"{raw['seconds'] / max(plain['writing_seconds'], 0.01):.2f} (no confirmation). "
        "The raw ceiling's statements are built before the clock starts: a drain clearly above it in the median "
        f"(by more than {CEILING_SLACK:.2f}) would mean the ceiling is wrong; single rounds above 1.0 are the "
        "run-to-run spread, and a median at 1.0 means the drain adds nothing measurable to the database's own time. "
        f"This run: {ceiling_verdict}.", "",
        f"CPU per run of {n:,} rows (medians, from /proc: the three database servers, and this process, which is "
        f"the raw client or the drain): raw inserts {cpu_raw['server_cpu_s']} + {cpu_raw['client_cpu_s']} CPU-s, "
        f"{cpu_raw['cores_busy']} cores busy; drain without confirmation {cpu_plain['server_cpu_s']} + "
        f"{cpu_plain['client_cpu_s']}, {cpu_plain['cores_busy']} cores; confirmed drain "
        f"{cpu_confirmed['server_cpu_s']} + {cpu_confirmed['client_cpu_s']}, {cpu_confirmed['cores_busy']} cores "
        "(its clock also holds a replica's last apply). On these two cores the servers and the drain share the CPU "
        "and the runs keep about as many cores busy, so the drain's own CPU becomes time: raw's total CPU over the "
        f"plain drain's (both clocks stop at the primary's last commit) is {cpu_predicted:.2f}, next to the "
        f"measured {r_plain:.2f}. A gateway writing to database servers on other machines does not compete with "
        "them.",
    ]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
