"""`iotgw status`: the running gateway's status in the terminal, from its `/api/status`."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import click

from gateway.config import ConfigError, load, resolve_secret
from gateway.status.term import render

DEFAULT_URL = "http://127.0.0.1:9108"


def fetch_status(url: str, token: str = "", timeout: float = 5.0) -> dict[str, Any]:
    """GET `<url>/api/status`; a ClickException naming the URL when it cannot."""
    request = urllib.request.Request(url.rstrip("/") + "/api/status",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - a URL the user gave
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        hint = " (give --token or --config)" if exc.code == 403 else ""
        raise click.ClickException(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the status from {url}/api/status: {exc}") from None


def _target(url: str | None, config: str | None, token: str | None) -> tuple[str, str]:
    if config:
        try:
            cfg = load(config)
            token = token or resolve_secret("http", cfg.http, "token")
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        url = url or f"http://{cfg.http.listen}"
    return url or DEFAULT_URL, token or ""


@click.command("status")
@click.option("--url", help=f"the gateway's HTTP address (default: [http] listen of --config, else {DEFAULT_URL})")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="the gateway's config file (address, token)")
@click.option("--token", envvar="IOTGW_HTTP_TOKEN", help="the [http] token, if the gateway has one (env IOTGW_HTTP_TOKEN)")
@click.option("--json", "as_json", is_flag=True, help="print the status document exactly as /api/status gives it")
@click.option("--watch", is_flag=True, help="redraw every --interval seconds until Ctrl-C")
@click.option("--interval", type=float, default=2.0, show_default=True, help="seconds between redraws with --watch")
def status(url: str | None, config: str | None, token: str | None, as_json: bool, watch: bool,
           interval: float) -> None:
    """Show a running gateway's status: alerts, database primary and replicas, failovers, spool, devices.

    The same model as the page at http://HOST:PORT/ and /api/status; silent and unhealthy devices first.
    """
    url, token = _target(url, config, token)
    if as_json and not watch:
        click.echo(json.dumps(fetch_status(url, token), indent=2))
        return
    from rich.console import Console
    from rich.live import Live


    console = Console()
    if not watch:
        console.print(render(fetch_status(url, token)))
        return
    try:
        # The alternate screen, redrawn whole (as `watch` and `top` do): a view taller than the terminal is cut
        # at the bottom instead of scrolling frames past.
        with Live(render(fetch_status(url, token)), console=console, screen=True, auto_refresh=False,
                  vertical_overflow="crop") as live:
            while True:
                time.sleep(max(0.2, interval))
                try:
                    live.update(render(fetch_status(url, token)), refresh=True)
                except click.ClickException as exc:  # the gateway restarting: say so and keep watching
                    from rich.text import Text

                    live.update(Text(f"{exc.message} (retrying)", style="bold red"), refresh=True)
    except KeyboardInterrupt:
        sys.exit(0)
