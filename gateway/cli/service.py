"""The service-side commands of `iotgw`: run, check-config, db, spool, simulate."""

from __future__ import annotations

import json
import sys
import time

import click

from gateway import config as config_mod
from gateway.cli.common import config_option, load_config
from gateway.config import ConfigError
from gateway.demo import run_demo
from gateway.demo_ha import run_ha_demo
from gateway.mqttconn import BrokerSettings, MqttConnectError
from gateway.replay import replay_quarantine
from gateway.service import Gateway, setup_logging
from gateway.simulator import SimOptions
from gateway.simulator import simulate as run_sim
from gateway.sinks.mysql import connect, init_schema
from gateway.sinks.sqlite import SQLiteSink
from gateway.spool import open_db, printable, read_stats
from gateway.status.cli import fetch_status
from gateway.topology.conn import Credentials
from gateway.topology.model import endpoint


@click.command()
@config_option
def run(config_path: str | None) -> None:
    """Run the gateway service until SIGTERM/SIGINT.

    Takes readings from MQTT and serial ports, spools them durably in SQLite, and writes them to
    MySQL/MariaDB (or a local SQLite database when no database is configured).
    """
    cfg = load_config(config_path)
    setup_logging(cfg.log.level, cfg.log.format)
    try:
        gateway = Gateway(cfg)
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None
    sys.exit(gateway.run_forever())


@click.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Validate the config file and print the effective settings (secrets hidden)."""
    cfg = load_config(config_path)
    try:
        for section, obj in (("mqtt", cfg.mqtt), ("database", cfg.database)):
            config_mod.resolve_secret(section, obj)
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None
    click.echo(f"{cfg.source}: OK")
    mqtt, db = cfg.mqtt, cfg.database
    click.echo(f"  mqtt      {'mqtts' if mqtt.tls_ca else 'mqtt'}://{mqtt.host}:{mqtt.port} prefix {mqtt.topic_prefix!r}"
               f" client id {mqtt.client_id!r}{' user ' + mqtt.username if mqtt.username else ''}"
               f"{'' if mqtt.enabled else ' (disabled)'}")
    if mqtt.brokers:
        click.echo(f"  brokers   {', '.join(mqtt.brokers)} (connected to every one; acks on the broker a reading came from)")
    if mqtt.share_group:
        click.echo(f"  group     $share/{mqtt.share_group}/... (no persistent session: see docs/deployment.md)")
    for p in cfg.serial:
        click.echo(f"  serial    {p.port} at {p.baud} baud, site {p.site!r}")
    click.echo(f"  ack       after the {cfg.ack.after} commit" if cfg.ack.after != "replica"
               else "  ack       after a replica applied the reading")
    click.echo(f"  spool     {cfg.spool.path} (max {cfg.spool.max_readings} readings, group commit "
               f"{cfg.spool.group_commit_ms} ms / {cfg.spool.group_max})")
    if db.kind == "sqlite":
        click.echo(f"  database  local SQLite {db.sqlite_path} (the embedded default)")
    else:
        click.echo(f"  database  MySQL/MariaDB {', '.join(db.servers)} as {db.user!r}, schema {db.database!r}"
                   f"{' with TLS' if db.tls_ca else ''}")
    click.echo(f"  http      {cfg.http.listen}{'' if cfg.http.enabled else ' (disabled)'}")


@click.group()
def db() -> None:
    """The readings database: create or upgrade its schema."""


@db.command("init")
@config_option
@click.option("--user", help="Account to create the schema with (default: the config's database.user).")
@click.option("--password-env", help="Environment variable holding that account's password.")
def db_init(config_path: str | None, user: str | None, password_env: str | None) -> None:
    """Create or upgrade the readings schema (versioned migrations) on the configured database."""
    import os

    cfg = load_config(config_path)
    d = cfg.database
    if d.kind == "sqlite":
        SQLiteSink(d.sqlite_path).close()
        click.echo(f"local SQLite {d.sqlite_path}: schema up to date")
        return
    import pymysql


    password = os.environ.get(password_env, "") if password_env else config_mod.resolve_secret("database", d)
    ep = endpoint(*config_mod.split_hostport(d.servers[0]))
    creds = Credentials(user or d.user, password, d.tls_ca, d.tls_cert, d.tls_key, d.connect_timeout)
    try:
        conn = connect(ep, creds)
        applied = init_schema(conn, d.database, progress=lambda m: click.echo(f"  applied {m}"))
    except pymysql.MySQLError as exc:
        raise click.ClickException(f"{ep}: {exc}") from None
    click.echo(f"{ep} schema {d.database!r}: " + (f"applied {len(applied)} migration(s)" if applied
                                                 else "already up to date"))


@click.group()
def spool() -> None:
    """Inspect the durable spool and its quarantine; send quarantined messages through again."""


@spool.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def spool_status(config_path: str | None, as_json: bool) -> None:
    """Readings waiting, unconfirmed, quarantined (also while the gateway runs).

    Batches written to the database and waiting for a replica's confirmation are known only to the running
    gateway (they are kept in its memory, not rewritten in the file): when the gateway configured here answers
    on its HTTP address, its count is used; otherwise the file's view counts them as pending."""
    cfg = load_config(config_path)
    st = read_stats(cfg.spool.path)
    pending, unconfirmed, source = st.pending, st.unconfirmed, "file"
    held = _running_gateway_unconfirmed(cfg)
    if held is not None:
        moved = min(held, pending)
        pending, unconfirmed, source = pending - moved, unconfirmed + moved, f"file and gateway http://{cfg.http.listen}"
    doc = {"path": cfg.spool.path, "pending": pending, "unconfirmed": unconfirmed, "depth": st.depth,
           "max_readings": cfg.spool.max_readings, "quarantined": st.quarantined,
           "quarantine_evicted": st.quarantine_evicted, "streams": st.streams,
           "oldest_age_s": round(time.time() - st.oldest_received_ms / 1000, 1) if st.oldest_received_ms else None,
           "file_bytes": st.file_bytes, "source": source}
    if as_json:
        click.echo(json.dumps(doc))
        return
    for key, value in doc.items():
        click.echo(f"{key:20} {value}")


