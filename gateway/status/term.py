"""The status document in a terminal (rich): `iotgw status`, `--watch`, and the demo's live view.

Every value goes in as `rich.text.Text`, never as markup, so a device called `[bold]x` or `<script>` is shown
as it is.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gateway.status.page import age, clock_time


def _t(value: Any, style: str = "") -> Text:
    return Text("" if value is None else str(value), style=style)


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left", expand=True, pad_edge=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def render(doc: dict[str, Any], *, max_devices: int = 25) -> RenderableType:
    """The whole status: summary, alerts, servers, failovers, pairs, devices (silent first)."""
    now = doc["generated_ms"]
    db, g = doc["database"], doc["gateway"]
    sp = g["spool"]
    summary = Text()
    if db["kind"] == "mysql":
        summary.append("primary ")
        summary.append(str(db["primary"] or "NONE"), style="bold green" if db["primary"] else "bold red")
        if db["epoch"]:
            summary.append(f" (epoch {db['epoch']})")
    else:
        summary.append(f"database: SQLite {db['where']}")
    mqtt = g["links"]["mqtt"]
    summary.append(f" · ingest {g['ingest_rate']:g}/s · drain {g['drain_rate']:g}/s · spool {sp['depth']}/{sp['limit']}")
    if mqtt is not None:
        summary.append(" · MQTT ")
        summary.append("up" if mqtt["connected"] else "DOWN", style="" if mqtt["connected"] else "bold red")
    summary.append(f" · quarantine {g['quarantine']['total']} · as of {clock_time(now)}")
    parts: list[RenderableType] = [summary]

    alerts = _table(f"alerts ({len(doc['alerts'])})", ["kind", "subject", "what"])
    for a in doc["alerts"]:
        alerts.add_row(_t(a["kind"], "bold red"), _t(a["subject"]), _t(a["message"]))
    if not doc["alerts"]:
        alerts.add_row(_t("none", "green"), _t(""), _t("all clear"))
    parts.append(alerts)

    if db["kind"] == "mysql":
        servers = _table("servers", ["server", "role", "epoch", "source", "threads", "lag s", "lag trx", "health"])
        for s in db["servers"]:
            threads = "" if s["io_thread"] is None else f"IO {s['io_thread']} SQL {'Yes' if s['sql_thread'] else 'No'}"
            servers.add_row(_t(s["endpoint"]), _t(s["role"], "bold green" if s["role"] == "primary" else ""),
                            _t(s["epoch"]), _t(s["source"]), _t(threads), _t(s["lag_s"]), _t(s["lag_trx"]),
                            _t("; ".join(s["problems"]) or "ok", "" if s["healthy"] else "red"))
        parts.append(servers)
        if db["failovers"] or db["events"]:
            events = _table("failovers and monitor events", ["when", "event", "what"])
            for f in db["failovers"][-3:]:
                took = "" if f["seconds"] is None else f" in {f['seconds']:.2f} s"
                events.add_row(_t(clock_time(f["at_ms"])), _t("failover", "bold yellow"),
                               _t(f"{f['old']} → {f['new']} (epoch {f['epoch']}){took}"))
            for e in db["events"][-5:]:
                if e["kind"] != "failover":
                    events.add_row(_t(clock_time(e["at_ms"])), _t(e["kind"]), _t(e["message"]))
            parts.append(events)

    if doc["pairs"]:
        pairs = _table("collector pairs", ["device", "active", "last takeover", "last hand-back", "max gap s"])
        for p in doc["pairs"]:
            def sw(s: dict[str, Any] | None) -> str:
                return "" if s is None else f"{clock_time(s['at_ms'])} {s['from']}→{s['to']}"
            pairs.add_row(_t(p["device"]), _t(p["active"] or "NONE", "" if p["active"] else "bold red"),
                          _t(sw(p["last_takeover"])), _t(sw(p["last_handback"])), _t(p["max_gap_s"]))
        parts.append(pairs)

    devices = _table(f"devices ({len(doc['devices'])})",
                     ["device", "node", "state", "role", "last reading", "received", "boot/seq", "clock", "last hour",
                      "health"])
    shown = 0
    for d in doc["devices"]:
        for i, n in enumerate(d["nodes"]):
            if shown >= max_devices:
                break
            shown += 1
            reading = "" if n["value"] is None else f"{n['value']:g} {n['unit']}"
            style = "bold red" if d["silent"] else ("yellow" if not d["healthy"] else "")
            devices.add_row(_t(d["device"] if i == 0 else "", style), _t(n["node"]), _t(n["state"]), _t(n["role"]),
                            _t(reading), _t(age(n["received_ms"], now)),
                            _t("" if n["boot"] is None else f"{n['boot']}/{n['seq']}"),
                            _t(n["status_clock"] or n["clock"]), _t(n["last_hour"]),
                            _t(("; ".join(d["problems"]) or "ok") if i == 0 else "", style))
    more = sum(len(d["nodes"]) for d in doc["devices"]) - shown
    parts.append(devices)
    if more > 0:
        parts.append(Text(f"… {more} more nodes (iotgw status --json, or the page at /)", style="dim"))
    return Group(*parts)
