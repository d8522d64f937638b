"""`iotgw demo`: the whole chain on this machine, scripted faults, a live view, an integrity report.

Sandbox (MariaDB primary + 2 replicas, Mosquitto) → simulated collectors and a redundant collector pair →
gateway → spool → primary → replicas. Midway the primary is killed: readings keep being acknowledged from the
spool, the gateway's failover monitor promotes the best replica, the writer follows it, and the old primary
comes back as a replica (or is rebuilt if it diverged). The pair's active node loses power and its partner
takes over. The report at the end counts what was sent, acknowledged, stored on every server, lost and
duplicated, and the pair's coverage gap.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway import config as config_mod
from gateway.mqttconn import BrokerSettings
from gateway.sandbox import Sandbox
from gateway.sandbox.rebuild import rebuild_node
from gateway.service import Gateway
from gateway.simulator import SimOptions, Simulator
from gateway.status.term import render as render_status


@dataclass
class DemoReport:
    """The integrity report."""

    sent: int = 0
    acknowledged: int = 0
    stored_on_primary: int = 0
    stored_on_replicas: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    quarantined: int = 0
    checksums_equal: bool = False
    pair: dict = field(default_factory=dict)  # the MicroPython-port collector pair: takeover and coverage
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        pair_ok = not self.pair or (self.pair["caches_empty"] and self.pair["duplicated"] == 0
                                    and self.pair["max_gap_s"] <= self.pair["gap_bound_s"])
        return (self.lost == 0 and self.duplicated == 0 and self.checksums_equal and self.sent == self.acknowledged
                and all(n == self.stored_on_primary for n in self.stored_on_replicas.values()) and pair_ok)


PORT_HOST = Path(__file__).resolve().parents[1] / "firmware" / "micropython" / "host"
PAIR_SAMPLE_MS, PAIR_HB_TIMEOUT_MS = 1000, 3500


def start_pair(host: str, port: int, state_dir: Path):
    """The MicroPython port's redundant pair (its real logic, on this PC), or None outside a source checkout."""
    if not (PORT_HOST / "run_collector.py").exists():
        return None
    if str(PORT_HOST) not in sys.path:
        sys.path.insert(0, str(PORT_HOST))
    from run_collector import HostCollectors  # the port's own host runner

    return HostCollectors(host, port, "pair-1", site="demo", prefix="iot", pair=True, state_dir=str(state_dir),
                          sample_ms=PAIR_SAMPLE_MS, hb_timeout_ms=PAIR_HB_TIMEOUT_MS).start()


