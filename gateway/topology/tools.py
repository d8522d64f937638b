"""The MariaDB command-line tools (`mariadb`, `mariadb-dump`, `mariadb-binlog`) run with an account, the way
`open_connection` connects: same host, port, user and TLS files, and no secret on the command line.

The password goes into a defaults file readable only by us (mode 0600, removed afterwards), named with
`--defaults-extra-file` (which the tools accept only as their first option); any process on the machine can
read another's argv, not that file. TLS options follow the account's CA, certificate and key, with the server
certificate verified as `open_connection` verifies it. Names that come from a server (databases, binlog files)
are given after `--`, so a name starting with `-` is never read as an option.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from gateway.topology.conn import Credentials
from gateway.topology.model import split_endpoint

CLIENT = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
DUMP = shutil.which("mariadb-dump") or shutil.which("mysqldump") or "mariadb-dump"
BINLOG_TOOL = shutil.which("mariadb-binlog") or shutil.which("mysqlbinlog") or "mariadb-binlog"


def _option_value(text: str) -> str:
    """A value for an option file: quoted, with the characters the option-file parser treats specially escaped."""
    if "\n" in text or "\r" in text:
        raise ValueError("a password with a line break cannot go into an option file")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tls_args(creds: Credentials) -> list[str]:
    """The tools' TLS options for the account (none without a CA: the account then connects in plaintext)."""
    if not creds.tls_ca:
        return []
    args = [f"--ssl-ca={creds.tls_ca}", "--ssl-verify-server-cert"]
    if creds.tls_cert:
        args.append(f"--ssl-cert={creds.tls_cert}")
    if creds.tls_key:
        args.append(f"--ssl-key={creds.tls_key}")
    return args


@contextmanager
def tool_command(tool: str, ep: str, creds: Credentials, options: Sequence[str] = (),
                 names: Sequence[str] = ()) -> Iterator[list[str]]:
    """`[tool, --defaults-extra-file=…, --host, --port, --user, TLS…, *options, --, *names]` while the block runs.

    The defaults file holds the password only; it exists for the duration of the block.
    """
    host, port = split_endpoint(ep)
    fd, path = tempfile.mkstemp(prefix="iotgw-client-", suffix=".cnf")  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write("[client]\n")
            if creds.password:
                f.write(f"password={_option_value(creds.password)}\n")
        cmd = [tool, f"--defaults-extra-file={path}", f"--host={host}", f"--port={port}", f"--user={creds.user}",
               "--protocol=TCP", *tls_args(creds), *options]
        if names:
            cmd += ["--", *names]
        yield cmd
    finally:
        os.unlink(path)
