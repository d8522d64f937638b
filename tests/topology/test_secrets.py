"""Secrets stay out of reprs and command lines; TLS is all or nothing; server-given names stay names.

The client tools (`mariadb`, `mariadb-dump`) are run for real against a TLS sandbox server with an account
that requires TLS and has a password full of option-file specials.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import Account, ConfigError, parse
from gateway.mqttconn import BrokerSettings
from gateway.ops.relay import target_rows
from gateway.topology.conn import Credentials, open_connection
from gateway.topology.dialect import quote_ident
from gateway.topology.tools import CLIENT, DUMP, tool_command

SECRET = "pa ss#'\"\\word;x"


def test_repr_never_shows_a_secret() -> None:
    cfg = parse({"database": {"kind": "mysql", "servers": ["h:1"], "password": SECRET, "admin_password": SECRET},
                 "http": {"token": SECRET}, "mqtt": {"password": SECRET}})
    shown = [repr(cfg), repr(Credentials("u", SECRET)), repr(Account("u", SECRET)),
             repr(BrokerSettings(user="u", password=SECRET))]
    assert all(SECRET not in text and "pa ss" not in text for text in shown)
    assert "user='u'" in shown[1]  # the rest is still there to debug with


@pytest.mark.parametrize("section,key", [("database", "tls_cert"), ("database", "tls_key"), ("mqtt", "tls_cert")])
def test_a_client_certificate_without_a_ca_is_a_config_error_naming_the_key(section: str, key: str) -> None:
    table = {key: "/etc/x.pem"}
    if section == "mqtt":
        table["tls_key"] = "/etc/k.pem"
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: set {section}\.tls_ca"):
        parse({section: table})
    with pytest.raises(ValueError, match="without tls_ca"):
        Credentials("u", "p", tls_cert="/etc/x.pem")
    with pytest.raises(ValueError, match="^tls_key given without tls_ca"):  # the broker connection: the same rule
        BrokerSettings("h", 1, "u", "p", tls_key="/etc/k.pem")


def test_identifiers_double_their_backticks() -> None:
    assert quote_ident("iot") == "`iot`"
    assert quote_ident("a`b") == "`a``b`" and quote_ident("`; DROP DATABASE x; `") == "```; DROP DATABASE x; ```"


def test_tool_command_keeps_the_password_in_a_private_file_removed_afterwards() -> None:
    creds = Credentials("admin", SECRET, tls_ca="/ca.pem", tls_cert="/c.pem", tls_key="/k.pem")
    with tool_command(DUMP, "127.0.0.1:3307", creds, ["--databases"], names=["-odd", "iot"]) as cmd:
        assert not any(SECRET in part or "pa ss" in part for part in cmd)
        assert cmd[1].startswith("--defaults-extra-file=")  # the tools accept it only as the first option
        path = Path(cmd[1].split("=", 1)[1])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "pa ss" in path.read_text()
        assert cmd[-3:] == ["--", "-odd", "iot"]
        assert {"--ssl-ca=/ca.pem", "--ssl-cert=/c.pem", "--ssl-key=/k.pem", "--ssl-verify-server-cert"} <= set(cmd)
    assert not path.exists()
    with tool_command(CLIENT, "127.0.0.1:3307", Credentials("admin", "")) as cmd:
        assert not any(part.startswith("--ssl") for part in cmd)


def test_repl_password_comes_from_env_or_file_never_argv() -> None:
    result = CliRunner().invoke(main, ["topology", "setup", "--servers", "127.0.0.1:1", "--repl-password", "x"])
    assert result.exit_code == 2 and "No such option '--repl-password'" in result.output
    result = CliRunner().invoke(main, ["topology", "setup", "--servers", "127.0.0.1:1",
                                       "--repl-password-env", "IOTGW_TEST_UNSET_VARIABLE"])
    assert result.exit_code == 1 and "IOTGW_TEST_UNSET_VARIABLE is not set" in result.output


def test_client_tools_connect_with_tls_and_a_password_kept_off_the_command_line(make_sandbox) -> None:
    sb = make_sandbox(replicas=0, broker=False, tls=True)
    ca = sb.endpoints()["mariadb"]["tls_ca"]
    node = sb.node("db1")
    ep = f"{node.host}:{node.port}"
    root = Credentials("root", "", tls_ca=ca)
    with open_connection(ep, root) as conn, conn.cursor() as cur:
        cur.execute("CREATE USER 'tooluser'@'%%' IDENTIFIED BY %s REQUIRE SSL", (SECRET,))
        cur.execute("GRANT ALL ON *.* TO 'tooluser'@'%'")
        cur.execute("CREATE DATABASE `-odd`")
        cur.execute("CREATE TABLE `-odd`.`t``q` (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO `-odd`.`t``q` VALUES (1)")
    creds = Credentials("tooluser", SECRET, tls_ca=ca)
    with tool_command(CLIENT, ep, creds, ["--batch", "--skip-column-names", "-e",
                                          "SHOW SESSION STATUS LIKE 'Ssl_cipher'"]) as cmd:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                             env={k: v for k, v in os.environ.items() if k != "MYSQL_PWD"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\t")[0] == "Ssl_cipher" and run.stdout.split("\t")[1].strip()  # encrypted
    # A database named like an option is dumped as a name (it comes after `--`).
    with tool_command(DUMP, ep, creds, ["--skip-comments", "--databases"], names=["-odd"]) as cmd:
        dump = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert dump.returncode == 0, dump.stderr
    assert "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `-odd`" in dump.stdout and "`t``q`" in dump.stdout
    # Table names read from the server go into SQL quoted (the backtick doubled).
    assert target_rows(ep, root) == ["-odd.t`q"]
