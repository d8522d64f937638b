"""The status page, rendered on the server from the status document: HTML with inline SVG charts.

One renderer: the page's script (`static/status.js`) fetches `/status/view`, this same view of a fresh
document, and swaps it in, so every piece of text goes through `html.escape` here and nowhere else (a device
called `<script>` is text on the page). No CDN, no build step: two small files served by the gateway.
"""

from __future__ import annotations

import html
import time
from typing import Any

ROLE_COLOURS = {"primary": "#2e7d32", "replica": "#1565c0", "intermediate": "#6a1b9a", "relay": "#5d4037",
                "unreachable": "#c62828", "refused-primary": "#ef6c00", "detached": "#757575"}
SERIES_COLOURS = ("#1565c0", "#ef6c00", "#6a1b9a", "#2e7d32", "#c62828", "#00838f", "#5d4037", "#9e9d24")


def esc(value: Any) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def age(ms: int | None, now_ms: int) -> str:
    """`12 s ago`, `3 min ago`, `2.1 h ago`, or `never`."""
    if ms is None:
        return "never"
    s = max(0.0, (now_ms - ms) / 1000)
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.1f} h ago"


def clock_time(ms: int | None) -> str:
    return "" if ms is None else time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def _table(headers: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cells(values: list[Any], cls: str = "", attrs: str = "") -> str:
    return f'<tr class="{esc(cls)}"{attrs}>' + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr>"


# ------------------------------------------------------------------------------------------------ charts
def line_chart(title: str, points: list[tuple[float, float | None]], series: dict[str, list[tuple[float, float]]]
               | None = None, *, span_s: float, now: float, unit: str = "", width: int = 330,
               height: int = 90) -> str:
    """A small inline SVG line chart over the last `span_s` seconds (one or several named series)."""
    all_series = series if series is not None else {title: [(t, v) for t, v in points if v is not None]}
    values = [v for pts in all_series.values() for _, v in pts]
    top = max(values, default=0.0) or 1.0
    pad_l, pad_b = 4, 14
    plot_w, plot_h = width - pad_l - 4, height - pad_b - 6

    def xy(t: float, v: float) -> str:
        x = pad_l + plot_w * (1 - min(span_s, max(0.0, now - t)) / span_s)
        y = 6 + plot_h * (1 - v / top)
        return f"{x:.1f},{y:.1f}"

    lines = []
    for i, (name, pts) in enumerate(all_series.items()):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        if len(pts) >= 2:
            path = " ".join(xy(t, v) for t, v in pts)
            lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{path}">'
                         f"<title>{esc(name)}</title></polyline>")
        elif len(pts) == 1:
            x, y = xy(*pts[0]).split(",")
            lines.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"><title>{esc(name)}</title></circle>')
    last = values[-1] if values and series is None else None
    legend = ""
    if series is not None and series:
        legend = '<div class="legend">' + "".join(
            f'<span><i style="background:{SERIES_COLOURS[i % len(SERIES_COLOURS)]}"></i>{esc(name)}</span>'
            for i, name in enumerate(series)) + "</div>"
    now_txt = "" if last is None else f' <b>{esc(_num(last))}{esc(unit)}</b>'
    return (f'<figure class="chart"><figcaption>{esc(title)}{now_txt} <span class="muted">max '
            f'{esc(_num(top if values else 0))}{esc(unit)}, last {span_s / 60:.0f} min</span></figcaption>'
            f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{esc(title)}"><rect x="{pad_l}" y="6" width="{plot_w}" height="{plot_h}" class="plot"/>'
            f'{"".join(lines)}<text x="{pad_l}" y="{height - 2}" class="axis">-{span_s / 60:.0f} min</text>'
            f'<text x="{width - 4}" y="{height - 2}" class="axis" text-anchor="end">now</text></svg>{legend}</figure>')


def _short(text: str, n: int) -> str:
    """At most `n` characters (an ellipsis marks a cut)."""
    return text if len(text) <= n else text[: n - 1] + "…"


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.1f}"


