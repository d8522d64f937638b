"""The one place where MariaDB and MySQL 8 differ: the SQL we send and the names in what comes back.

MariaDB (10.11 here) is tested live; MySQL 8 is tested on the SQL generated here and on recorded outputs
(`tests/topology/snapshots/mysql_*.json`). Statements that take values are returned as `(sql, params)` for
PyMySQL's parameter binding; only keywords we choose ourselves are ever put into SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.topology.gtid import MariaPos, MysqlGtidSet, Position
from gateway.topology.model import Epoch, RawObservation, Replication, ServerState, Snapshot, endpoint

# The epoch schema: every promotion inserts a higher row naming the promoted server (see gateway.topology.epoch).
META_SCHEMA = "iotgw_meta"

_SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys", META_SCHEMA)


@dataclass(frozen=True)
class Dialect:
    """SQL and output names of one server flavour."""

    name: str
    variables: tuple[str, ...]
    replica_status_sql: str
    replica_hosts_sql: str
    stop_replica_sql: str
    start_replica_sql: str
    stop_sql_thread_sql: str
    start_sql_thread_sql: str
    reset_replica_all_sql: str

    # --- reading what a server says --------------------------------------------------------------------
    def variables_sql(self) -> str:
        """One SELECT returning every variable the instance model needs, aliased by name."""
        return "SELECT " + ", ".join(f"@@{v} AS `{v}`" for v in self.variables)

    def blackhole_tables_sql(self) -> tuple[str, tuple[Any, ...]]:
        marks = ", ".join(["%s"] * len(_SYSTEM_SCHEMAS))
        return (f"SELECT COUNT(*) FROM information_schema.TABLES WHERE ENGINE = 'BLACKHOLE' "
                f"AND TABLE_SCHEMA NOT IN ({marks})", _SYSTEM_SCHEMAS)

    def parse_replication(self, row: dict[str, Any] | None) -> Replication | None:
        """The replica-status row in neutral words (None: the server replicates from nobody)."""
        if not row:
            return None
        g = _Getter(row)
        host = g.text("Master_Host", "Source_Host")
        if not host:
            return None  # RESET SLAVE (without ALL) leaves an empty row behind
        delay = g.opt_int("SQL_Delay")
        return Replication(
            source_host=host,
            source_port=g.int("Master_Port", "Source_Port"),
            source_server_id=g.int("Master_Server_Id", "Source_Server_Id"),
            io_running=g.text("Slave_IO_Running", "Replica_IO_Running") or "No",
            sql_running=g.text("Slave_SQL_Running", "Replica_SQL_Running") == "Yes",
            last_io_errno=g.int("Last_IO_Errno"),
            last_io_error=g.text("Last_IO_Error"),
            last_sql_errno=g.int("Last_SQL_Errno"),
            last_sql_error=g.text("Last_SQL_Error"),
            seconds_behind=g.opt_int("Seconds_Behind_Master", "Seconds_Behind_Source"),
            received_gtid=g.text("Gtid_IO_Pos", "Retrieved_Gtid_Set").replace("\n", ""),
            using_gtid=self._using_gtid(g),
            sql_delay=delay or 0,
        )

    def _using_gtid(self, g: _Getter) -> bool:
        if self.name == "mysql":
            return g.text("Auto_Position") == "1"
        return g.text("Using_Gtid").lower() in ("slave_pos", "current_pos")

    def parse_replica_hosts(self, rows: list[dict[str, Any]]) -> tuple[tuple[int, str], ...]:
        """`SHOW SLAVE HOSTS` / `SHOW REPLICAS` rows as (server id, endpoint), sorted by server id."""
        out = []
        for row in rows:
            g = _Getter(row)
            port = g.int("Port")
            if port:
                out.append((g.int("Server_id", "Server_Id"), endpoint(g.text("Host"), port)))
        return tuple(sorted(out))

    def parse_position(self, text: str | None) -> Position:
        return MysqlGtidSet.parse(text) if self.name == "mysql" else MariaPos.parse(text)

    # --- statements ----------------------------------------------------------------------------------------
    def wait_for_gtid_sql(self, position: str, timeout_s: float) -> tuple[str, tuple[Any, ...]]:
        """A statement returning one value: success ("0" on both flavours) or timeout (-1 / 1)."""
        if self.name == "mysql":
            return "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (position, timeout_s)
        return "SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout_s)

    def last_write_sql(self) -> str:
        """After a COMMIT, in the same session: the GTID of that commit and the server's whole position.

        MariaDB's `@@last_gtid` keeps an older value when the commit wrote no binlog event (a re-applied batch
        whose rows all exist); the caller then falls back to the whole position. MySQL has no `@@last_gtid`:
        its executed set after the commit contains the commit, which is enough to wait on.
        """
        if self.name == "mysql":
            return "SELECT '' AS last_gtid, @@GLOBAL.gtid_executed AS pos"
        return "SELECT @@last_gtid AS last_gtid, @@gtid_binlog_pos AS pos"

    def change_source_sql(self, host: str, port: int, user: str, password: str,
                          gtid_mode: str = "slave_pos") -> tuple[str, tuple[Any, ...]]:
        """Point a replica at a source with GTID positioning (heartbeat and retry short, as the sandbox uses)."""
        if self.name == "mysql":
            return ("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
                    "SOURCE_PASSWORD=%s, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1",
                    (host, port, user, password))
        if gtid_mode not in ("slave_pos", "current_pos"):
            raise ValueError(f"MASTER_USE_GTID must be slave_pos or current_pos, not {gtid_mode!r}")
        return ("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                f"MASTER_USE_GTID={gtid_mode}, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
                (host, port, user, password))

    def repoint_sql(self, host: str, port: int, gtid_mode: str = "slave_pos") -> tuple[str, tuple[Any, ...]]:
        """Move a replica to another source, keeping its replication account (CHANGE keeps unnamed options)."""
        if self.name == "mysql":
            return "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_AUTO_POSITION=1", (host, port)
        if gtid_mode not in ("slave_pos", "current_pos"):
            raise ValueError(f"MASTER_USE_GTID must be slave_pos or current_pos, not {gtid_mode!r}")
        return f"CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USE_GTID={gtid_mode}", (host, port)

    def set_read_only_sql(self, on: bool) -> list[str]:
        """Fence (on) or open (off) a server; MySQL also needs super_read_only so admins are fenced too."""
        if self.name == "mysql":
            return ["SET GLOBAL super_read_only=ON"] if on else ["SET GLOBAL super_read_only=OFF",
                                                                  "SET GLOBAL read_only=OFF"]
        return [f"SET GLOBAL read_only={'ON' if on else 'OFF'}"]

    def empty_transaction_sql(self, gtid: str) -> list[tuple[str, tuple[Any, ...]]]:
        """Statements that put `gtid` into the binlog with no data change (to skip an errant transaction).

        MySQL: an empty transaction under GTID_NEXT. MariaDB does not binlog `BEGIN; COMMIT`, so we write a
        binlogged no-op under the GTID's server id and sequence number (strict mode refuses a sequence at or
        below the domain's current maximum).
        """
        if self.name == "mysql":
            return [("SET GTID_NEXT=%s", (gtid,)), ("BEGIN", ()), ("COMMIT", ()), ("SET GTID_NEXT='AUTOMATIC'", ())]
        domain, server_id, seq = (int(p) for p in gtid.split("-"))
        return [("SET SESSION gtid_domain_id=%s, server_id=%s, gtid_seq_no=%s", (domain, server_id, seq)),
                ("DROP TABLE IF EXISTS iotgw_meta.no_such_table_errant_skip", ())]

    # --- the instance model ---------------------------------------------------------------------------------
    def parse_observation(self, raw: RawObservation) -> ServerState:
        """Turn what a probe recorded into the flavour-neutral `ServerState`."""
        if not raw.reachable:
            return ServerState(endpoint=raw.endpoint, reachable=False, error=raw.error, flavor=self.name)
        v = _Getter(raw.variables)
        if self.name == "mysql":
            read_only = v.flag("read_only") or v.flag("super_read_only")
            binlog_pos = applied = v.text("gtid_executed").replace("\n", "")
            log_updates = v.flag("log_replica_updates") or v.flag("log_slave_updates")
        else:
            read_only = v.flag("read_only")
            binlog_pos = v.text("gtid_binlog_pos")
            applied = v.text("gtid_slave_pos")
            log_updates = v.flag("log_slave_updates")
        report_host = v.text("report_host")
        report_port = v.int("report_port") or v.int("port")
        epoch = None
        if raw.epoch:
            e = _Getter(raw.epoch)
            epoch = Epoch(epoch=e.int("epoch"), server_id=e.int("server_id"), host=e.text("host"), port=e.int("port"))
        return ServerState(
            endpoint=raw.endpoint,
            reachable=True,
            error=raw.error,
            flavor=self.name,
            server_id=v.int("server_id"),
            server_uuid=v.text("server_uuid"),
            version=v.text("version"),
            read_only=read_only,
            has_binlog=v.flag("log_bin"),
            log_replica_updates=log_updates,
            report_endpoint=endpoint(report_host, report_port) if report_host and report_port else "",
            gtid_binlog=binlog_pos,
            gtid_applied=applied,
            replication=self.parse_replication(raw.replica_status),
            replica_hosts=self.parse_replica_hosts(raw.replica_hosts),
            epoch=epoch,
            blackhole=raw.blackhole_tables > 0 or v.text("default_storage_engine").upper() == "BLACKHOLE",
        )


class _Getter:
    """Case-insensitive access to a result row, with the first of several alternative column names."""

    def __init__(self, row: dict[str, Any]) -> None:
        self._row = {str(k).lower(): v for k, v in row.items()}

    def _get(self, names: tuple[str, ...]) -> Any:
        for n in names:
            if n.lower() in self._row:
                return self._row[n.lower()]
        return None

    def text(self, *names: str) -> str:
        value = self._get(names)
        if isinstance(value, bytes):
            value = value.decode()
        return "" if value is None else str(value)

    def opt_int(self, *names: str) -> int | None:
        value = self.text(*names)
        return int(value) if value.lstrip("-").isdigit() else None

    def int(self, *names: str) -> int:
        return self.opt_int(*names) or 0

    def flag(self, name: str) -> bool:
        return self.text(name).upper() in ("1", "ON", "YES", "TRUE")


MARIADB = Dialect(
    name="mariadb",
    variables=("server_id", "read_only", "log_bin", "log_slave_updates", "version", "version_comment",
               "report_host", "report_port", "port", "gtid_binlog_pos", "gtid_current_pos", "gtid_slave_pos", "gtid_binlog_state",
               "gtid_strict_mode", "gtid_domain_id", "default_storage_engine", "hostname"),
    replica_status_sql="SHOW SLAVE STATUS",
    replica_hosts_sql="SHOW SLAVE HOSTS",
    stop_replica_sql="STOP SLAVE",
    start_replica_sql="START SLAVE",
    stop_sql_thread_sql="STOP SLAVE SQL_THREAD",
    start_sql_thread_sql="START SLAVE SQL_THREAD",
    reset_replica_all_sql="RESET SLAVE ALL",
)

MYSQL = Dialect(
    name="mysql",
    variables=("server_id", "server_uuid", "read_only", "super_read_only", "log_bin", "log_replica_updates",
               "version", "version_comment", "report_host", "report_port", "port", "gtid_executed", "gtid_mode",
               "default_storage_engine", "hostname"),
    replica_status_sql="SHOW REPLICA STATUS",
    replica_hosts_sql="SHOW REPLICAS",
    stop_replica_sql="STOP REPLICA",
    start_replica_sql="START REPLICA",
    stop_sql_thread_sql="STOP REPLICA SQL_THREAD",
    start_sql_thread_sql="START REPLICA SQL_THREAD",
    reset_replica_all_sql="RESET REPLICA ALL",
)


def dialect_for(flavor_or_version: str) -> Dialect:
    """The dialect for "mariadb"/"mysql" or for a `@@version` string (MariaDB says so in it)."""
    text = flavor_or_version.lower()
    if text == "mysql":
        return MYSQL
    if text == "mariadb" or "mariadb" in text:
        return MARIADB
    return MYSQL


def snapshot_from_raw(raws: list[RawObservation], taken_at: float = 0.0) -> Snapshot:
    """Parse raw observations into a snapshot; one server reached under two names is kept once."""
    servers: list[ServerState] = []
    seen_ids: set[int] = set()
    for raw in raws:
        state = dialect_for(raw.flavor).parse_observation(raw)
        if state.reachable and state.server_id in seen_ids:
            continue
        if state.reachable:
            seen_ids.add(state.server_id)
        servers.append(state)
    return Snapshot(servers=tuple(servers), taken_at=taken_at, raw=tuple(raws))
