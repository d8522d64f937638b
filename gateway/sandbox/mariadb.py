"""MariaDB servers for the sandbox: template data folder, config, start, users, replication, live probe.

Each option is there for a reason given beside it (measured on the development machine).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from gateway.topology.dialect import MARIADB as SQL  # the sandbox runs MariaDB servers

from .nodes import Node, tail
from .ports import HOST

MARIADBD = shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", "")) or "mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "mariadb-install-db"

#: Accounts every sandbox server has (user -> password). root has no password on 127.0.0.1 and the socket.
USERS = {"root": "", "repl": "repl", "iotgw": "iotgw"}
#: Databases the gateway's writer account may use.
WRITER_DATABASES = ("iot", "iotgw_meta", "read_scaling")
SYSTEM_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})

# Shared by the template and every server: the redo log size must match the template's files.
_COMMON_OPTIONS = """\
user=root
skip-name-resolve
innodb_buffer_pool_size=16M
innodb_log_file_size=16M
innodb_temp_data_file_path=ibtmp1:4M:autoextend
# Several sandboxes share the machine's limited native AIO contexts; simulated AIO never fails to start.
innodb_use_native_aio=OFF
performance_schema=OFF
"""

READY_TIMEOUT = 60.0  # a server answers in 1-2 s normally; allow for a loaded, shared machine


class ServerFailed(RuntimeError):
    """The server process exited while starting; the message carries its log tail."""

    def __init__(self, message: str, port_in_use: bool = False) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


def version() -> str:
    """The mariadbd version string, e.g. ``10.11.19-MariaDB-0+deb12u1``."""
    out = subprocess.run([MARIADBD, "--version"], capture_output=True, text=True, check=True, timeout=60).stdout
    match = re.search(r"Ver\s+(\S+)", out)
    return match.group(1) if match else "unknown"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "iotgw"


def template() -> Path:
    """The cached, initialised data folder servers are copied from; built once per MariaDB version.

    Built in a private temporary folder, then renamed into place: rename is atomic, so parallel test
    workers either win the race or find the finished template, never a half-written one.
    """
    digest = hashlib.sha256(_COMMON_OPTIONS.encode()).hexdigest()[:8]
    target = cache_dir() / f"mariadb-template-{version()}-{digest}"
    if (target / "mysql").is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        (build / "tmp").mkdir()
        config = build / "my.cnf"
        config.write_text(
            f"[mysqld]\ndatadir={build / 'data'}\ntmpdir={build / 'tmp'}\nsocket={build / 's.sock'}\n{_COMMON_OPTIONS}"
        )
        result = subprocess.run(
            [INSTALL_DB, f"--defaults-file={config}", "--auth-root-authentication-method=normal", "--skip-test-db"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        # Check the exit code and the grant table: a failed bootstrap can leave a server with no grants.
        if result.returncode != 0 or not (build / "data" / "mysql" / "global_priv.MAD").exists():
            raise RuntimeError(
                f"mariadb-install-db failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        try:
            os.rename(build / "data", target)
        except OSError:
            if not (target / "mysql").is_dir():  # lost the race only if the winner's template is there
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return target


def config_text(node: Node) -> str:
    """The node's my.cnf. ``read_only=ON`` for every server: a restarted server comes back fenced."""
    tls_files = node.extra.get("tls")
    tls_options = (f"ssl_ca={tls_files['ca']}\nssl_cert={tls_files['cert']}\nssl_key={tls_files['key']}\n"
                   if tls_files else "")
    return f"""\
[mysqld]
datadir={node.datadir}
tmpdir={node.tmpdir}
socket={node.socket}
pid-file={node.dir / "mariadbd.pid"}
log-error={node.log}
port={node.port}
bind-address={HOST}
server_id={node.server_id}
log_bin=mysql-bin
relay_log=relay-bin
log_slave_updates=ON
binlog_format=ROW
gtid_strict_mode=ON
report_host={HOST}
report_port={node.port}
skip_slave_start
read_only=ON
plugin_load_add=ha_blackhole
innodb_flush_log_at_trx_commit=1
sync_binlog=1
slave_net_timeout=4
max_connections=300
{_COMMON_OPTIONS}{tls_options}"""


def prepare(node: Node, template_dir: Path) -> None:
    """Give the node a fresh copy of the template data folder and write its config."""
    node.dir.mkdir(parents=True, exist_ok=True)
    if node.datadir.exists():
        shutil.rmtree(node.datadir)
    shutil.copytree(template_dir, node.datadir, symlinks=True)
    node.tmpdir.mkdir(exist_ok=True)
    write_config(node)


def write_config(node: Node) -> None:
    node.config.write_text(config_text(node))


def argv(node: Node) -> list[str]:
    # --defaults-file must be the first option, or mariadbd reads the system config too.
    return [MARIADBD, f"--defaults-file={node.config}"]


def connect(
    node: Node,
    user: str = "root",
    password: str | None = None,
    database: str | None = None,
    connect_timeout: float = 5,
    **kwargs: Any,
) -> pymysql.Connection:
    """A PyMySQL connection over TCP to the node, autocommit on, short connect timeout.

    TLS is off unless asked for: the sandbox servers have none, and PyMySQL 1.2's default "preferred"
    mode builds an SSL context per connection (about 40 ms here, most of a reset's time).
    """
    kwargs.setdefault("ssl_disabled", True)
    return pymysql.connect(
        host=node.host,
        port=node.port,
        user=user,
        password=USERS.get(user, "") if password is None else password,
        database=database,
        autocommit=True,
        connect_timeout=connect_timeout,
        **kwargs,
    )


