"""What the live tests share (real sandboxes): accounts, the one wait loop, the load generators, SQL shortcuts
and the one consistency check.

Load generators: `Load` commits readings to a spool as ingest does and drains them through the replicated
writer (what the gateway does under failovers); `RowLoad` writes rows straight to `iot.t` on the primary
(inserts, updates, deletes: replication traffic for the errant/relay/clone tests).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main as cli_main
from gateway.drain import DrainWorker
from gateway.protocol import Reading
from gateway.sandbox import Sandbox, process
from gateway.sinks.replicated import ReplicatedSink
from gateway.spool import Entry, Spool
from gateway.topology import analysis
from gateway.topology.conn import Credentials, is_read_only
from gateway.topology.dialect import MARIADB
from gateway.topology.discovery import discover
from gateway.topology.model import Snapshot
from gateway.topology.promote import promote

WRITER = Credentials("iotgw", "iotgw", connect_timeout=2, io_timeout=5)
ADMIN = Credentials("root", "", connect_timeout=2, io_timeout=20)


# ------------------------------------------------------------------------------------------------ waiting
def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll `pred` every `interval` s until it returns something true (the sandbox's one wait loop)."""
    return process.wait_until(pred, timeout, interval, what, max_interval=interval)


def drain_until_empty(drain: DrainWorker, timeout: float, what: str, join_s: float = 30) -> None:
    """Start `drain` and wait until its spool holds nothing; the drain is stopped and joined whatever happens."""
    drain.start()
    try:
        wait_until(lambda: drain.spool.depth == 0, timeout, what)
    finally:
        drain.stop()
        drain.join(join_s)


# ------------------------------------------------------------------------------------------ servers and SQL
def name_of(sb: Sandbox, endpoint: str) -> str:
    """The node name of a sandbox server's `HOST:PORT`."""
    return next(n for n in sb.db_names() if sb.endpoint(n) == endpoint)


def snap(sb: Sandbox) -> Snapshot:
    return discover([sb.endpoint(n) for n in sb.db_names()], ADMIN)


def sql(sb: Sandbox, name: str, *statements: str) -> list:
    """Run statements on `name` as root; the last one's rows."""
    with sb.connect(name, read_timeout=40) as conn, conn.cursor() as cur:
        for s in statements:
            cur.execute(s)
        return list(cur.fetchall())


def one(sb: Sandbox, name: str, statement: str):
    return sql(sb, name, statement)[0][0]


def replica_status(sb: Sandbox, name: str) -> dict:
    """`SHOW SLAVE STATUS` of `name` as a dict ({} when it replicates from nothing)."""
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        cols = [c[0] for c in cur.description]
        return dict(zip(cols, cur.fetchone() or (), strict=False))


def wait_replicas_noticed(sb: Sandbox, replicas: list[str], timeout: float = 30) -> None:
    """Wait until none of `replicas` reports its IO thread running: right after a primary is killed they still
    say "Yes" for a moment, and a failover then (rightly) refuses, as for a primary they can still reach."""
    wait_until(lambda: all(replica_status(sb, n).get("Slave_IO_Running") != "Yes" for n in replicas), timeout,
               f"{', '.join(replicas)} to notice that their source is gone")


def read_only(sb: Sandbox, name: str) -> bool:
    with sb.connect(name) as conn:
        return is_read_only(conn)


def count_rows(sb: Sandbox, name: str, table: str = "iot.readings") -> int:
    return int(one(sb, name, f"SELECT COUNT(*) FROM {table}"))


def rows_or_zero(sb: Sandbox, name: str) -> int:
    try:
        return count_rows(sb, name)
    except Exception:  # table not created yet, or the server is down
        return 0


def sqlite_readings(path: Path) -> int:
    """Readings in a gateway's SQLite readings file (0 while it or its table does not exist yet)."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def wait_sql_error(sb: Sandbox, name: str, errno: int, timeout: float = 20) -> None:
    """Wait until `name`'s SQL thread stopped with `errno`."""
    def stopped() -> bool:
        with sb.connect(name) as conn, conn.cursor() as cur:
            cur.execute(MARIADB.replica_status_sql)
            cols = [c[0] for c in cur.description]
            row = dict(zip(cols, cur.fetchone(), strict=True))
        return int(row["Last_SQL_Errno"]) == errno

    wait_until(stopped, timeout, f"{name} to stop with error {errno}")


def consistency(sb: Sandbox, names: list[str], primary: str, table: str = "iot.readings") -> tuple[int, str]:
    """Every server in `names` has applied the primary's position and holds the same rows (count, checksum)."""
    pos = one(sb, primary, MARIADB.binlog_position_sql)
    seen = {}
    for name in names:
        with sb.connect(name, read_timeout=40) as conn, conn.cursor() as cur:
            if name != primary:
                cur.execute(*MARIADB.wait_for_gtid_sql(pos, 30))
                assert cur.fetchone()[0] == 0, f"{name} did not apply {primary}'s position {pos}"
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            count = int(cur.fetchone()[0])
            cur.execute(f"CHECKSUM TABLE {table}")
            seen[name] = (count, str(cur.fetchone()[1]))
    assert len(set(seen.values())) == 1, f"servers differ: {seen}"
    return seen[primary]


