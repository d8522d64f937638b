"""The writer that follows the primary, on real sandboxes, driven by the real spool and drain worker.

Each round: readings flow, the primary is killed with SIGKILL, the most advanced replica is promoted by hand
(epoch first, then read_only=OFF), the writer finds it, and every acknowledged reading ends up on the new
primary exactly once, with every live server holding the same rows (count and CHECKSUM TABLE).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gateway.cli import main as cli_main
from gateway.drain import DrainWorker
from gateway.sinks.replicated import ReplicatedSink
from gateway.spool import Spool, StoredReading
from gateway.topology import analysis
from gateway.topology.discovery import discover
from tests.helpers import (
    ADMIN,
    WRITER,
    Producer,
    consistency,
    count_rows,
    name_of,
    promote_best,
    rows_or_zero,
    wait_until,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def _start(sb, tmp_path, seeds):
    spool = Spool(tmp_path / "spool.db")
    sink = ReplicatedSink([sb.endpoint(n) for n in seeds], WRITER, resolve_wait_s=1.0, verify_interval_s=0.3)
    drain = DrainWorker(spool, sink, batch_size=200, retry_max_s=0.5)
    drain.start()
    producer = Producer(spool)
    producer.start()
    return spool, sink, drain, producer


def _stop(spool, drain, producer):
    producer.stop()
    drain.stop()
    drain.join(30)
    spool.close()


def test_five_kill_and_promote_rounds_lose_and_duplicate_nothing(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=5, broker=False)
    spool, sink, drain, producer = _start(sb, tmp_path, ["db1"])
    alive, primary = sb.db_names(), "db1"
    try:
        for round_no in range(5):
            base = rows_or_zero(sb, primary)
            wait_until(
                lambda p=primary, b=base: rows_or_zero(sb, p) >= b + 300, 60, f"round {round_no}: readings to flow"
            )
            sb.kill(primary)  # kill -9 under write load
            alive.remove(primary)
            new = promote_best(sb, alive)
            wait_until(
                lambda n=new: sink.primary is not None and sink.primary.endpoint == sb.endpoint(n),
                30,
                f"round {round_no}: the writer to follow {new}",
            )
            before = rows_or_zero(sb, new)
            wait_until(lambda n=new, b=before: rows_or_zero(sb, n) > b, 30, f"round {round_no}: writes on {new}")
            primary = new
            # Stop producing and let the drain finish: with a replica left, every batch must be confirmed.
            producer.pause()
            if len(alive) > 1:
                wait_until(lambda: spool.depth == 0, 60, f"round {round_no}: every batch written and confirmed")
            else:
                wait_until(lambda: spool.stats().pending == 0, 60, f"round {round_no}: every batch written")
            count, _ = consistency(sb, alive, primary)
            assert count == producer.acked, f"round {round_no}: {producer.acked} acknowledged, {count} stored"
            producer.resume()
        assert drain.error is None
        assert sink.switches == 6  # the first primary, then one per promotion
    finally:
        _stop(spool, drain, producer)


def test_old_primary_back_writable_gets_no_write(make_sandbox, tmp_path):
    sb = make_sandbox(replicas=2, broker=False)
    spool, sink, drain, producer = _start(sb, tmp_path, ["db1", "db2"])
    try:
        wait_until(lambda: rows_or_zero(sb, "db1") >= 200, 60, "readings to flow")
        sb.kill("db1")
        # A person's promotion through the CLI, of the most advanced replica.
        snap = discover([sb.endpoint("db2"), sb.endpoint("db3")], ADMIN)
        new = name_of(sb, analysis.rank_candidates(snap)[0].endpoint)
        result = CliRunner().invoke(cli_main, ["topology", "promote", "--sandbox", str(sb.directory), new, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["epoch"] == 2
        wait_until(lambda: sink.primary is not None and sink.primary.endpoint == sb.endpoint(new), 30, "writer to follow")
        sb.restart("db1")
        with sb.connect("db1") as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only=OFF")  # the worst case: it comes back writable
            cur.execute("SELECT @@gtid_binlog_pos")
            old_pos = cur.fetchone()[0]
        old_rows = count_rows(sb, "db1")
        # A second writer that starts now, seeded with the old primary first, must refuse it too.
        late = ReplicatedSink([sb.endpoint("db1"), sb.endpoint(new)], WRITER, resolve_wait_s=2.0)
        try:
            late.write(
                [
                    StoredReading(f"late{i}", "n1", 1, 0, "lab", None, "none", "none", 1.0, "C", 0, 1_700_000_000_000)
                    for i in range(3)
                ]
            )
            assert late.primary.endpoint == sb.endpoint(new)
        finally:
            late.close()
        # Several verification rounds of the running writer while readings keep flowing.
        before = count_rows(sb, new)
        wait_until(lambda: count_rows(sb, new) >= before + 400, 60, "more readings on the new primary")
        producer.pause()
        wait_until(lambda: spool.depth == 0, 60, "every batch written and confirmed")
        with sb.connect("db1") as conn, conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_pos, @@read_only")
            assert cur.fetchone() == (old_pos, 0)  # still writable, and not one transaction more
        assert count_rows(sb, "db1") == old_rows
        count, _ = consistency(sb, [new, *({"db2", "db3"} - {new})], new)
        assert count == producer.acked + 3
    finally:
        _stop(spool, drain, producer)