class Demo:
    """Runs the scripted demo; `view` (optional) is called about 4 times a second with the live state."""

    def __init__(self, directory: Path, duration: float, rate: float, devices: int,
                 view: Callable[[Demo], None] | None = None, say: Callable[[str], None] = print) -> None:
        self.directory, self.duration, self.rate, self.devices = directory, duration, rate, devices
        self.view, self.say = view, say
        self.report = DemoReport()
        self.sb: Sandbox | None = None
        self.gateway: Gateway | None = None
        self.sim: Simulator | None = None
        self.pair = None
        self.started = time.monotonic()

    def event(self, text: str) -> None:
        stamp = f"{time.monotonic() - self.started:6.1f}s"
        self.report.events.append(f"{stamp} {text}")

    def run(self) -> DemoReport:
        self.say(f"starting the sandbox in {self.directory} (MariaDB primary + 2 replicas, Mosquitto)…")
        self.sb = sb = Sandbox.up(self.directory / "sandbox", replicas=2, broker=True)
        try:
            return self._run(sb)
        finally:
            if self.gateway:
                self.gateway.stop(drain_timeout=0)
            sb.down()

    def _run(self, sb: Sandbox) -> DemoReport:
        ep = sb.endpoints()
        servers = [f"{sb.nodes[n].host}:{sb.nodes[n].port}" for n in sb.db_names()]
        cfg = config_mod.parse({
            "mqtt": {"host": ep["broker"]["host"], "port": ep["broker"]["port"], "client_id": "iotgw-demo"},
            "spool": {"path": str(self.directory / "spool.db")},
            "database": {"kind": "mysql", "servers": servers, "user": "iotgw", "admin_user": "root",
                         "password": ep["mariadb"]["users"]["iotgw"], "retry_max_s": 1.0},
            # the gateway's own failover monitor: it promotes the best replica when the primary dies
            "failover": {"auto": True, "interval": 0.5, "failcount": 2, "block_s": 30,
                         "repl_password": ep["mariadb"]["replication_user"]["password"]},
            "http": {"listen": "127.0.0.1:0"},
        }, "<demo>")
        self.gateway = gw = Gateway(cfg)
        gw.start()
        self.started = time.monotonic()
        self.event("gateway started; collectors publishing")
        count = max(1, int(self.rate * self.duration / self.devices))
        self.sim = sim = Simulator(BrokerSettings(ep["broker"]["host"], ep["broker"]["port"]),
                                   SimOptions(devices=self.devices, count=count, rate=self.rate, site="demo",
                                              ack_timeout=3.0, malformed=20, duplicate_rate=0.01))
        sim.connect()
        self.pair = pair = start_pair(ep["broker"]["host"], ep["broker"]["port"], self.directory / "pair")
        if pair:
            self.event("collector pair pair-1 (MicroPython port): node a active, node b standby")
        result: dict = {}
        thread = threading.Thread(target=lambda: result.setdefault("r", sim.run(deadline_s=self.duration * 3 + 60)),
                                  daemon=True)
        thread.start()
        crash = (self.duration * 0.3, self.duration * 0.55)
        pair_fault = (self.duration * 0.15, self.duration * 0.7)
        phase, pair_phase = "before", "before"
        primary = "db1"
        while thread.is_alive():
            elapsed = time.monotonic() - self.started
            primary = self._watch_primary(primary)
            if pair and pair_phase == "before" and elapsed >= pair_fault[0]:
                pair.kill("a")
                self.event("FAULT: collector pair-1 node a lost power; node b takes over after the heartbeat timeout")
                pair_phase = "down"
            elif pair and pair_phase == "down" and elapsed >= pair_fault[1]:
                pair.restart_primary()
                self.event("collector pair-1 node a powered again; it hands back after the hysteresis")
                pair_phase = "after"
            if phase == "before" and elapsed >= crash[0]:
                sb.kill("db1")
                self.event("FAULT: primary db1 killed (database outage): readings wait in the spool, "
                           "the failover monitor promotes the best replica")
                phase = "down"
            elif phase == "down" and elapsed >= crash[1]:
                self._bring_back("db1")
                phase = "after"
            self._refresh()
            time.sleep(0.25)
        if phase == "down":
            self._bring_back("db1")
        sim.close()
        if pair:
            if pair_phase == "down":
                pair.restart_primary()
            deadline = time.monotonic() + 60
            while any(n["cached"] for n in pair.snapshot().values()) and time.monotonic() < deadline:
                self._refresh()
                time.sleep(0.25)
            pair.close()
        self.event("collectors done; waiting for the spool to drain and the replicas to catch up")
        deadline = time.monotonic() + 120
        while (gw.spool.depth or not gw.drain.available) and time.monotonic() < deadline:
            self._refresh()
            time.sleep(0.25)
        sb.wait_caught_up(timeout=60)
        self._refresh()
        self._integrity(result.get("r") or sim.report)
        return self.report

    def _watch_primary(self, known: str) -> str:
        assert self.sb is not None
        try:
            now = self.sb.primary_name()
        except Exception:  # two writable servers for a moment, or a server not answering: look again later
            return known
        if now and now != known:
            self.event(f"failover: {now} is the primary now (the writer follows its epoch)")
            return now
        return known

    def _bring_back(self, name: str) -> None:
        """Restart the killed old primary; the monitor fences it and rejoins it as a replica, or, if it
        diverged (a commit no replica received), it is rebuilt from a replica."""
        assert self.sb is not None
        sb = self.sb
        sb.restart(name)
        self.event(f"{name} restarted: fenced (read-only); the monitor rejoins it if it has not diverged")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self._refresh()
            if sb.role(name) == "replica":
                self.event(f"{name} rejoined as a replica")
                return
            time.sleep(0.25)
        rebuild_node(sb, name)
        self.event(f"{name} had diverged (its last commit never reached a replica): rebuilt from a replica")

    def _refresh(self) -> None:
        if self.view:
            self.view(self)

    def counts(self) -> dict[str, tuple[int, int] | None]:
        """(rows, distinct identities) per server; None where the server does not answer."""
        out: dict[str, tuple[int, int] | None] = {}
        assert self.sb is not None
        for name in self.sb.db_names():
            try:
                with self.sb.connect(name, connect_timeout=1) as conn, conn.cursor() as cur:
                    cur.execute("SELECT count(*), count(DISTINCT device, node, boot, seq) FROM iot.readings")
                    out[name] = tuple(cur.fetchone())
            except Exception:  # down, or the table is not there yet
                out[name] = None
        return out

    def _integrity(self, sim_report) -> None:
        assert self.sb is not None and self.gateway is not None
        rep = self.report
        rep.sent, rep.acknowledged = sim_report.sent, sim_report.acked
        sent = set(sim_report.readings)
        stored: dict[str, set] = {}
        checksums = set()
        for name in self.sb.db_names():
            with self.sb.connect(name) as conn, conn.cursor() as cur:
                cur.execute("SELECT device, node, boot, seq FROM iot.readings")
                rows = cur.fetchall()
                cur.execute("CHECKSUM TABLE iot.readings")
                checksums.add(cur.fetchone()[1])
            stored[name] = set(rows)
            rep.duplicated += len(rows) - len(stored[name])
        primary = self.sb.primary_name() or "db1"
        rep.stored_on_primary = len(stored[primary] & sent)
        rep.stored_on_replicas = {n: len(s & sent) for n, s in stored.items() if n != primary}
        rep.lost = len(sent - stored[primary])
        rep.checksums_equal = len(checksums) == 1
        rep.quarantined = self.gateway.spool.stats().quarantined
        rep.seconds = round(time.monotonic() - self.started, 1)
        if self.pair:
            rep.pair = self._pair_integrity(primary)

    def _pair_integrity(self, primary: str) -> dict:
        """The pair's readings: stored once each, caches empty, and the largest gap in time coverage."""
        assert self.sb is not None and self.pair is not None
        with self.sb.connect(primary) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT node, boot, seq), count(DISTINCT node) FROM iot.readings "
                        "WHERE device = 'pair-1'")
            rows, distinct, nodes = cur.fetchone()
            cur.execute("SELECT DISTINCT UNIX_TIMESTAMP(sampled_at) FROM iot.readings WHERE device = 'pair-1' "
                        "ORDER BY 1")
            times = [float(r[0]) for r in cur.fetchall()]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        snap = self.pair.snapshot()
        return {"stored": rows, "duplicated": rows - distinct, "nodes_reporting": nodes,
                "caches_empty": all(n["cached"] == 0 for n in snap.values()),
                "max_gap_s": round(max(gaps, default=0.0), 3),
                # takeover bound: heartbeat timeout + one sample period, +1 s for the DS1307's whole seconds
                "gap_bound_s": (PAIR_HB_TIMEOUT_MS + PAIR_SAMPLE_MS) / 1000 + 1.0}


