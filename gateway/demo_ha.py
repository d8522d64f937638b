"""`iotgw demo --ha`: two gateways and two brokers; mid-run a gateway dies with its SD card and a broker dies.

Sandbox (MariaDB primary + 2 replicas, two independent Mosquitto brokers) → simulated collectors that know
both brokers → two `iotgw run` processes in one shared subscription group, each connected to both brokers,
acknowledging only what the primary holds (`[ack] after = "database"`) → primary → replicas. Scripted faults:
gateway 1 is killed (SIGKILL) and its folder, spool included, deleted; later the broker the collectors use is
killed. The report counts, per tier, what was sent, acknowledged, stored on every server, lost and duplicated.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.mqttconn import BrokerSettings
from gateway.sandbox import Sandbox
from gateway.sandbox.launch import GatewayProcess, launch_gateways, wait_for
from gateway.simulator import SimOptions, Simulator


@dataclass
class HaReport:
    """The integrity report, per tier."""

    collectors: dict = field(default_factory=dict)  # sent, acknowledged, unacknowledged, broker switches
    brokers: dict = field(default_factory=dict)  # name -> "up" / "killed"
    gateways: dict = field(default_factory=dict)  # name -> "up" / "killed, spool deleted"
    database: dict = field(default_factory=dict)  # per server: stored, lost, duplicated; checksums equal
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        c, db = self.collectors, self.database
        servers = db.get("servers", {})
        return bool(c) and c["sent"] == c["acknowledged"] and c["unacknowledged"] == 0 and bool(servers) \
            and all(s["lost"] == 0 and s["duplicated"] == 0 for s in servers.values()) and db["checksums_equal"]


class HaDemo:
    """Runs the scripted HA demo; `say` prints progress lines."""

    def __init__(self, directory: Path, duration: float, rate: float, devices: int,
                 say: Callable[[str], None] = print) -> None:
        self.directory, self.duration, self.rate, self.devices, self.say = directory, duration, rate, devices, say
        self.report = HaReport()
        self.started = time.monotonic()

    def event(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:6.1f}s {text}"
        self.report.events.append(line)
        self.say(f"  {line}")

    def run(self) -> HaReport:
        self.say(f"starting the sandbox in {self.directory} (MariaDB primary + 2 replicas, 2 Mosquitto brokers)…")
        sb = Sandbox.up(self.directory / "sandbox", replicas=2, broker=True, brokers=2)
        gateways: list[GatewayProcess] = []
        try:
            brokers = sb.endpoints()["brokers"]
            gateways = launch_gateways(sb, 2, self.directory / "gateways", client_id_prefix="iotgw-ha",
                                       mqtt={"topic_prefix": "iot", "share_group": "iotgw",
                                             "brokers": [f"{b['host']}:{b['port']}" for b in brokers]},
                                       ack={"after": "database"})
            for gw in gateways:
                for b in brokers:
                    wait_for(lambda gw=gw, b=b: f"connected to {b['url']}, subscribed" in gw.log_tail(200), 60,
                             f"{gw.workdir.name} to subscribe on {b['url']} (log:\n{gw.log_tail()})")
            return self._run(sb, brokers, gateways)
        finally:
            for gw in gateways:
                if gw.workdir.exists():
                    gw.terminate()
            sb.down()

    def _run(self, sb: Sandbox, brokers: list[dict], gateways: list[GatewayProcess]) -> HaReport:
        rep = self.report
        rep.brokers = {b["name"]: "up" for b in brokers}
        rep.gateways = {gw.workdir.name: "up" for gw in gateways}
        self.started = time.monotonic()
        count = max(1, int(self.rate * self.duration / self.devices))
        sim = Simulator([BrokerSettings(b["host"], b["port"]) for b in brokers],
                        SimOptions(devices=self.devices, count=count, rate=self.rate, site="demo", ack_timeout=3.0,
                                   duplicate_rate=0.01))
        sim.connect()
        self.event(f"2 gateways (one shared subscription group, ack after the primary commit) on 2 brokers; "
                   f"{self.devices} collectors publishing through {sim.settings.url}")
        result: dict = {}
        thread = threading.Thread(target=lambda: result.setdefault("r", sim.run(deadline_s=self.duration * 3 + 60)),
                                  daemon=True)
        thread.start()
        faults = [(self.duration * 0.3, "gateway"), (self.duration * 0.55, "broker")]
        last = 0.0
        while thread.is_alive():
            elapsed = time.monotonic() - self.started
            if faults and elapsed >= faults[0][0]:
                _at, what = faults.pop(0)
                if what == "gateway":
                    dead = gateways[0]
                    dead.kill()
                    shutil.rmtree(dead.workdir)
                    rep.gateways[dead.workdir.name] = "killed, spool deleted"
                    self.event(f"FAULT: gateway {dead.workdir.name} killed (SIGKILL) and its folder with the spool "
                               "deleted (a dead SD card): the collectors resend what it had not acknowledged")
                else:
                    name = next(b["name"] for b in brokers if b["port"] == sim.settings.port)
                    sb.kill(name)
                    rep.brokers[name] = "killed"
                    self.event(f"FAULT: broker {name} killed: the collectors move to the next broker")
            if time.monotonic() - last > 2:
                last = time.monotonic()
                self.say(f"  sent {sim.report.sent} acked {sim.report.acked} unacked {sim.outstanding()} "
                         f"via {sim.settings.url}")
            time.sleep(0.25)
        sim.close()
        report = result.get("r") or sim.report
        self.event("collectors done; waiting for the survivor's spool to drain and the replicas to catch up")
        survivor = gateways[1]
        primary = sb.primary_name() or "db1"
        try:
            wait_for(lambda: _count(sb, primary) >= len(report.readings), 120, "every reading on the primary")
            sb.wait_caught_up(timeout=60)
        except Exception as exc:  # reported as lost below
            self.event(f"not everything arrived: {exc}")
        rep.collectors = {"sent": report.sent, "acknowledged": report.acked, "unacknowledged": report.unacked,
                          "resent": report.resent, "broker_switches": report.broker_switches}
        rep.database = _integrity(sb, set(report.readings))
        rep.gateways[survivor.workdir.name] = "up" if survivor.alive() else "exited"
        rep.seconds = round(time.monotonic() - self.started, 1)
        return rep


def _count(sb: Sandbox, name: str) -> int:
    with sb.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM iot.readings")
        return cur.fetchone()[0]


def _integrity(sb: Sandbox, sent: set) -> dict:
    """Per server: readings stored of those sent, lost, duplicated; and whether every table is the same."""
    servers, checksums = {}, set()
    for name in sb.db_names():
        with sb.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SELECT device, node, boot, seq FROM iot.readings")
            rows = cur.fetchall()
            cur.execute("CHECKSUM TABLE iot.readings")
            checksums.add(cur.fetchone()[1])
        held = set(rows)
        servers[name] = {"stored": len(held & sent), "lost": len(sent - held), "duplicated": len(rows) - len(held)}
    return {"servers": servers, "checksums_equal": len(checksums) == 1}


def run_ha_demo(duration: float, rate: float, devices: int, directory: str | None,
                say: Callable[[str], None]) -> HaReport:
    """Run the HA demo in `directory` (default: a temporary folder)."""
    import tempfile

    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        return HaDemo(path, duration, rate, devices, say).run()
    with tempfile.TemporaryDirectory(prefix="iotgw-demo-ha-") as tmp:
        return HaDemo(Path(tmp), duration, rate, devices, say).run()
