"""Batch confirmation on a replica: the traps of asynchronous replication (a GTID wait that ignores server ids,
a primary killed after its commit), reproduced on purpose."""

from __future__ import annotations

import pytest

from gateway.sinks.base import SinkUnavailable
from gateway.sinks.replicated import ReplicatedSink, parse_token
from gateway.spool import StoredReading
from tests.helpers import WRITER, count_rows, promote_best, reading, wait_until

pytestmark = [pytest.mark.servers]


def rows(start, n, device="dev1"):
    return [StoredReading.of(reading(i, device)) for i in range(start, start + n)]


def test_zero_row_batch_is_confirmed_on_the_whole_position(sandbox):
    sink = ReplicatedSink([sandbox.endpoint("db1")], WRITER)
    try:
        first = sink.write(rows(0, 50)).token
        again = sink.write(rows(0, 50)).token  # every row already there: no binlog event, @@last_gtid is stale
        assert parse_token(first)[2] != "" and parse_token(again)[2] != ""
        wait_until(lambda: sink.confirmed([first, again]) == [first, again], 20, "both batches confirmed")
        assert not sink.take_requeue_signal()  # the first primary: nothing to write again...
        assert sink.confirmed(["e7/99/0-99-5"]) == []  # ...until a token of another primary shows up
        assert sink.take_requeue_signal()  # (a batch an earlier run left unconfirmed): written again, once
        assert not sink.take_requeue_signal()
        assert count_rows(sandbox, "db1") == 50
    finally:
        sink.close()


def test_confirmation_off_gives_no_token(sandbox):
    sink = ReplicatedSink([sandbox.endpoint("db2")], WRITER, confirm=False)
    try:
        assert sink.write(rows(0, 5)).token is None and not sink.needs_confirmation
    finally:
        sink.close()


def test_a_lost_batch_is_never_confirmed_by_the_new_primarys_gtids(make_sandbox):
    """MASTER_GTID_WAIT compares sequence numbers only: after a failover 0-2-N makes a lost 0-1-N look applied."""
    sb = make_sandbox(replicas=2, broker=False)
    # No periodic re-verification: the confirmers stay the replicas that were healthy when the primary died,
    # as they are whenever a crash comes between two verifications.
    sink = ReplicatedSink([sb.endpoint("db1")], WRITER, verify_interval_s=600, confirm_wait_s=0.1)
    try:
        ok = sink.write(rows(0, 20)).token
        wait_until(lambda: sink.confirmed([ok]) == [ok], 20, "the first batch confirmed")
        for name in ("db2", "db3"):
            with sb.connect(name) as conn, conn.cursor() as cur:
                cur.execute("STOP SLAVE IO_THREAD")  # the next batch reaches no replica
        lost = sink.write(rows(20, 20)).token
        attempts = sink.confirm_checks
        wait_until(lambda: sink.confirm_checks >= attempts + 4, 20, "four confirmation attempts")
        assert sink.confirmed([lost]) == []
        sb.kill("db1")  # the batch now exists nowhere
        new = promote_best(sb, ["db2", "db3"])  # writes epoch 2 as 0-<id>-N: the same sequence number
        other, lost_seq = ("db3" if new == "db2" else "db2"), int(parse_token(lost)[2].split("-")[2])

        def other_seq():
            with sb.connect(other) as conn, conn.cursor() as cur:
                cur.execute("SELECT @@gtid_slave_pos")
                return int(cur.fetchone()[0].split("-")[2])

        wait_until(lambda: other_seq() >= lost_seq, 20, "the other replica to reach the lost batch's number")
        attempts = sink.confirm_checks  # the trap is armed: MASTER_GTID_WAIT there now says "applied"
        wait_until(lambda: sink.confirm_checks >= attempts + 6 or sink.confirmed([lost]), 20,
                   "the watcher to try every old replica again")
        assert sink.confirmed([lost]) == []
        def write_fresh():
            try:
                return sink.write(rows(40, 20)).token
            except SinkUnavailable:  # the first write notices that the old connection is dead
                return None

        fresh = wait_until(write_fresh, 20, "a write on the new primary")  # finds the new primary...
        assert sink.primary.endpoint == sb.endpoint(new) and parse_token(fresh)[0] == 2
        assert sink.take_requeue_signal()  # ...and asks the drain to write unconfirmed batches again
        assert sink.confirmed([lost]) == []  # a token of epoch 1 is never confirmed any more
        sink.write(rows(20, 20))  # the re-applied batch
        assert count_rows(sb, new) == 60
    finally:
        sink.close()


def test_batches_left_unconfirmed_by_an_earlier_run_are_written_again(sandbox, tmp_path):
    from gateway.drain import DrainWorker
    from gateway.spool import Entry, Spool

    spool = Spool(tmp_path / "spool.db")
    spool.commit_group([Entry(reading(i)) for i in range(100)])
    conn = spool.drain_connection()
    ids = spool.take(conn, 1000).ids
    spool.written(conn, ids, "e5/77/0-77-3")  # as if written to a primary of another topology, then a crash
    conn.close()
    drain = DrainWorker(spool, ReplicatedSink([sandbox.endpoint("db2")], WRITER), retry_max_s=0.5)
    drain.start()
    try:
        wait_until(lambda: spool.depth == 0, 30, "the old batch written again and confirmed")
        assert count_rows(sandbox, "db1") == 100
    finally:
        drain.stop()
        drain.join(30)
        spool.close()