def render(demo: Demo):
    """The live view: the gateway's status (the same model and terminal view as `iotgw status`), then what only
    the demo knows: the collectors' side of the flow, the pair's power, the scripted events (a rich renderable)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text


    parts = []
    gw, sim = demo.gateway, demo.sim
    if gw is not None:
        parts.append(render_status(gw.status.document(), max_devices=12))
    if sim is not None:
        flow = Table(title="collectors (simulated)", title_justify="left", expand=True)
        for col in ("sent", "acked", "unacked", "resent"):
            flow.add_column(col)
        flow.add_row(str(sim.report.sent), str(sim.report.acked), str(sim.outstanding()), str(sim.report.resent))
        parts.append(flow)
    if demo.pair:
        pair = Table(title="collector pair pair-1 (MicroPython port)", title_justify="left", expand=True)
        for col in ("node", "power", "role", "boot", "seq", "cached", "link"):
            pair.add_column(col)
        for node, n in demo.pair.snapshot().items():
            pair.add_row(node, "on" if n["alive"] else "OFF", str(n["role"]), str(n["boot"]), str(n["seq"]),
                         str(n["cached"]), "up" if n["link"] else "down")
        parts.append(pair)
    events = Table(title="demo events", title_justify="left", expand=True, show_header=False)
    events.add_column("event")
    for line in demo.report.events[-8:]:
        events.add_row(Text(line))
    parts.append(events)
    return Group(*parts)


def run_demo(duration: float, rate: float, devices: int, directory: str | None, live: bool,
             say: Callable[[str], None]) -> DemoReport:
    """Run the demo with or without the live view; the caller prints the report."""
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        return _run_in(path, duration, rate, devices, live, say)
    with tempfile.TemporaryDirectory(prefix="iotgw-demo-") as tmp:
        return _run_in(Path(tmp), duration, rate, devices, live, say)


def _run_in(path: Path, duration: float, rate: float, devices: int, live: bool, say) -> DemoReport:
    if not live:
        last = [0.0]

        def log_view(demo: Demo) -> None:
            if time.monotonic() - last[0] > 2 and demo.sim and demo.gateway:
                last[0] = time.monotonic()
                say(f"  sent {demo.sim.report.sent} acked {demo.sim.report.acked} spool {demo.gateway.spool.depth} "
                    f"database {'up' if demo.gateway.drain.available else 'DOWN'}")

        return Demo(path, duration, rate, devices, view=log_view, say=say).run()
    import logging

    from rich.live import Live
    from rich.logging import RichHandler

    with Live(refresh_per_second=4, transient=False) as screen:
        # Gateway log lines go above the live view instead of tearing it.
        logging.basicConfig(level=logging.WARNING, handlers=[RichHandler(console=screen.console, show_path=False)],
                            force=True)
        demo = Demo(path, duration, rate, devices, view=lambda d: screen.update(render(d)), say=say)
        return demo.run()