def charts(doc: dict[str, Any]) -> str:
    hist = doc.get("history") or {}
    pts = hist.get("points", [])
    span = float(hist.get("span_s", 3600))
    now = doc["generated_ms"] / 1000
    lag: dict[str, list[tuple[float, float]]] = {}
    for p in pts:
        for ep, v in p.get("lag", {}).items():
            if v is not None:
                lag.setdefault(ep, []).append((p["t"], v))
    parts = [
        line_chart("ingest (msg/s)", [], {"ingest": [(p["t"], p["ingest"]) for p in pts],
                                          "drain": [(p["t"], p["drain"]) for p in pts]}, span_s=span, now=now),
        line_chart("spool depth", [(p["t"], p["spool"]) for p in pts], span_s=span, now=now),
    ]
    if doc["database"]["kind"] == "mysql":
        parts.append(line_chart("replica lag (s)", [], lag, span_s=span, now=now))
    return '<div class="charts">' + "".join(parts) + "</div>"


# ------------------------------------------------------------------------------------------------ topology
def topology_svg(db: dict[str, Any]) -> str:
    """The replication tree as boxes and lines (roots first, one row per level); unreachable servers last."""
    by_ep = {s["endpoint"]: s for s in db["servers"]}
    levels: list[list[tuple[str, str | None]]] = []

    def walk(node: dict[str, Any], depth: int, parent: str | None) -> None:
        while len(levels) <= depth:
            levels.append([])
        levels[depth].append((node["endpoint"], parent))
        for c in node["children"]:
            walk(c, depth + 1, node["endpoint"])

    for root in db["tree"]:
        walk(root, 0, None)
    down = [(s["endpoint"], None) for s in db["servers"] if not s["reachable"]]
    if down:
        levels.append(down)
    if not levels:
        return '<p class="muted">no server seen yet</p>'
    box_w, box_h, gap_x, gap_y = 150, 42, 16, 30
    width = max(len(level) for level in levels) * (box_w + gap_x) + gap_x
    height = len(levels) * (box_h + gap_y) + gap_y - 10
    pos: dict[str, tuple[float, float]] = {}
    boxes, links = [], []
    for depth, level in enumerate(levels):
        row_w = len(level) * (box_w + gap_x) - gap_x
        x0 = (width - row_w) / 2
        for i, (ep, parent) in enumerate(level):
            x, y = x0 + i * (box_w + gap_x), gap_y / 2 + depth * (box_h + gap_y)
            pos[ep] = (x, y)
            s = by_ep.get(ep, {"role": "?", "lag_s": None, "server_id": "?", "reachable": False})
            role = s["role"]
            colour = ROLE_COLOURS.get(role, "#757575")
            extra = "" if s.get("lag_s") is None else f" · lag {s['lag_s']} s"
            if role == "primary" and db.get("epoch"):
                extra = f" · epoch {db['epoch']}"
            boxes.append(f'<g class="server" data-endpoint="{esc(ep)}" data-role="{esc(role)}">'
                         f'<rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" height="{box_h}" rx="6" fill="{colour}"/>'
                         f'<text x="{x + box_w / 2:.0f}" y="{y + 17:.0f}" text-anchor="middle" class="ep">{esc(ep)}'
                         f'</text><text x="{x + box_w / 2:.0f}" y="{y + 33:.0f}" text-anchor="middle" class="role">'
                         f'{esc(role)}{esc(extra)}</text><title>{esc(ep)} (server {esc(s.get("server_id"))})</title>'
                         "</g>")
            if parent in pos:
                px, py = pos[parent]
                links.append(f'<line x1="{px + box_w / 2:.0f}" y1="{py + box_h:.0f}" x2="{x + box_w / 2:.0f}" '
                             f'y2="{y:.0f}" class="link"/>')
    return (f'<svg class="topology" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'height="{height:.0f}" role="img" aria-label="replication topology">{"".join(links)}{"".join(boxes)}'
            "</svg>")


# ------------------------------------------------------------------------------------------------ sections
def alerts_section(doc: dict[str, Any]) -> str:
    alerts = doc["alerts"]
    if not alerts:
        return '<section id="alerts" class="ok"><h2>alerts</h2><p>all clear</p></section>'
    items = "".join(f'<li data-kind="{esc(a["kind"])}"><b>{esc(a["kind"])}</b> {esc(a["subject"])}: '
                    f'{esc(a["message"])}</li>' for a in alerts)
    return f'<section id="alerts" class="bad"><h2>alerts ({len(alerts)})</h2><ul>{items}</ul></section>'