def _running_gateway_unconfirmed(cfg: config_mod.Config) -> int | None:
    """The unconfirmed readings the gateway of this config holds in memory, or None if it does not answer."""
    if not cfg.http.listen:
        return None
    try:
        token = config_mod.resolve_secret("http", cfg.http, "token")
        doc = fetch_status(f"http://{cfg.http.listen}", token, timeout=1.0)
        return int(doc["gateway"]["spool"]["unconfirmed"])
    except (click.ClickException, ConfigError, KeyError, TypeError, ValueError):
        return None  # not running (or another version): the file's view alone


@spool.command("quarantine")
@config_option
@click.option("--limit", default=20, show_default=True, help="How many entries (newest first).")
@click.option("--reason", help="Only entries with this rejection reason.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def spool_quarantine(config_path: str | None, limit: int, reason: str | None, as_json: bool) -> None:
    """List quarantined messages with their reason and raw bytes."""
    cfg = load_config(config_path)
    conn = open_db(cfg.spool.path)
    sql = "SELECT id, received_ms, source, topic, reason, field, detail, raw, raw_len FROM quarantine"
    args: tuple = ()
    if reason:
        sql += " WHERE reason = ?"
        args = (reason,)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
    counts = conn.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY 2 DESC").fetchall()
    conn.close()
    if as_json:  # json.dumps escapes control characters itself
        for r in rows:
            click.echo(json.dumps({"id": r[0], "received_ms": r[1], "source": r[2], "topic": r[3], "reason": r[4],
                                   "field": r[5], "detail": r[6], "raw": r[7].decode("utf-8", "backslashreplace"),
                                   "raw_len": r[8]}))
        return
    click.echo("by reason: " + (", ".join(f"{printable(r)} {n}" for r, n in counts) or "none"))
    for r in rows:  # device bytes never reach the terminal raw: escape sequences are shown escaped
        cut = f" [{r[8]} bytes, first {len(r[7])} kept]" if r[8] is not None and r[8] > len(r[7]) else ""
        click.echo(f"#{r[0]} {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r[1] / 1000))} {r[2]} "
                   f"{printable(r[3], 200)}: {printable(r[6], 200)}{cut}\n    {printable(r[7])}")


@spool.command("replay")
@config_option
@click.option("--reason", help="Only entries with this rejection reason.")
@click.option("--id", "ids", multiple=True, type=int, help="Only these entries (repeatable).")
def spool_replay(config_path: str | None, reason: str | None, ids: tuple[int, ...]) -> None:
    """Validate quarantined messages again (after a fix) and spool those that now pass."""
    cfg = load_config(config_path)
    result = replay_quarantine(cfg.spool.path, cfg.mqtt.topic_prefix, reason=reason, ids=list(ids))
    click.echo(f"replayed {result.accepted} into the spool ({result.duplicates} already held), "
               f"{result.still_rejected} still rejected and kept")


@click.command()
@click.option("--broker", default="127.0.0.1:1883", show_default=True,
              help="Broker HOST:PORT, or several separated by commas: the collectors move to the next on failure.")
@click.option("--devices", default=5, show_default=True, help="Simulated devices.")
@click.option("--count", default=100, show_default=True, help="Readings per device.")
@click.option("--rate", default=200.0, show_default=True, help="Readings per second over all devices (0: max).")
@click.option("--site", default="sim", show_default=True)
@click.option("--prefix", default="iot", show_default=True, help="Topic prefix.")
@click.option("--ack-timeout", default=5.0, show_default=True, help="Resend unacknowledged readings after this.")
@click.option("--duplicates", default=0.0, show_default=True, help="Fraction of readings sent twice.")
@click.option("--malformed", default=0, show_default=True, help="Malformed messages to inject.")
@click.option("--oversized", default=0, show_default=True, help="Oversized messages to inject.")
@click.option("--out-of-order", is_flag=True, help="Send readings out of order (windows of 50).")
@click.option("--deadline", default=300.0, show_default=True, help="Give up waiting for acks after this many s.")
@click.option("--username", default="", help="Broker user name.")
@click.option("--password-env", default="", help="Environment variable holding the broker password.")
@click.option("--tls-ca", default="", help="CA file: connect with TLS.")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
def simulate(broker: str, devices: int, count: int, rate: float, site: str, prefix: str, ack_timeout: float,
             duplicates: float, malformed: int, oversized: int, out_of_order: bool, deadline: float, username: str,
             password_env: str, tls_ca: str, as_json: bool) -> None:
    """Publish protocol-correct readings from simulated collectors and wait for their end-to-end acks."""
    import os


    password = os.environ.get(password_env, "") if password_env else ""
    settings = [BrokerSettings(*config_mod.split_hostport(b.strip(), "--broker"), username, password, tls_ca)
                for b in broker.split(",") if b.strip()]
    opts = SimOptions(devices=devices, count=count, rate=rate, site=site, prefix=prefix, ack_timeout=ack_timeout,
                      duplicate_rate=duplicates, malformed=malformed, oversized=oversized, out_of_order=out_of_order)
    last = [0.0]

    def progress(rep) -> None:
        if not as_json and time.monotonic() - last[0] > 1:
            last[0] = time.monotonic()
            click.echo(f"  sent {rep.sent}  acked {rep.acked}  resent {rep.resent}  unacked {rep.unacked}")

    try:
        report = run_sim(settings, opts, deadline_s=deadline, progress=progress)
    except MqttConnectError as exc:
        raise click.ClickException(str(exc)) from None
    doc = report.summary()
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo(" ".join(f"{k}={v}" for k, v in doc.items()))
    if report.unacked:
        sys.exit(1)


@click.command()
@click.option("--duration", default=40.0, show_default=True, help="Seconds of collectors publishing (bounds the run).")
@click.option("--rate", default=200.0, show_default=True, help="Readings per second over all collectors.")
@click.option("--devices", default=10, show_default=True, help="Simulated collectors.")
@click.option("--dir", "directory", help="Folder for the sandbox and spool (default: a temporary folder).")
@click.option("--json", "as_json", is_flag=True, help="No live view; print the integrity report as JSON.")
@click.option("--ha", is_flag=True, help="Two gateways and two brokers instead: a gateway dies with its spool and "
              "a broker dies midway (the report is per tier).")
def demo(duration: float, rate: float, devices: int, directory: str | None, as_json: bool, ha: bool) -> None:
    """Run the whole chain here: sandbox servers, simulated collectors, the gateway, a database outage midway,
    a live view, and an integrity report (sent, acknowledged, stored everywhere, lost, duplicated).

    With --ha: two gateways in a shared subscription group, two brokers, the ack after the primary's commit;
    midway gateway 1 is killed and its spool folder deleted, then the collectors' broker is killed.

    Exits 0 when nothing was lost or duplicated and every server holds the same rows.
    """
    if ha:
        ha_report = run_ha_demo(duration, rate, devices, directory, (lambda _m: None) if as_json else click.echo)
        ha_doc = {**ha_report.__dict__, "ok": ha_report.ok}
        if as_json:
            click.echo(json.dumps(ha_doc))
        else:
            click.echo("\nintegrity report, per tier:")
            for key in ("collectors", "brokers", "gateways", "database"):
                click.echo(f"  {key:11} {json.dumps(ha_doc[key])}")
            click.echo("  result      " + ("OK: nothing lost, nothing duplicated" if ha_report.ok else "FAILED"))
        sys.exit(0 if ha_report.ok else 1)
    live = not as_json and sys.stdout.isatty()
    say = (lambda _m: None) if as_json else click.echo
    report = run_demo(duration, rate, devices, directory, live, say)
    doc = {k: v for k, v in report.__dict__.items()}
    doc["ok"] = report.ok
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo("\nevents:")
        for line in report.events:
            click.echo(f"  {line}")
        click.echo("\nintegrity report:")
        for key in ("sent", "acknowledged", "stored_on_primary", "stored_on_replicas", "lost", "duplicated",
                    "quarantined", "checksums_equal", "pair", "seconds"):
            click.echo(f"  {key:18} {doc[key]}")
        click.echo("  result             " + ("OK: nothing lost, nothing duplicated" if report.ok else "FAILED"))
    sys.exit(0 if report.ok else 1)
