"""Helpers for the ingest chain tests: run a gateway, simulate collectors, check what landed where."""

from __future__ import annotations

import collections
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from gateway.mqttconn import BrokerSettings
from gateway.sandbox import Sandbox
from gateway.sandbox.launch import GatewayProcess, sandbox_config, spool_depth, wait_for
from gateway.simulator import SimOptions, SimReport, Simulator


class Background:
    """Run the simulator in a thread so a fault can be injected while readings flow."""

    def __init__(self, sim, deadline_s: float = 240) -> None:
        self.sim, self.report, self.error = sim, None, None
        self.thread = threading.Thread(target=self._run, args=(deadline_s,), daemon=True)
        self.thread.start()

    def _run(self, deadline_s: float) -> None:
        try:
            self.report = self.sim.run(deadline_s=deadline_s)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def join(self, timeout: float = 300):
        self.thread.join(timeout)
        self.sim.close()
        if self.error:
            raise self.error
        assert self.report is not None, "simulator did not finish"
        return self.report

    def join_acked(self, timeout: float = 300, log: Callable[[], str] | None = None) -> SimReport:
        """`join`, then require every reading acknowledged (the failure shows the report and `log()`)."""
        report = self.join(timeout)
        assert report.unacked == 0, f"{report.summary()}\n{log() if log else ''}"
        return report


class SerialLine:
    """A pty standing in for a collector's serial cable: the gateway opens `port`, the test writes to the other
    end; what the gateway writes back (ack frames) is read all the time, so its writes never block, and the
    last 10,000 lines are kept in `lines`."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.port = os.ttyname(self.slave)
        self.lines: collections.deque[str] = collections.deque(maxlen=10_000)
        self._stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                buf += os.read(self.master, 65536)
            except OSError:  # closed
                return
            *done, buf = buf.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in done)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self._stop.set()
        os.close(self.master)
        os.close(self.slave)

    def __enter__(self) -> SerialLine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def broker_of(sb: Sandbox) -> BrokerSettings:
    b = sb.endpoints()["broker"]
    return BrokerSettings(b["host"], b["port"])


def start_gateway(
    sb: Sandbox, workdir: Path, *, database: bool = True, env: dict | None = None, **overrides
) -> GatewayProcess:
    """Start a gateway on the sandbox and wait until it has subscribed (so nothing published is missed)."""
    cfg = sandbox_config(sb, workdir, prefix=unique("t"), client_id=unique("gw-"), database=database, **overrides)
    gw = GatewayProcess(workdir, cfg, env=env).start()
    wait_for(lambda: "subscribed to" in gw.log_tail(50), 60, f"the gateway to subscribe (log:\n{gw.log_tail()})")
    return gw


def sim_for(gw: GatewayProcess, sb: Sandbox, **options) -> Simulator:
    opts = SimOptions(prefix=gw.config["mqtt"]["topic_prefix"], **options)
    sim = Simulator(broker_of(sb), opts)
    sim.connect()
    return sim


def simulate_through(gw: GatewayProcess, sb: Sandbox, deadline_s: float = 180, **options) -> SimReport:
    """Run simulated collectors against the gateway until everything is acknowledged (or the deadline)."""
    sim = sim_for(gw, sb, **options)
    try:
        return sim.run(deadline_s=deadline_s)
    finally:
        sim.close()


def rows_on(sb: Sandbox, name: str, database: str = "iot") -> list[tuple]:
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT device, node, boot, seq, UNIX_TIMESTAMP(sampled_at) * 1000 FROM `{database}`.readings")
        return [(d, n, b, s, int(round(float(t))) if t is not None else None) for d, n, b, s, t in cur.fetchall()]


def count_on(sb: Sandbox, name: str) -> tuple[int, int]:
    """(rows, distinct identities) in iot.readings on one server (0, 0 if the table is not there yet)."""
    rows = sb.rows("SELECT count(*), count(DISTINCT device, node, boot, seq) FROM iot.readings", name)
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def checksum_on(sb: Sandbox, name: str) -> int:
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("CHECKSUM TABLE iot.readings")
        return cur.fetchone()[1]


def wait_stored(sb: Sandbox, gw: GatewayProcess, expected: int, timeout: float = 120) -> None:
    """Wait until the spool is empty and the primary holds `expected` readings, and replicas caught up."""
    primary = sb.primary_name()
    wait_for(
        lambda: count_on(sb, primary)[0] >= expected and spool_depth(gw.workdir / "spool.db") == 0,
        timeout,
        f"{expected} readings on {primary} and an empty spool (gateway log:\n{gw.log_tail()})",
    )
    sb.wait_caught_up(timeout=60)


def assert_exact(sb: Sandbox, report: SimReport, servers: list[str] | None = None) -> None:
    """Every server holds exactly the readings sent, once each, with the sample time that was sent."""
    sent = {ident: ts for ident, (ts, _v) in report.readings.items()}
    checksums = set()
    for name in servers or sb.db_names():
        rows = rows_on(sb, name)
        got = {r[:4]: r[4] for r in rows}
        assert len(rows) == len(got), f"{name}: duplicate identities"
        missing = set(sent) - set(got)
        extra = set(got) - set(sent)
        assert not missing, f"{name}: {len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
        assert not extra, f"{name}: {len(extra)} unexpected readings"
        wrong = [i for i in sent if got[i] != sent[i]]
        assert not wrong, (
            f"{name}: {len(wrong)} sample times differ, e.g. {wrong[0]}: {got[wrong[0]]} != {sent[wrong[0]]}"
        )
        checksums.add(checksum_on(sb, name))
    assert len(checksums) == 1, f"CHECKSUM TABLE differs between servers: {checksums}"
