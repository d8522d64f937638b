"""Shared pieces of the live operations tests: write load through the real spool + replicated writer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main as cli_main
from gateway.drain import DrainWorker
from gateway.sandbox import Sandbox
from gateway.sinks.replicated import ReplicatedSink
from gateway.spool import Spool
from tests.topology.helpers import WRITER, Producer, consistency, ep, rows_or_zero, wait_until

__all__ = ["Load", "cli", "consistency", "ep", "read_only", "rows_or_zero", "wait_until"]


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
        sink = ReplicatedSink([ep(sb, n) for n in seeds], WRITER, resolve_wait_s=1.0, verify_interval_s=0.3)
        drain = DrainWorker(spool, sink, batch_size=200, retry_max_s=0.3)
        drain.start()
        producer = Producer(spool, group=group, period=period)
        producer.start()
        return cls(spool, sink, drain, producer)

    def follows(self, sb: Sandbox, name: str) -> bool:
        return self.sink.primary is not None and self.sink.primary.endpoint == ep(sb, name)

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


def cli(*args: str) -> tuple[int, str]:
    """Run `iotgw ARGS…` in-process; (exit code, output)."""
    result = CliRunner().invoke(cli_main, list(args))
    return result.exit_code, result.output


def cli_json(*args: str) -> dict:
    code, out = cli(*args, "--json")
    assert code == 0, out
    return json.loads(out)


def read_only(sb: Sandbox, name: str) -> bool:
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@read_only")
        return bool(cur.fetchone()[0])
