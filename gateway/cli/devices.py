"""`iotgw devices …`: provision device accounts on the broker (password file + ACL file, see docs/security.md)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.devices import DeviceError, DeviceFiles, new_password
from gateway.sandbox.tls import make_certificates

RELOAD_HINT = "reload the broker so it reads them: systemctl reload mosquitto (or kill -HUP its PID)"


def file_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--prefix", default="iot", show_default=True, envvar="IOTGW_TOPIC_PREFIX",
                        help="Topic prefix (mqtt.topic_prefix of the gateway).")(func)
    func = click.option("--acl-file", default="/etc/mosquitto/iotgw.acl", show_default=True,
                        type=click.Path(dir_okay=False), help="Mosquitto acl_file this command maintains.")(func)
    func = click.option("--passwd-file", default="/etc/mosquitto/iotgw.passwd", show_default=True,
                        type=click.Path(dir_okay=False), help="Mosquitto password_file this command maintains.")(func)
    return func


def password_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--password-stdin", is_flag=True,
                        help="Read the password from the first line of stdin (default: generate one).")(func)
    func = click.option("--save-password", type=click.Path(dir_okay=False),
                        help="Write the password to this file (mode 0600) instead of printing it.")(func)
    return func


def _files(passwd_file: str, acl_file: str, prefix: str) -> DeviceFiles:
    try:
        return DeviceFiles(passwd_file, acl_file, prefix)
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from None


def _password(password_stdin: bool) -> tuple[str, bool]:
    """(password, generated)."""
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise click.ClickException("--password-stdin: stdin gave an empty line")
        return line, False
    return new_password(), True


def _hand_out(name: str, password: str, generated: bool, save_to: str | None) -> None:
    """Give a generated password to the user exactly once (a file of mode 0600, or the terminal)."""
    if save_to:
        fd = os.open(save_to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        click.echo(f"{name}: password written to {save_to}")
    elif generated:
        click.echo(f"{name}: password {password}  (shown once: put it in the device's configuration now)")


def _save(files: DeviceFiles) -> None:
    try:
        files.save()
    except OSError as exc:
        raise click.ClickException(f"{exc.filename}: cannot write: {exc.strerror}") from None
    click.echo(f"wrote {files.passwd_path} and {files.acl_path}; {RELOAD_HINT}")


@click.group()
def devices() -> None:
    """Device accounts on the broker: each device may publish only its own readings and status and read only its
    own acks; the gateway's account reads all readings and writes acks (docs/security.md)."""


def _set_password(files: DeviceFiles, account: str, password_stdin: bool, save_password: str | None,
                  change: Callable[[DeviceFiles, str], None]) -> None:
    """Give `account` a password (read or generated), write both files, and hand the password out once."""
    password, generated = _password(password_stdin)
    try:
        change(files, password)
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from None
    _save(files)
    _hand_out(account, password, generated, save_password)


@devices.command("init")
@file_options
@password_options
@click.option("--gateway-user", default="iotgw", show_default=True, help="The gateway's broker account.")
def init(passwd_file: str, acl_file: str, prefix: str, password_stdin: bool, save_password: str | None,
         gateway_user: str) -> None:
    """Create (or reset) the gateway's account; use its password as the gateway's mqtt.password_file."""
    _set_password(_files(passwd_file, acl_file, prefix), gateway_user, password_stdin, save_password,
                  lambda files, password: files.set_gateway(gateway_user, password))


@devices.command("add")
@file_options
@password_options
@click.argument("name")
@click.option("--site", required=True, help="The site in the device's topics (P/<site>/<name>/…).")
def add(passwd_file: str, acl_file: str, prefix: str, password_stdin: bool, save_password: str | None, name: str,
        site: str) -> None:
    """Provision device NAME: an account that may publish only P/SITE/NAME/reading and …/status, read …/ack."""
    _set_password(_files(passwd_file, acl_file, prefix), name, password_stdin, save_password,
                  lambda files, password: files.add(name, site, password))


@devices.command("passwd")
@file_options
@password_options
@click.argument("name")
def passwd(passwd_file: str, acl_file: str, prefix: str, password_stdin: bool, save_password: str | None,
           name: str) -> None:
    """Give device NAME (or the gateway's account) a new password."""
    _set_password(_files(passwd_file, acl_file, prefix), name, password_stdin, save_password,
                  lambda files, password: files.passwd(name, password))


@devices.command("remove")
@file_options
@click.argument("name")
def remove(passwd_file: str, acl_file: str, prefix: str, name: str) -> None:
    """Remove device NAME: its account and its topic rights."""
    files = _files(passwd_file, acl_file, prefix)
    try:
        files.remove(name)
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from None
    _save(files)


@devices.command("list")
@file_options
def list_devices(passwd_file: str, acl_file: str, prefix: str) -> None:
    """The gateway's account and every device with its site and topics."""
    files = _files(passwd_file, acl_file, prefix)
    if not Path(acl_file).exists():
        raise click.ClickException(f"{acl_file}: not found; start with `iotgw devices init`")
    click.echo(f"gateway  {files.gateway_user or '(none: run iotgw devices init)'}")
    for dev in sorted(files.devices.values(), key=lambda d: d.name):
        state = "" if dev.name in files.hashes else "  (no password!)"
        click.echo(f"device   {dev.name:32} site {dev.site:20} {prefix}/{dev.site}/{dev.name}/…{state}")
    if not files.devices:
        click.echo("no devices")


@devices.command("certs")
@click.option("--dir", "directory", default="/etc/mosquitto/certs", show_default=True,
              type=click.Path(file_okay=False), help="Folder for ca.crt, server.crt and server.key.")
@click.option("--host", "hosts", multiple=True,
              help="Name or IP address devices use to reach the broker (repeatable); 127.0.0.1 and localhost are "
                   "always included.")
def certs(directory: str, hosts: tuple[str, ...]) -> None:
    """Make a private CA and the broker's TLS certificate for the devices' listener (deploy/mosquitto.conf).

    Devices get ca.crt (public); ca.key and server.key stay on the gateway machine (mode 0600).
    """
    target = Path(directory)
    if (target / "ca.key").exists():
        raise click.ClickException(f"{target / 'ca.key'} exists: a new CA would orphan every device's ca.crt; "
                                   "remove the folder first if that is what you want")
    try:
        files = make_certificates(target, hosts)
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"CA {files.ca_cert} (give this file to every device), server {files.server_cert} for "
               f"{', '.join(['127.0.0.1', 'localhost', *hosts])}")