def database_section(doc: dict[str, Any]) -> str:
    db, now = doc["database"], doc["generated_ms"]
    if db["kind"] != "mysql":
        return (f'<section id="database"><h2>database</h2><p>local SQLite file <code>{esc(db["where"])}</code>'
                "</p></section>")
    primary = db["primary"]
    head = (f'<p>primary <b id="primary">{esc(primary or "NONE")}</b>'
            + (f' · epoch <b id="epoch">{esc(db["epoch"])}</b>' if db["epoch"] else "")
            + f' · <span class="muted">{esc(db["reason"])}</span>'
            + (f' · seen {esc(age(db["observed_ms"], now))}' if db["observed_ms"] else "") + "</p>")
    rows = []
    for s in db["servers"]:
        threads = "" if s["io_thread"] is None else f"IO {s['io_thread']}, SQL {'Yes' if s['sql_thread'] else 'No'}"
        lag = "" if s["lag_s"] is None else f"{s['lag_s']} s"
        trx = "" if s["lag_trx"] is None else str(s["lag_trx"])
        health = "; ".join(s["problems"]) or "ok"
        rows.append(_cells([s["endpoint"], s["server_id"] or "", s["role"], s["epoch"] or "", s["source"] or "",
                            threads, lag, trx], "" if s["healthy"] else "bad", f' data-endpoint="{esc(s["endpoint"])}"')
                    .replace("</tr>", f'<td title="{esc(health)}">{esc(_short(health, 70))}</td></tr>'))
    servers = _table(["server", "id", "role", "epoch", "source", "threads", "lag", "lag trx", "health"], rows)
    fo_rows = [_cells([clock_time(f["at_ms"]), f["old"], f["new"], f["epoch"],
                       "" if f["seconds"] is None else f"{f['seconds']:.2f} s"]) for f in reversed(db["failovers"])]
    failovers = _table(["when", "from", "to", "epoch", "took"], fo_rows, "failovers")
    ev_rows = [_cells([clock_time(e["at_ms"]), e["kind"], e["message"]], f"ev-{e['kind']}")
               for e in reversed(db["events"][-10:])]
    events = _table(["when", "event", "what"], ev_rows, "events")
    monitor = "failover monitor runs in this gateway" if db["monitor"] else "no failover monitor in this gateway"
    return (f'<section id="database"><h2>database</h2>{head}<div class="topo">{topology_svg(db)}</div>{servers}'
            f'<h3>failovers</h3><p class="muted">{esc(monitor)}</p>{failovers}<h3>monitor events</h3>{events}'
            "</section>")


def gateway_section(doc: dict[str, Any]) -> str:
    g = doc["gateway"]
    sp = g["spool"]
    mqtt = g["links"]["mqtt"]
    link = "not configured" if mqtt is None else ("connected" if mqtt["connected"] else f"DOWN {mqtt['error']}")
    serial = ", ".join(f"{p} {'up' if up else 'DOWN'}" for p, up in g["links"]["serial"].items()) or "none"
    drops = "not watched" if g["broker_drops"] is None else str(g["broker_drops"])
    facts = [("ingest", f"{g['ingest_rate']:g} msg/s"), ("drain", f"{g['drain_rate']:g} readings/s"),
             ("spool", f"{sp['depth']} / {sp['limit']}" + (" FULL" if sp["full"] else "")),
             ("database", "available" if g["database_available"] else f"UNAVAILABLE {g['database_error']}"),
             ("MQTT", link), ("serial", serial), ("broker drops", drops), ("ack after", g["ack_mode"]),
             ("workers", "ok" if g["workers_ok"] else "FAILED")]
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts)
    q = g["quarantine"]
    reasons = ", ".join(f"{r}: {n}" for r, n in q["by_reason"].items()) or "empty"
    recent = [_cells([clock_time(e["received_ms"]), e["reason"], e["topic"], _short(e["raw"], 80),
                      _short(e["detail"], 60)]) for e in q["recent"]]
    return (f'<section id="gateway"><h2>gateway</h2><dl class="facts">{dl}</dl>{charts(doc)}'
            f'<h3>quarantine ({q["total"]})</h3><p>{esc(reasons)}</p>'
            f'{_table(["when", "reason", "topic", "payload", "detail"], recent, "quarantine")}</section>')