def promote_best(sb: Sandbox, alive: list[str]) -> str:
    """Promote the most advanced live replica by hand (what the failover command automates)."""
    snapshot = discover([sb.endpoint(n) for n in alive], ADMIN)
    best = analysis.rank_candidates(snapshot)[0]
    promote([sb.endpoint(n) for n in alive], best.endpoint, ADMIN)
    return name_of(sb, best.endpoint)


# ---------------------------------------------------------------------------------------------- the CLI
def cli(*args: str) -> tuple[int, str]:
    """Run `iotgw ARGS…` in-process; (exit code, output)."""
    result = CliRunner().invoke(cli_main, list(args))
    return result.exit_code, result.output


def cli_json(*args: str) -> dict:
    code, out = cli(*args, "--json")
    assert code == 0, out
    return json.loads(out)


# ------------------------------------------------------------------------------------------ load: readings
def reading(seq: int, device: str = "dev1") -> Reading:
    return Reading(device=device, node="n1", boot=1, seq=seq, site="lab", ts=1_700_000_000_000 + seq * 1000,
                   src="rtc", value=seq * 0.5, unit="C", cached=False, clock="ok", received_ms=1_700_000_000_000)


class Producer(threading.Thread):
    """Commits readings to the spool in small groups, as ingest does; `acked` counts what was committed."""

    def __init__(self, spool: Spool, group: int = 20, period: float = 0.005, device: str = "dev1") -> None:
        super().__init__(name="producer", daemon=True)
        self.spool, self.group, self.period, self.device = spool, group, period, device
        self.acked = 0
        self.running = threading.Event()
        self.running.set()
        self.stopped = threading.Event()
        self.idle = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            if not self.running.is_set():
                self.idle.set()
                self.running.wait(0.05)
                continue
            self.idle.clear()
            entries = [Entry(reading(self.acked + i, self.device)) for i in range(self.group)]
            self.spool.commit_group(entries)
            self.acked += self.group  # committed: this is what the gateway would acknowledge
            time.sleep(self.period)
        self.idle.set()

    def pause(self) -> None:
        self.running.clear()
        wait_until(self.idle.is_set, 10, "producer to pause")

    def resume(self) -> None:
        self.running.set()

    def stop(self) -> None:
        self.stopped.set()
        self.running.set()
        self.join(10)


@dataclass
class Load:
    """Readings committed to a spool (counted as acknowledged), drained by the replicated writer."""

    spool: Spool
    sink: ReplicatedSink
    drain: DrainWorker
    producer: Producer

    @classmethod
    def start(cls, sb: Sandbox, tmp_path: Path, seeds: list[str], group: int = 20, period: float = 0.005) -> Load:
        spool = Spool(tmp_path / "spool.db")
        sink = ReplicatedSink([sb.endpoint(n) for n in seeds], WRITER, resolve_wait_s=1.0, verify_interval_s=0.3)
        drain = DrainWorker(spool, sink, batch_size=200, retry_max_s=0.3)
        drain.start()
        producer = Producer(spool, group=group, period=period)
        producer.start()
        return cls(spool, sink, drain, producer)

    def follows(self, sb: Sandbox, name: str) -> bool:
        return self.sink.primary is not None and self.sink.primary.endpoint == sb.endpoint(name)

    def settle(self, confirm: bool = True, timeout: float = 60) -> None:
        """Stop producing and wait until every batch is written (and, with `confirm`, confirmed on a replica)."""
        self.producer.pause()
        if confirm:
            wait_until(lambda: self.spool.depth == 0, timeout, "every batch written and confirmed")
        else:
            wait_until(lambda: self.spool.stats().pending == 0, timeout, "every batch written")

    def stop(self) -> None:
        self.producer.stop()
        self.drain.stop()
        self.drain.join(30)
        self.sink.close()
        self.spool.close()


# ----------------------------------------------------------------------------------------------- load: rows
class RowLoad:
    """A thread writing to `iot.t` on the primary: inserts, updates and deletes, until stopped."""

    def __init__(self, sb: Sandbox, primary: str = "db1", period: float = 0.003) -> None:
        self.sb, self.primary, self.period = sb, primary, period
        self.ops = {"insert": 0, "update": 0, "delete": 0}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="row-load", daemon=True)

    def start(self) -> RowLoad:
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        with self.sb.connect(self.primary) as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                i += 1
                try:
                    cur.execute("INSERT INTO iot.t (id, v) VALUES (%s, %s)", (100_000 + i, i))
                    self.ops["insert"] += 1
                    if i % 3 == 0:
                        cur.execute("UPDATE iot.t SET v = v + 1000 WHERE id = %s", (100_000 + i - 1,))
                        self.ops["update"] += 1
                    if i % 5 == 0:
                        cur.execute("DELETE FROM iot.t WHERE id = %s", (100_000 + i - 4,))
                        self.ops["delete"] += 1
                except Exception as exc:  # recorded: the test asserts there were none
                    self.errors.append(repr(exc))
                    return
                time.sleep(self.period)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(10)
        return self.ops
