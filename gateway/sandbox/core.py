"""The Sandbox: local MariaDB servers (one primary, GTID replicas) and a Mosquitto broker in one folder.

State lives in ``DIR/sandbox.json`` so a later process (the CLI, another test) can re-open it with
:meth:`Sandbox.load`. Every process is started through :mod:`.process` and signalled only after its
``/proc/PID/cmdline`` was checked to contain the node's config path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql

from gateway.topology.conn import set_read_only
from gateway.topology.dialect import MARIADB as SQL  # the sandbox runs MariaDB servers
from gateway.topology.dialect import quote_ident
from gateway.topology.model import IO_STARTING

from . import mariadb, mosquitto, process, tls
from .nodes import MARIADB, MOSQUITTO, Node, tail
from .ports import accepts_connections, free_port

ER_SLAVE_MUST_STOP = 1198  # "This operation cannot be performed as you have a running slave"

STATE_FILE = "sandbox.json"
STATE_VERSION = 1
BROKER = "broker"  # the first broker's name; more brokers are broker2, broker3, ...
MAX_BROKERS = 9
_PORT_ATTEMPTS = 5  # a free port can be taken by someone else before our server binds it: try again
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes


class SandboxError(RuntimeError):
    """Something the sandbox cannot do, with a message meant for the person at the terminal."""


def _say(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


class Sandbox:
    """A set of local servers in one folder. Create with :meth:`up`, re-open with :meth:`load`."""

    def __init__(self, directory: Path, nodes: dict[str, Node], state: dict[str, Any]) -> None:
        self.directory = directory
        self.nodes = nodes
        self._state = state  # everything else persisted: counters, options, socket folder

    # ----------------------------------------------------------------- creation and persistence
    @classmethod
    def up(
        cls,
        directory: str | os.PathLike[str],
        replicas: int = 2,
        broker: bool = True,
        replication: bool = True,
        tls: bool = False,
        mariadb_servers: bool = True,
        progress: Callable[[str], None] | None = None,
        brokers: int = 1,
    ) -> Sandbox:
        """Start a primary ``db1`` with ``replicas`` replicas (``db2``...) and a broker; return when ready.

        ``brokers`` Mosquitto brokers are started (with ``broker``): ``broker``, ``broker2``, ... each on its
        own port with its own persistence, independent of each other (no bridging), as redundant brokers
        are in production; see :meth:`broker_names`.

        Ready means: every server answers, the writer and replication accounts exist everywhere, and
        (with ``replication``) every replica is replicating and has applied the primary's binlog.
        ``replication=False`` gives independent read-only servers (role ``standalone``).
        ``mariadb_servers=False`` starts only the broker. ``progress`` receives one line per step.
        Refuses a folder where a sandbox is still running. On failure, stops whatever it started.
        """
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        previous = _read_state(directory)
        if previous is not None:
            running = cls(directory, *previous)._running()
            if running:
                raise SandboxError(
                    f"a sandbox is already running in {directory} ({', '.join(running)}): "
                    "run `iotgw sandbox down` first"
                )
            for node in previous[0].values():  # a stopped sandbox's folders are replaced
                if node.dir.resolve().parent == directory:  # never follow a state file outside the folder
                    shutil.rmtree(node.dir, ignore_errors=True)
        if replicas < 0:
            raise SandboxError("replicas must be 0 or more")
        if not 1 <= brokers <= MAX_BROKERS:
            raise SandboxError(f"brokers must be between 1 and {MAX_BROKERS}, got {brokers}")
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            # server ids keep counting up across re-creations in the same folder: never reuse one
            "next_server_id": previous[1].get("next_server_id", 1) if previous else 1,
            "options": {
                "replicas": replicas,
                "broker": broker,
                "replication": replication,
                "tls": tls,
                "mariadb_servers": mariadb_servers,
                "brokers": brokers,
            },
            "tls": tls,
            "socket_dir": None,
        }
        sandbox = cls(directory, {}, state)
        try:
            sandbox._create(replicas if mariadb_servers else -1, brokers if broker else 0, replication, tls, progress)
        except BaseException:
            sandbox.down()
            raise
        return sandbox

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Sandbox:
        """Re-open the sandbox described by ``DIR/sandbox.json``; raise SandboxError if there is none."""
        directory = Path(directory).resolve()
        loaded = _read_state(directory)
        if loaded is None:
            raise SandboxError(f"no sandbox in {directory}: run `iotgw sandbox up`")
        return cls(directory, *loaded)

    def rebuild(self, progress: Callable[[str], None] | None = None) -> None:
        """Stop everything and create the same topology afresh in the same folder (new data, new ports).

        For a shared sandbox that a test left broken; this object is updated in place.
        """
        self.down()
        fresh = Sandbox.up(self.directory, progress=progress, **self._state["options"])
        self.nodes, self._state = fresh.nodes, fresh._state

    def save(self) -> None:
        """Write the state file atomically (write a temporary file, then rename)."""
        data = dict(self._state, nodes=[node.to_json() for node in self.nodes.values()])
        tmp = self.directory / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.directory / STATE_FILE)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _create(
        self,
        replicas: int,
        brokers: int,
        replication: bool,
        use_tls: bool,
        progress: Callable[[str], None] | None,
    ) -> None:
        started = time.monotonic()
        names = [f"db{i}" for i in range(1, replicas + 2)]
        if names:
            template = mariadb.template()
            socket_dir = self._socket_dir()
            for index, name in enumerate(names):
                node = Node(
                    name=name,
                    kind=MARIADB,
                    port=0,
                    dir=self.directory / name,
                    server_id=self.next_server_id(),
                    socket=socket_dir / f"{name}.sock",
                    up_role=("primary" if index == 0 else "replica") if replication else "standalone",
                )
                node.last_role = node.up_role
                self.nodes[name] = node
                mariadb.prepare(node, template)
        # With TLS, one CA serves the broker (TLS + password) and the MariaDB servers (TLS offered, not required).
        tls_files = tls.make_certificates(self.directory / "tls") if use_tls else None
        if tls_files is not None:
            for name in names:
                self.nodes[name].extra["tls"] = {"ca": str(tls_files.ca_cert), "cert": str(tls_files.server_cert),
                                                 "key": str(tls_files.server_key)}
        for name in broker_names(brokers):
            node = Node(name=name, kind=MOSQUITTO, port=0, dir=self.directory / name, up_role="broker")
            node.last_role = "broker"
            self.nodes[name] = node
        # Start everything at once, then wait: the servers initialise in parallel.
        self._assign_ports(list(self.nodes.values()))
        for node in self.nodes.values():
            if node.kind == MOSQUITTO:
                mosquitto.prepare(node, tls_files)
                if use_tls:
                    node.tls_port = node.port
            else:
                mariadb.write_config(node)
            self._launch(node)
        for node in self.nodes.values():
            self._wait_ready_retrying_port(node, tls_files)
            _say(progress, f"started {node.name}: {node.kind} on {node.host}:{node.port} (PID {node.pid})")
        self.save()
        if names:
            self._setup_databases(names, replication, progress)
        self.save()
        _say(progress, f"sandbox ready in {time.monotonic() - started:.1f} s: {self.directory}")

    def _socket_dir(self) -> Path:
        """Sockets go beside the data unless that path is too long for AF_UNIX (deep pytest tmp folders)."""
        longest = self.directory / "db99" / "db99.sock"
        if len(str(longest)) <= _SOCKET_PATH_MAX:
            return self.directory / "run"
        path = Path(tempfile.mkdtemp(prefix="iotgw-sock-"))
        self._state["socket_dir"] = str(path)
        return path

    def _assign_ports(self, nodes: list[Node]) -> None:
        taken = {n.port for n in self.nodes.values() if n.port}
        for node in nodes:
            node.port = free_port(taken)
            taken.add(node.port)

    def _launch(self, node: Node, fresh_log: bool = True) -> None:
        if node.kind == MARIADB:
            assert node.socket is not None
            node.socket.parent.mkdir(parents=True, exist_ok=True)
            if fresh_log:  # at `up`, so the startup check reads only this start's messages
                node.log.unlink(missing_ok=True)
            argv = mariadb.argv(node)
        else:
            argv = mosquitto.argv(node)
        node.pid = process.start_process(argv, node.out_log, cwd=node.dir).pid
        self.save()  # record the PID at once: a crash from here on still lets `down` find it

    def _wait_ready(self, node: Node) -> None:
        """Wait until the node answers; raise mariadb.ServerFailed if its process exits first."""

        def ready() -> bool:
            if not process.is_ours(node.pid, node.marker):
                if node.kind == MARIADB:
                    raise mariadb.startup_failure(node)
                log = mosquitto.startup_failure(node)
                raise mariadb.ServerFailed(
                    f"{node.name} (mosquitto) exited while starting:\n{log}", "Address already in use" in log
                )
            if node.kind == MARIADB:
                return mariadb.answers(node)
            return accepts_connections(node.port)

        process.wait_until(
            ready, mariadb.READY_TIMEOUT, interval=0.05, what=f"{node.name} to answer on port {node.port}"
        )

    def _wait_ready_retrying_port(self, node: Node, tls_files: tls.TlsFiles | None) -> None:
        for attempt in range(_PORT_ATTEMPTS):
            try:
                self._wait_ready(node)
                return
            except mariadb.ServerFailed as failure:
                if not failure.port_in_use or attempt == _PORT_ATTEMPTS - 1:
                    raise SandboxError(str(failure)) from None
            self._assign_ports([node])
            if node.kind == MARIADB:
                mariadb.write_config(node)
            else:
                mosquitto.prepare(node, tls_files)
                if tls_files is not None:
                    node.tls_port = node.port
            self._launch(node)

    def _setup_databases(self, names: list[str], replication: bool, progress: Callable[[str], None] | None) -> None:
        if not replication:
            for name in names:
                with self.connect(name) as conn:
                    mariadb.create_users(conn, binlog=False)
            _say(progress, f"standalone servers ready (read-only): {', '.join(names)}")
            return
        primary, replicas = names[0], names[1:]
        with self.connect(primary) as conn:
            with conn.cursor() as cur:
                set_read_only(cur, False, SQL)
            # Users are created on the primary before replicas attach, so replication copies them.
            mariadb.create_users(conn, binlog=True)
        _say(progress, f"{primary} is the primary (writable)")
        for name in replicas:
            with self.connect(name) as conn:
                mariadb.change_master(conn, self.nodes[primary])
        if replicas:
            self.wait_caught_up(timeout=60)
            _say(progress, f"replication caught up: {', '.join(replicas)} replicate from {primary}")

    def next_server_id(self) -> int:
        """Take the next unused server_id (saved in the state file; ids are never reused)."""
        server_id = int(self._state["next_server_id"])
        self._state["next_server_id"] = server_id + 1
        return server_id

    # ----------------------------------------------------------------- questions
    def node(self, name: str) -> Node:
        """The node called ``name``; SandboxError naming the known ones otherwise."""
        try:
            return self.nodes[name]
        except KeyError:
            raise SandboxError(f"node {name} unknown: {', '.join(self.nodes)}") from None

    def endpoint(self, name: str) -> str:
        """`HOST:PORT` of node `name` (what `--servers`, the topology layer and the writer take)."""
        node = self.node(name)
        return f"{node.host}:{node.port}"

    def db_names(self) -> list[str]:
        """Names of the MariaDB nodes (db1, db2, ...)."""
        return [n.name for n in self.nodes.values() if n.kind == MARIADB]

    def broker_names(self) -> list[str]:
        """Names of the Mosquitto brokers in start order (broker, broker2, ...); empty without brokers."""
        return [n.name for n in self.nodes.values() if n.kind == MOSQUITTO]

    def is_alive(self, name: str) -> bool:
        """True if the node's process is running (or frozen) and is the one we started."""
        node = self.node(name)
        return process.is_ours(node.pid, node.marker)

    def is_frozen(self, name: str) -> bool:
        node = self.node(name)
        return process.is_frozen(node.pid, node.marker)

    def _answering(self) -> list[str]:
        """MariaDB nodes that are alive and not frozen (a query to a frozen server would hang)."""
        return [n for n in self.db_names() if self.is_alive(n) and not self.is_frozen(n)]

    def _running(self) -> list[str]:
        return [f"{n.name} PID {n.pid}" for n in self.nodes.values() if process.is_ours(n.pid, n.marker)]

    def _probe(self, name: str, timeout: float = 5) -> dict[str, Any] | None:
        try:
            return mariadb.probe(self.node(name), timeout=timeout)
        except pymysql.MySQLError:
            return None

    def _primaries(self, exclude: str | None = None) -> list[str]:
        found = []
        for name in self._answering():
            if name == exclude:
                continue
            info = self._probe(name)
            if info is not None and info["role"] == "primary":
                found.append(name)
        return found

    def primary_name(self) -> str | None:
        """The live primary: the one writable server that is not replicating; None if there is none.

        Raises SandboxError if two servers are writable primaries at once (split brain).
        """
        primaries = self._primaries()
        if len(primaries) > 1:
            raise SandboxError(f"more than one writable primary: {', '.join(primaries)}")
        return primaries[0] if primaries else None

    def _name_by_port(self, port: int) -> str | None:
        return next((n.name for n in self.nodes.values() if n.port == port), None)

    def role(self, name: str) -> str:
        """The node's role read live: primary, replica, relay, standalone, broker, down or frozen."""
        node = self.node(name)
        if not self.is_alive(name):
            return "down"
        if self.is_frozen(name):
            return "frozen"
        if node.kind == MOSQUITTO:
            return "broker" if accepts_connections(node.port) else "down"
        info = self._probe(name)
        return "down" if info is None else info["role"]

    def status(self) -> list[dict[str, Any]]:
        """One dict per node with its live role, port, PID, read_only, server_id and GTID position."""
        rows = []
        for node in self.nodes.values():
            alive = self.is_alive(node.name)
            row: dict[str, Any] = {
                "name": node.name,
                "kind": node.kind,
                "role": "down",
                "host": node.host,
                "port": node.port,
                "pid": node.pid if alive else None,
                "alive": alive,
                "read_only": None,
                "server_id": node.server_id,
                "gtid_current_pos": None,
            }
            if alive and self.is_frozen(node.name):
                row["role"] = "frozen"
            elif alive and node.kind == MOSQUITTO:
                row["role"] = "broker" if accepts_connections(node.port) else "down"
            elif alive:
                info = self._probe(node.name)
                if info is not None:
                    row.update(
                        role=info["role"], read_only=info["read_only"], gtid_current_pos=info["gtid_current_pos"]
                    )
                    row["server_id"] = info["server_id"]
                    if info["replication"]:
                        link = info["replication"][0]
                        row["source"] = self._name_by_port(link["source_port"])
                        row["io_running"] = link["io_running"]
                        row["sql_running"] = link["sql_running"]
                        row["last_error"] = link["last_io_error"] or link["last_sql_error"] or None
            rows.append(row)
        return rows

    def endpoints(self) -> dict[str, Any]:
        """Everything a client needs, JSON-able: nodes, users and passwords, broker URL and TLS files."""
        result: dict[str, Any] = {
            "directory": str(self.directory),
            "nodes": {},
            "mariadb": {
                "users": dict(mariadb.USERS),  # user -> password
                "writer": {
                    "user": "iotgw",
                    "password": mariadb.USERS["iotgw"],
                    "databases": list(mariadb.WRITER_DATABASES),
                },
                "replication_user": {"user": "repl", "password": mariadb.USERS["repl"]},
                "primary_at_up": next((n.name for n in self.nodes.values() if n.up_role == "primary"), None),
            },
            "broker": None,
        }
        if self._state.get("tls"):
            result["mariadb"]["tls_ca"] = str(tls.files(self.directory / "tls").ca_cert)
        for node in self.nodes.values():
            entry: dict[str, Any] = {"kind": node.kind, "host": node.host, "port": node.port, "pid": node.pid}
            if node.kind == MARIADB:
                entry.update(server_id=node.server_id, socket=str(node.socket), role_at_up=node.up_role)
            result["nodes"][node.name] = entry
        # "broker" stays the first broker (what single-broker callers use); "brokers" lists all of them.
        result["brokers"] = [dict(self._broker_info(self.nodes[name]), name=name) for name in self.broker_names()]
        if result["brokers"]:
            result["broker"] = self._broker_info(self.nodes[self.broker_names()[0]])
        return result

    def _broker_info(self, broker: Node) -> dict[str, Any]:
        use_tls = bool(self._state.get("tls"))
        info: dict[str, Any] = {
            "host": broker.host,
            "port": broker.port,
            "url": f"{'mqtts' if use_tls else 'mqtt'}://{broker.host}:{broker.port}",
            "tls": use_tls,
        }
        if use_tls:
            files = tls.files(self.directory / "tls")
            info.update(
                tls_port=broker.tls_port,
                ca=str(files.ca_cert),
                client_cert=str(files.client_cert),
                client_key=str(files.client_key),
                username=mosquitto.USERNAME,
                password=mosquitto.PASSWORD,
            )
        return info

    def connect(self, name: str, user: str = "root", database: str | None = None, **kw: Any) -> pymysql.Connection:
        """A PyMySQL connection to a MariaDB node (autocommit, short connect timeout; password looked up)."""
        node = self.node(name)
        if node.kind != MARIADB:
            raise SandboxError(f"{name} is not a MariaDB server")
        return mariadb.connect(node, user=user, database=database, **kw)

    def rows(self, statement: str, name: str | None = None) -> tuple | None:
        """The rows of one query on node `name` (default: the primary); None while its table does not exist yet
        (a gateway creates its tables when it first writes)."""
        try:
            with self.connect(name or self.primary_name()) as conn, conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall()
        except pymysql.err.ProgrammingError as exc:
            if exc.args and exc.args[0] == 1146:  # ER_NO_SUCH_TABLE
                return None
            raise

    def logs(self, lines: int = 30) -> dict[str, str]:
        """The last ``lines`` lines of each server's own log (for printing on a test failure)."""
        return {n.name: tail(n.log, lines) or tail(n.out_log, lines) for n in self.nodes.values()}

    # ----------------------------------------------------------------- faults
    def _remember_role(self, name: str) -> None:
        """Before a fault, note the live role (restart uses it to decide whether to reopen writes)."""
        node = self.node(name)
        if node.kind == MARIADB and self.is_alive(name) and not self.is_frozen(name):
            info = self._probe(name, timeout=3)
            if info is not None:
                node.last_role = info["role"]
                self.save()

    def _signal(self, name: str, sig: int) -> Node:
        node = self.node(name)
        try:
            process.send_signal(node.pid or 0, node.marker, sig)
        except process.NotOurProcess as exc:
            raise SandboxError(f"{name} is not running ({exc})") from None
        return node

    def kill(self, name: str) -> None:
        """SIGKILL the node and wait until it is gone."""
        self._remember_role(name)
        node = self._signal(name, signal.SIGKILL)
        process.wait_until(lambda: not self.is_alive(name), 30, what=f"{name} (PID {node.pid}) to die")

    def freeze(self, name: str) -> None:
        """SIGSTOP the node (a hang: its connections stay open, it answers nothing)."""
        self._remember_role(name)
        self._signal(name, signal.SIGSTOP)
        process.wait_until(lambda: self.is_frozen(name), 30, what=f"{name} to stop (SIGSTOP)")

    def thaw(self, name: str) -> None:
        """SIGCONT a frozen node."""
        self._signal(name, signal.SIGCONT)
        process.wait_until(lambda: not self.is_frozen(name), 30, what=f"{name} to continue (SIGCONT)")

    def stop(self, name: str, timeout: float = 60) -> None:
        """SIGTERM the node (a clean shutdown) and wait until it has exited; SIGKILL after ``timeout``."""
        node = self.node(name)
        if not self.is_alive(name):
            raise SandboxError(f"{name} is not running")
        self._remember_role(name)
        process.stop_process(node.pid or 0, node.marker, timeout=timeout)

    def restart(self, name: str) -> None:
        """Start the node again with its data (stopping it first if it runs) and wait until it answers.

        MariaDB: a node with a master configured gets ``START SLAVE`` (``skip_slave_start`` is in its
        config), after its slave position is corrected if a crash left it behind its own binlog (see
        :func:`mariadb.slave_pos_after_crash`; recorded in ``node.extra["slave_pos_repairs"]``). A node that was the primary comes back writable only if no other server is a
        writable primary now; otherwise it stays read-only, i.e. fenced by its config.
        """
        node = self.node(name)
        if self.is_alive(name):
            process.stop_process(node.pid or 0, node.marker)
        self._launch(node, fresh_log=False)  # keep the log: what happened before the restart matters
        try:
            self._wait_ready(node)
        except mariadb.ServerFailed as failure:
            raise SandboxError(str(failure)) from None
        if node.kind == MARIADB:
            info = mariadb.probe(node)
            with self.connect(name) as conn, conn.cursor() as cur:
                if info["replication"]:
                    try:
                        repaired = mariadb.slave_pos_after_crash(info)
                        if repaired is not None:
                            for sql, params in SQL.set_applied_position_sql(repaired):
                                cur.execute(sql, params)
                            node.extra.setdefault("slave_pos_repairs", []).append(
                                {"from": info["gtid_slave_pos"], "to": repaired}
                            )
                        cur.execute(SQL.start_all_replicas_sql)
                    except pymysql.err.OperationalError as exc:
                        if exc.args[0] != ER_SLAVE_MUST_STOP:
                            raise
                        # A failover monitor watching the sandbox got there first: it rejoins a node that
                        # comes back (its own position, its own START SLAVE). Leave the node to it.
                elif node.last_role == "primary" and not self._primaries(exclude=name):
                    set_read_only(cur, False, SQL)
            node.last_role = self.role(name)
            self.save()

    # ----------------------------------------------------------------- waiting and resetting
    def wait_caught_up(self, timeout: float = 30) -> None:
        """Wait until every live replica has applied the primary's ``@@gtid_binlog_pos``.

        Waits in short ``MASTER_GTID_WAIT`` slices and reads replication status between them, so a
        broken replica fails at once with its error instead of after the whole timeout.
        """
        primary = self.primary_name()
        if primary is None:
            raise SandboxError("no writable primary to catch up with")
        with self.connect(primary) as conn, conn.cursor() as cur:
            cur.execute(SQL.binlog_position_sql)
            position = cur.fetchone()[0]
        deadline = time.monotonic() + timeout
        for name in self._answering():
            if name == primary:
                continue
            info = self._probe(name)
            if info is None or not info["replication"]:
                continue  # down, or not a replica
            with self.connect(name, read_timeout=max(timeout, 5) + 10) as conn, conn.cursor() as cur:
                while True:
                    remaining = deadline - time.monotonic()
                    cur.execute(*SQL.wait_for_gtid_sql(position, max(0.1, min(1.0, remaining))))
                    if cur.fetchone()[0] == 0:
                        break
                    link = mariadb.probe(self.node(name))["replication"][0]
                    error = link["last_sql_error"] or (
                        link["last_io_error"] if link["io_running"] not in IO_STARTING else ""
                    )
                    if link["sql_running"] != "Yes" or error:
                        raise SandboxError(
                            f"{name} cannot catch up with {primary}: SQL thread {link['sql_running']}, "
                            f"IO thread {link['io_running']}: {error or 'stopped'}"
                        )
                    if remaining <= 0:
                        raise SandboxError(f"{name} did not apply {primary}'s position {position} within {timeout:g} s")

    def reset(self, timeout: float = 30) -> None:
        """Drop every non-system database, wait until all live replicas applied it, and verify.

        With a primary the drops run there and replicate; without one (independent servers) each
        live server drops its own with ``sql_log_bin=0``. Raises SandboxError if any server still has
        a database of its own afterwards (for example one written on a replica, outside replication).
        """
        primary = self.primary_name()
        targets = [primary] if primary else self._answering()
        for name in targets:
            with self.connect(name) as conn, conn.cursor() as cur:
                if primary is None:
                    cur.execute("SET SESSION sql_log_bin=0")
                for database in _user_databases(cur):
                    cur.execute(f"DROP DATABASE {quote_ident(database)}")
        if primary is not None:
            self.wait_caught_up(timeout)
        leftovers = {}
        for name in self._answering():
            with self.connect(name) as conn, conn.cursor() as cur:
                found = _user_databases(cur)
            if found:
                leftovers[name] = found
        if leftovers:
            raise SandboxError(f"reset left databases behind: {leftovers}")

    def problems(self) -> list[str]:
        """Differences from the topology `up` built (empty when healthy): down or frozen nodes, wrong
        roles, replication threads not running, a primary that is read-only. Used to decide whether
        a shared sandbox can be reused after a test."""
        found = []
        for row in self.status():
            expected = self.nodes[row["name"]].up_role
            if row["role"] != expected:
                found.append(f"{row['name']} is {row['role']}, expected {expected}")
            elif row["role"] == "replica" and (row.get("io_running") != "Yes" or row.get("sql_running") != "Yes"):
                found.append(f"{row['name']} replication IO {row.get('io_running')} SQL {row.get('sql_running')}")
            elif row["role"] == "replica" and row["read_only"] is not True:
                found.append(f"{row['name']} is a writable replica")
        return found

    def down(self) -> None:
        """Stop exactly the processes this sandbox started (PIDs checked against /proc/PID/cmdline)."""
        # SIGTERM everyone first so they shut down in parallel, then wait for each.
        for node in self.nodes.values():
            if node.pid and process.is_ours(node.pid, node.marker):
                process.send_signal(node.pid, node.marker, signal.SIGTERM)
                if process.is_frozen(node.pid, node.marker):
                    process.send_signal(node.pid, node.marker, signal.SIGCONT)
        for node in self.nodes.values():
            if node.pid:
                process.stop_process(node.pid, node.marker, timeout=60)
                node.pid = None
        socket_dir = self._state.get("socket_dir")
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)
        if self.directory.exists():
            self.save()


def broker_names(count: int) -> list[str]:
    """The names of ``count`` brokers: ``broker`` (kept for single-broker callers), ``broker2``, ..."""
    return [BROKER if i == 1 else f"{BROKER}{i}" for i in range(1, count + 1)]


def _user_databases(cur: Any) -> list[str]:
    cur.execute("SHOW DATABASES")
    return sorted(row[0] for row in cur.fetchall() if row[0] not in mariadb.SYSTEM_DATABASES)


def _read_state(directory: Path) -> tuple[dict[str, Node], dict[str, Any]] | None:
    path = directory / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise SandboxError(f"{path} is damaged: {exc}") from None
    nodes = {item["name"]: Node.from_json(item) for item in data.pop("nodes", [])}
    return nodes, data