def devices_section(doc: dict[str, Any]) -> str:
    now = doc["generated_ms"]
    rows = []
    for d in doc["devices"]:
        cls = "silent" if d["silent"] else ("" if d["healthy"] else "warn")
        health = "; ".join(d["problems"]) or "ok"
        for i, n in enumerate(d["nodes"]):
            reading = "" if n["value"] is None else f"{_num(n['value'])} {n['unit']}"
            rows.append(_cells([d["device"] if i == 0 else "", n["node"], n["state"], n["role"], reading,
                                age(n["received_ms"], now), "" if n["boot"] is None else f"{n['boot']}/{n['seq']}",
                                n["status_clock"] or n["clock"], "" if n["cached"] is None else n["cached"],
                                n["replayed"], "" if n["dropped"] is None else n["dropped"], n["last_hour"],
                                health if i == 0 else ""],
                               cls, f' data-device="{esc(d["device"])}" data-node="{esc(n["node"])}"'))
    silent = sum(d["silent"] for d in doc["devices"])
    return (f'<section id="devices"><h2>devices ({len(doc["devices"])}, {silent} silent)</h2>'
            + _table(["device", "node", "state", "role", "last reading", "received", "boot/seq", "clock", "cached",
                      "replayed", "dropped", "last hour", "health"], rows, "devices") + "</section>")


def pairs_section(doc: dict[str, Any]) -> str:
    if not doc["pairs"]:
        return ""
    rows = []
    for p in doc["pairs"]:
        def sw(s: dict[str, Any] | None) -> str:
            return "" if s is None else f"{clock_time(s['at_ms'])} {s['from']} → {s['to']}"
        nodes = ", ".join(f"{n} {v['role']} ({v['state']})" for n, v in p["nodes"].items())
        rows.append(_cells([p["device"], p["active"] or "NONE", nodes, sw(p["last_takeover"]), sw(p["last_handback"]),
                            "" if p["max_gap_s"] is None else f"{p['max_gap_s']:.1f} s"],
                           "" if p["active"] else "bad"))
    return ('<section id="pairs"><h2>collector pairs</h2>'
            + _table(["device", "active", "nodes", "last takeover", "last hand-back", "max gap"], rows) + "</section>")


def reads_section(doc: dict[str, Any]) -> str:
    r = doc["reads"]
    if doc["database"]["kind"] != "mysql":
        return ""
    lim = ", ".join(x for x in (f"max lag {r['max_lag_s']:g} s" if r["max_lag_s"] else "",
                                f"max {r['max_lag_trx']} trx behind" if r["max_lag_trx"] else "") if x) or "no lag limit"
    return (f'<section id="reads"><h2>reads</h2><p>{esc(r["strategy"])} · {esc(r["rotation"])} rotation · {esc(lim)}'
            f'{" · falls back to the primary" if r["fallback_primary"] else ""} · now from: '
            f'{esc(", ".join(r["readable"]) or "no healthy replica")}</p></section>')


def render_view(doc: dict[str, Any]) -> str:
    """The page's content (what the script swaps in)."""
    now = doc["generated_ms"]
    return (f'<div id="view" data-generated="{esc(now)}"><p class="stamp">as of {esc(clock_time(now))} · up '
            f'{esc(age(doc["started_ms"], now).replace(" ago", ""))}</p>{alerts_section(doc)}'
            f'<div class="grid">{database_section(doc)}{gateway_section(doc)}</div>'
            f"{pairs_section(doc)}{devices_section(doc)}{reads_section(doc)}</div>")


def render_page(doc: dict[str, Any] | None) -> str:
    """The whole page, usable without JavaScript (it then shows this moment only); without `doc` (a gateway
    with a token, opened by a browser) the script fills it in."""
    view = render_view(doc) if doc is not None else '<p class="muted" id="waiting">loading…</p>'
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            "<title>iotgw status</title><link rel=\"stylesheet\" href=\"/static/status.css\"></head><body>"
            "<header><h1>iotgw status</h1><span id=\"live\" class=\"muted\">live</span></header>"
            f"<main id=\"main\">{view}</main>"
            "<script src=\"/static/status.js\"></script></body></html>")
