"""End-to-end acks are coalesced per ack interval while commits follow each other, and go out at once after
the last commit of a burst (nothing more queued: waiting would only delay them)."""

from __future__ import annotations

from gateway.ingest.mqtt import MqttIngest
from gateway.mqttconn import BrokerSettings
from gateway.protocol import Ack, Reading
from gateway.spool import Entry, Spool, SpoolWriter


class RecordingSession:
    """Stands in for the MQTT session: records the acks published."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish_room(self) -> int:
        return 1000

    def in_flight(self) -> int:
        return 0

    def publish(self, topic: str, payload: str) -> None:
        self.published.append(topic)

    def ack(self, mids) -> None:  # noqa: ANN001 - PUBACKs are not what this test looks at
        pass

    def wake(self) -> None:
        pass


def ingest_with(tmp_path, interval_s: float) -> tuple[MqttIngest, SpoolWriter, RecordingSession]:
    spool = Spool(tmp_path / "spool.db")
    writer = SpoolWriter(spool)
    ingest = MqttIngest(BrokerSettings("127.0.0.1", 1), client_id="t", prefix="p", spool=spool, writer=writer,
                        ack_interval_s=interval_s)
    session = RecordingSession()
    ingest.session = session  # type: ignore[assignment]
    return ingest, writer, session


def test_acks_wait_for_the_interval_while_more_is_queued(tmp_path):
    ingest, writer, session = ingest_with(tmp_path, interval_s=60.0)
    ingest.committed([], [("s", Ack("d1", "a", 1, 5))])  # the first goes out: nothing was due before
    writer.submit(Entry(Reading("d1", "a", 1, 7, "s", None, "none", 1.0, "C", False, "none", 0)))  # more to commit
    ingest.committed([], [("s", Ack("d1", "a", 1, 6))])
    assert session.published == ["p/s/d1/ack"]  # the second waits for its interval (or the queue to empty)


def test_the_last_commit_of_a_burst_acks_at_once(tmp_path):
    ingest, _writer, session = ingest_with(tmp_path, interval_s=60.0)
    ingest.committed([], [("s", Ack("d1", "a", 1, 5))])
    ingest.committed([], [("s", Ack("d1", "a", 1, 6)), ("s", Ack("d2", "a", 1, 3))])  # nothing more queued
    assert session.published == ["p/s/d1/ack", "p/s/d1/ack", "p/s/d2/ack"]