def answers(node: Node) -> bool:
    """True if root can connect and run a query."""
    try:
        with connect(node, connect_timeout=2, read_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return True
    except pymysql.MySQLError:
        return False


def startup_failure(node: Node) -> ServerFailed:
    """Describe why a server exited during startup, from its logs."""
    log = tail(node.log, 30) + "\n" + tail(node.out_log, 10)
    in_use = "Address already in use" in log or "Bind on TCP/IP port" in log
    return ServerFailed(f"{node.name} (mariadbd on port {node.port}) exited while starting:\n{log.strip()}", in_use)


def create_users(conn: pymysql.Connection, binlog: bool = True) -> None:
    """Create the replication and writer accounts.

    With ``binlog=False`` the statements stay out of the binlog (independent servers that are not
    replicating yet must not get GTIDs of their own that a later topology would see as errant).
    The writer gets no ALL/SUPER: it must be refused (error 1290) by a read-only server.
    """
    writer = "'iotgw'@'%'"
    statements = [
        "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl'",
        "GRANT REPLICATION SLAVE, SLAVE MONITOR ON *.* TO 'repl'@'%'",
        f"CREATE USER IF NOT EXISTS {writer} IDENTIFIED BY 'iotgw'",
        *(
            f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP ON `{db}`.* TO {writer}"
            for db in WRITER_DATABASES
        ),
        # Monitoring: @@gtid_binlog_pos and SHOW BINLOG STATUS (BINLOG MONITOR, alias REPLICATION CLIENT),
        # SHOW SLAVE STATUS (SLAVE MONITOR), SHOW SLAVE HOSTS (REPLICATION MASTER ADMIN in 10.5+).
        f"GRANT BINLOG MONITOR, SLAVE MONITOR, REPLICATION MASTER ADMIN ON *.* TO {writer}",
    ]
    with conn.cursor() as cur:
        if not binlog:
            cur.execute("SET SESSION sql_log_bin=0")
        for statement in statements:
            cur.execute(statement)
        if not binlog:
            cur.execute("SET SESSION sql_log_bin=1")


def change_master(conn: pymysql.Connection, source: Node, use_gtid: str = "slave_pos") -> None:
    """Point the connected server at ``source`` and start replicating."""
    with conn.cursor() as cur:
        cur.execute(*SQL.change_source_sql(source.host, source.port, "repl", "repl", gtid_mode=use_gtid))
        cur.execute(SQL.start_replica_sql)


PROBED_VARIABLES = ("read_only", "server_id", "gtid_current_pos", "gtid_binlog_pos", "gtid_slave_pos")


def probe(node: Node, timeout: float = 5) -> dict[str, Any]:
    """Read the server's live state: read_only, GTID positions, replication status, attached replicas.

    ``role``: ``replica`` if a master is configured (``relay`` if replicas also attach to it), else
    ``primary`` when writable, ``standalone`` when read-only.
    """
    with (
        connect(node, connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout) as conn,
        conn.cursor(pymysql.cursors.DictCursor) as cur,
    ):
        cur.execute(SQL.variables_sql())
        variables = cur.fetchone()
        info: dict[str, Any] = {k: variables[k] for k in PROBED_VARIABLES}
        info["read_only"] = bool(info["read_only"])
        cur.execute(SQL.all_replicas_status_sql)
        slaves = cur.fetchall()
        cur.execute(SQL.replica_hosts_sql)
        hosts = cur.fetchall()
    info["replication"] = [
        {
            "connection": s["Connection_name"],
            "source_host": s["Master_Host"],
            "source_port": int(s["Master_Port"]),
            "io_running": s["Slave_IO_Running"],
            "sql_running": s["Slave_SQL_Running"],
            "last_io_error": s["Last_IO_Error"],
            "last_sql_error": s["Last_SQL_Error"],
            "seconds_behind": s["Seconds_Behind_Master"],
        }
        for s in slaves
    ]
    info["replica_ports"] = sorted(int(h["Port"]) for h in hosts)
    if slaves:
        info["role"] = "relay" if hosts else "replica"
    else:
        info["role"] = "standalone" if info["read_only"] else "primary"
    return info


def parse_gtids(text: str) -> dict[int, tuple[int, int]]:
    """``'0-1-8,1-2-3'`` -> ``{domain: (server_id, seq_no)}``."""
    result = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        domain, server_id, seq_no = (int(x) for x in item.split("-"))
        result[domain] = (server_id, seq_no)
    return result


def format_gtids(gtids: dict[int, tuple[int, int]]) -> str:
    return ",".join(f"{d}-{sid}-{seq}" for d, (sid, seq) in sorted(gtids.items()))


def slave_pos_after_crash(info: dict[str, Any]) -> str | None:
    """The ``gtid_slave_pos`` a crashed replica should resume from, or None if its saved one is right.

    A replica writes a replicated transaction to its binlog and records it in ``mysql.gtid_slave_pos``
    atomically for InnoDB DML, but not for DDL: a SIGKILL between the two leaves the binlog one GTID
    ahead, and resuming from the stale slave position fetches that DDL again, which strict mode stops
    (error 1950). A GTID from another server (not this one's own write) in its binlog was applied, so
    the slave position is moved up to it, per domain.
    """
    binlog = parse_gtids(info["gtid_binlog_pos"])
    slave = parse_gtids(info["gtid_slave_pos"])
    ahead = {
        domain: gtid
        for domain, gtid in binlog.items()
        if gtid[0] != info["server_id"] and (domain not in slave or gtid[1] > slave[domain][1])
    }
    return format_gtids({**slave, **ahead}) if ahead else None
