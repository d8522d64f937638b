"""The one place where MariaDB and MySQL 8 differ: the SQL we send and the names in what comes back.

MariaDB (10.11 here) is tested live; MySQL 8 is tested on the SQL generated here and on recorded outputs
(`tests/topology/snapshots/mysql_*.json`). Statements that take values are returned as `(sql, params)` for
PyMySQL's parameter binding; only keywords we choose ourselves are ever put into SQL text.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.topology.gtid import BinlogState, GtidRange, MariaBinlogState, MariaGtid, MariaPos, MysqlGtidSet, Position
from gateway.topology.model import Epoch, RawObservation, Replication, ServerState, endpoint

# The epoch schema: every promotion inserts a higher row naming the promoted server (see gateway.topology.epoch).
META_SCHEMA = "iotgw_meta"

_SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys", META_SCHEMA)

Statement = tuple[str, tuple[Any, ...]]


def quote_ident(name: str) -> str:
    """A schema or table name (read from a server, so untrusted) as a quoted identifier: backticks doubled."""
    return "`" + str(name).replace("`", "``") + "`"


class Dialect:
    """SQL and output names of one server flavour (`MariaDBDialect`, `MySQLDialect`; use `dialect_for`)."""

    name: str
    variables: tuple[str, ...]
    replica_status_sql: str
    replica_hosts_sql: str
    stop_replica_sql: str
    start_replica_sql: str
    stop_io_thread_sql: str
    stop_sql_thread_sql: str
    start_sql_thread_sql: str
    reset_replica_all_sql: str
    binlog_position_sql: str  # one value: everything this server's binlog holds
    applied_position_sql: str  # one value: everything it applied as a replica
    binlog_state_sql: str  # two values: the binlog state errant checks compare, and the applied position
    install_blackhole_sql: str
    all_replicas_status_sql: str
    start_all_replicas_sql: str
    read_only_sql = "SELECT @@read_only"
    binary_logs_sql = "SHOW BINARY LOGS"
    supports_flashback = False  # `mariadb-binlog --flashback` can undo row changes

    def __repr__(self) -> str:
        return f"<dialect {self.name}>"

    # --- reading what a server says --------------------------------------------------------------------
    def variables_sql(self) -> str:
        """One SELECT returning every variable the instance model needs, aliased by name."""
        return "SELECT " + ", ".join(f"@@{v} AS `{v}`" for v in self.variables)

    def blackhole_tables_sql(self) -> tuple[str, tuple[Any, ...]]:
        marks = ", ".join(["%s"] * len(_SYSTEM_SCHEMAS))
        return (f"SELECT COUNT(*) FROM information_schema.TABLES WHERE ENGINE = 'BLACKHOLE' "
                f"AND TABLE_SCHEMA NOT IN ({marks})", _SYSTEM_SCHEMAS)

    def writer_check_sql(self) -> str:
        """Read-only flag, server id and highest epoch in one round trip (the writer checks them per batch)."""
        return f"SELECT @@read_only, @@server_id, (SELECT MAX(epoch) FROM `{META_SCHEMA}`.epoch)"

    def confirm_check_sql(self) -> str:
        """A replica's applied position and highest epoch (after a wait said it applied a batch)."""
        return f"SELECT {self.applied_position_sql.removeprefix('SELECT ')}, (SELECT MAX(epoch) FROM `{META_SCHEMA}`.epoch)"

    def same_writers(self, target: str, applied: str) -> bool:
        """True if what a replica applied up to `target` came from the server that wrote `target` (and not
        from a newer primary that reached the same numbers)."""
        return True

    def binlog_events_sql(self, log_file: str, limit: int) -> tuple[str, tuple[Any, ...]]:
        """The first `limit` events of one binlog file (Log_name, Pos, Event_type, Server_id, End_log_pos, Info)."""
        return f"SHOW BINLOG EVENTS IN %s LIMIT {int(limit)}", (log_file,)

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
            received_gtid=self.received_position(row),
            using_gtid=self._using_gtid(g),
            sql_delay=delay or 0,
        )

    def received_position(self, row: dict[str, Any] | None) -> str:
        """What a replica-status row says the IO thread has received (empty when nothing)."""
        return _Getter(row or {}).text("Gtid_IO_Pos", "Retrieved_Gtid_Set").replace("\n", "")

    def _using_gtid(self, g: _Getter) -> bool:
        raise NotImplementedError

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
        raise NotImplementedError

    def parse_binlog_state(self, text: str | None) -> BinlogState:
        """What a server's binlog holds, as errant checks compare it."""
        raise NotImplementedError

    def observed_binlog_state(self, raw: RawObservation | None, state: ServerState) -> str:
        """The binlog state of a probed server, from its raw observation when the probe recorded one."""
        return state.gtid_binlog

    def setup_problems(self, variables: dict[str, Any]) -> list[str]:
        """Flavour-specific settings a server needs before it joins a topology (empty: none missing)."""
        return []

    def transactions_missing_from(self, replica_vars: dict[str, Any], primary_vars: dict[str, Any]) -> list[str]:
        """GTIDs of a would-be replica's binlog that the primary lacks (probed variables; empty: none known)."""
        return []

    def dump_position(self, dump_text: str) -> str | None:
        """The GTID position a logical dump (`--master-data=2 --gtid`) says it corresponds to."""
        raise NotImplementedError

    # --- statements ----------------------------------------------------------------------------------------
    def wait_for_gtid_sql(self, position: str, timeout_s: float) -> tuple[str, tuple[Any, ...]]:
        """A statement returning one value: success ("0" on both flavours) or timeout (-1 / 1)."""
        raise NotImplementedError

    def last_write_sql(self) -> str:
        """After a COMMIT, in the same session: the GTID of that commit and the server's whole position."""
        raise NotImplementedError

    def change_source_sql(self, host: str, port: int, user: str, password: str,
                          gtid_mode: str = "slave_pos") -> tuple[str, tuple[Any, ...]]:
        """Point a replica at a source with GTID positioning (heartbeat and retry short, as the sandbox uses)."""
        raise NotImplementedError

    def repoint_sql(self, host: str, port: int, gtid_mode: str = "slave_pos") -> tuple[str, tuple[Any, ...]]:
        """Move a replica to another source, keeping its replication account (CHANGE keeps unnamed options)."""
        raise NotImplementedError

    def set_read_only_sql(self, on: bool) -> list[str]:
        """Fence (on) or open (off) a server."""
        raise NotImplementedError

    def set_applied_position_sql(self, position: str) -> list[Statement]:
        """Tell a replica where it is (before CHANGE … with slave positioning); nothing where GTIDs say it."""
        return []

    def resume_after_own_writes_sql(self) -> list[str]:
        """A replica that wrote GTIDs itself resumes after them, not from its stale applied position."""
        return []

    def empty_transaction_sql(self, gtid: str) -> list[Statement]:
        """Statements that put `gtid` into the binlog with no data change (to skip an errant transaction)."""
        raise NotImplementedError

    # --- errant transactions (pure: decided on binlog states) ------------------------------------------------
    def errant(self, replica_state: str, reference_state: str, ignore_server_ids: frozenset[int],
               ignore_uuids: frozenset[str]) -> tuple[tuple[str, ...], tuple[GtidRange, ...]]:
        """(errant GTIDs, MariaDB ranges) the replica's binlog state has beyond the reference's."""
        raise NotImplementedError

    def merged_states(self, states: list[str]) -> str:
        """Several servers' binlog states as one (what any of them holds)."""
        merged = self.parse_binlog_state("")
        for text in states:
            merged = merged.merged(self.parse_binlog_state(text))
        return str(merged)

    def inject_sql(self, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...]) -> list[Statement]:
        """The statements that put errant GTIDs into the primary's history with no data change."""
        raise NotImplementedError

    def forget_sql(self, replica_state: str, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...],
                   reference_state: str) -> list[Statement]:
        """The statements (replication stopped) that make a replica forget its errant GTIDs."""
        raise NotImplementedError

    def inject_refusal(self, ranges: tuple[GtidRange, ...], primary_state: str) -> str:
        """Why the server would reject the injected no-op ('' when it is accepted)."""
        return ""

    def is_errant_event(self, trx_gtid: str, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...]) -> bool:
        """True if the binlog transaction `trx_gtid` is one of the errant ones."""
        raise NotImplementedError

    def older_files_hold_none(self, rows: list[tuple[Any, ...]], ranges: tuple[GtidRange, ...]) -> bool:
        """True if a binlog file's first events show no older file can hold an errant transaction."""
        return False

    # --- the instance model ---------------------------------------------------------------------------------
    def parse_observation(self, raw: RawObservation) -> ServerState:
        """Turn what a probe recorded into the flavour-neutral `ServerState`."""
        if not raw.reachable:
            return ServerState(endpoint=raw.endpoint, reachable=False, error=raw.error, flavor=self.name)
        v = _Getter(raw.variables)
        read_only, binlog_pos, applied, log_updates = self._positions(v)
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

    def _positions(self, v: _Getter) -> tuple[bool, str, str, bool]:
        """(read-only, binlog position, applied position, logs replica updates) from the variables."""
        raise NotImplementedError


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


class MariaDBDialect(Dialect):
    """MariaDB (10.11 tested live): `SLAVE` words, `MASTER_GTID_WAIT`, per-domain GTID positions."""

    name = "mariadb"
    variables = ("server_id", "read_only", "log_bin", "log_slave_updates", "version", "version_comment",
                 "report_host", "report_port", "port", "gtid_binlog_pos", "gtid_current_pos", "gtid_slave_pos",
                 "gtid_binlog_state", "gtid_strict_mode", "gtid_domain_id", "default_storage_engine", "hostname")
    replica_status_sql = "SHOW SLAVE STATUS"
    replica_hosts_sql = "SHOW SLAVE HOSTS"
    stop_replica_sql = "STOP SLAVE"
    start_replica_sql = "START SLAVE"
    stop_io_thread_sql = "STOP SLAVE IO_THREAD"
    stop_sql_thread_sql = "STOP SLAVE SQL_THREAD"
    start_sql_thread_sql = "START SLAVE SQL_THREAD"
    reset_replica_all_sql = "RESET SLAVE ALL"
    binlog_position_sql = "SELECT @@gtid_binlog_pos"
    applied_position_sql = "SELECT @@gtid_slave_pos"
    binlog_state_sql = "SELECT @@gtid_binlog_state, @@gtid_slave_pos"
    install_blackhole_sql = "INSTALL SONAME 'ha_blackhole'"
    all_replicas_status_sql = "SHOW ALL SLAVES STATUS"  # every named source connection (multi-source)
    start_all_replicas_sql = "START ALL SLAVES"
    supports_flashback = True
    _dump_position = re.compile(r"^-- SET GLOBAL gtid_slave_pos='([0-9,\-]*)';", re.MULTILINE)

    def _using_gtid(self, g: _Getter) -> bool:
        return g.text("Using_Gtid").lower() in ("slave_pos", "current_pos")

    def _positions(self, v: _Getter) -> tuple[bool, str, str, bool]:
        return v.flag("read_only"), v.text("gtid_binlog_pos"), v.text("gtid_slave_pos"), v.flag("log_slave_updates")

    def parse_position(self, text: str | None) -> Position:
        return MariaPos.parse(text)

    def parse_binlog_state(self, text: str | None) -> BinlogState:
        return MariaBinlogState.parse(text)

    def observed_binlog_state(self, raw: RawObservation | None, state: ServerState) -> str:
        """`@@gtid_binlog_state` as probed; a snapshot recorded before the probe read it falls back to
        `gtid_binlog_pos` (the last GTID per domain), which still catches a replica whose last write in a
        domain was its own."""
        if raw is not None and raw.variables.get("gtid_binlog_state") is not None:
            return str(raw.variables["gtid_binlog_state"])
        return state.gtid_binlog

    def dump_position(self, dump_text: str) -> str | None:
        found = self._dump_position.search(dump_text)
        return found.group(1) if found else None

    def same_writers(self, target: str, applied: str) -> bool:
        """In every domain of `target`, the replica's last applied GTID has the target's server id (a newer
        primary's GTIDs carry its own). MySQL needs no such check: its GTIDs name their source UUID."""
        mine = {g.domain: g.server_id for g in MariaPos.parse(target).gtids}
        theirs = {g.domain: g.server_id for g in MariaPos.parse(applied).gtids}
        return all(theirs.get(domain) == server_id for domain, server_id in mine.items())

    def setup_problems(self, variables: dict[str, Any]) -> list[str]:
        v, out = _Getter(variables), []
        if not v.flag("gtid_strict_mode"):
            out.append("gtid_strict_mode is OFF (set gtid_strict_mode=ON)")
        if not v.flag("log_slave_updates"):
            out.append("log_slave_updates is OFF (a promoted replica would lack history)")
        return out

    def transactions_missing_from(self, replica_vars: dict[str, Any], primary_vars: dict[str, Any]) -> list[str]:
        """Each GTID of the replica's binlog position must be one the primary's position has: same server
        id, sequence not beyond."""
        have = MariaPos.parse(_Getter(primary_vars).text("gtid_binlog_pos"))
        own = MariaPos.parse(_Getter(replica_vars).text("gtid_binlog_pos"))
        return [str(g) for g in own.gtids
                if not any(h.domain == g.domain and h.server_id == g.server_id and h.seq >= g.seq for h in have.gtids)]

    def wait_for_gtid_sql(self, position: str, timeout_s: float) -> tuple[str, tuple[Any, ...]]:
        return "SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout_s)

    def last_write_sql(self) -> str:
        """`@@last_gtid` keeps an older value when the commit wrote no binlog event (a re-applied batch whose
        rows all exist); the caller then falls back to the whole position."""
        return "SELECT @@last_gtid AS last_gtid, @@gtid_binlog_pos AS pos"

    def change_source_sql(self, host: str, port: int, user: str, password: str,
                          gtid_mode: str = "slave_pos") -> tuple[str, tuple[Any, ...]]:
        _check_gtid_mode(gtid_mode)
        return ("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                f"MASTER_USE_GTID={gtid_mode}, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
                (host, port, user, password))

    def repoint_sql(self, host: str, port: int, gtid_mode: str = "slave_pos") -> tuple[str, tuple[Any, ...]]:
        _check_gtid_mode(gtid_mode)
        return f"CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USE_GTID={gtid_mode}", (host, port)

    def set_read_only_sql(self, on: bool) -> list[str]:
        return [f"SET GLOBAL read_only={'ON' if on else 'OFF'}"]

    def set_applied_position_sql(self, position: str) -> list[Statement]:
        return [("SET GLOBAL gtid_slave_pos=%s", (position,))]

    def resume_after_own_writes_sql(self) -> list[str]:
        return ["SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos"]

    def empty_transaction_sql(self, gtid: str) -> list[Statement]:
        """MariaDB does not binlog `BEGIN; COMMIT`, so a binlogged no-op under the GTID's server id and
        sequence number (strict mode refuses a sequence at or below the domain's current maximum)."""
        domain, server_id, seq = (int(p) for p in gtid.split("-"))
        return [("SET SESSION gtid_domain_id=%s, server_id=%s, gtid_seq_no=%s", (domain, server_id, seq)),
                ("DROP TABLE IF EXISTS iotgw_meta.no_such_table_errant_skip", ())]

    def errant(self, replica_state: str, reference_state: str, ignore_server_ids: frozenset[int],
               ignore_uuids: frozenset[str]) -> tuple[tuple[str, ...], tuple[GtidRange, ...]]:
        """Compared per domain *and server id*: a GTID `d-s-n` is on the reference if it holds `d-s-m` with
        m >= n (sequence numbers alone would mistake a new primary's writes for a lost old one's)."""
        ranges = MariaBinlogState.parse(replica_state).beyond(MariaBinlogState.parse(reference_state),
                                                              ignore_server_ids)
        return tuple(r.last for r in ranges), tuple(ranges)

    def inject_sql(self, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...]) -> list[Statement]:
        """The last GTID per (domain, server id) is enough: a binlog state keeps only that."""
        return [stmt for r in ranges for stmt in self.empty_transaction_sql(r.last)]

    def forget_sql(self, replica_state: str, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...],
                   reference_state: str) -> list[Statement]:
        """RESET MASTER, then the binlog state without the errant entries (each (domain, server id) set back
        to what the reference holds, or dropped)."""
        keep = MariaBinlogState.parse(replica_state).rolled_back(ranges, MariaBinlogState.parse(reference_state))
        return [("RESET MASTER", ()), ("SET GLOBAL gtid_binlog_state=%s", (str(keep),))]

    def inject_refusal(self, ranges: tuple[GtidRange, ...], primary_state: str) -> str:
        state = MariaBinlogState.parse(primary_state)
        for r in ranges:
            top = state.domain_top(r.domain)
            if top >= r.upto:
                return (f"the primary's domain {r.domain} is already at sequence {top} >= {r.upto}: "
                        f"gtid_strict_mode rejects the no-op {r.last} there (use the clean repair)")
        return ""

    def is_errant_event(self, trx_gtid: str, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...]) -> bool:
        if not trx_gtid:
            return False
        g = MariaGtid(*(int(x) for x in trx_gtid.split("-")))
        return any(r.covers(g) for r in ranges)

    def older_files_hold_none(self, rows: list[tuple[Any, ...]], ranges: tuple[GtidRange, ...]) -> bool:
        """The file's `Gtid_list` (its starting state) at or below every range's lower end."""
        for _log, _pos, etype, _sid, _end, info in rows[:4]:
            if str(etype) == "Gtid_list":
                state = MariaBinlogState.parse(str(info).strip().strip("[]"))
                return all(state.seq(r.domain, r.server_id) <= r.after for r in ranges)
        return False


class MySQLDialect(Dialect):
    """MySQL 8 (tested on generated SQL and recorded outputs): `REPLICA`/`SOURCE` words, GTID sets."""

    name = "mysql"
    variables = ("server_id", "server_uuid", "read_only", "super_read_only", "log_bin", "log_replica_updates",
                 "version", "version_comment", "report_host", "report_port", "port", "gtid_executed", "gtid_mode",
                 "default_storage_engine", "hostname")
    replica_status_sql = "SHOW REPLICA STATUS"
    replica_hosts_sql = "SHOW REPLICAS"
    stop_replica_sql = "STOP REPLICA"
    start_replica_sql = "START REPLICA"
    stop_io_thread_sql = "STOP REPLICA IO_THREAD"
    stop_sql_thread_sql = "STOP REPLICA SQL_THREAD"
    start_sql_thread_sql = "START REPLICA SQL_THREAD"
    reset_replica_all_sql = "RESET REPLICA ALL"
    binlog_position_sql = "SELECT @@GLOBAL.gtid_executed"
    applied_position_sql = "SELECT @@GLOBAL.gtid_executed"
    binlog_state_sql = "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed"
    install_blackhole_sql = "INSTALL PLUGIN BLACKHOLE SONAME 'ha_blackhole.so'"
    all_replicas_status_sql = "SHOW REPLICA STATUS"  # one row per channel
    start_all_replicas_sql = "START REPLICA"
    _dump_position = re.compile(r"GTID_PURGED=(?:/\*!80000 '\+'\*/ )?'([^']*)'")

    def _using_gtid(self, g: _Getter) -> bool:
        return g.text("Auto_Position") == "1"

    def _positions(self, v: _Getter) -> tuple[bool, str, str, bool]:
        executed = v.text("gtid_executed").replace("\n", "")
        return (v.flag("read_only") or v.flag("super_read_only"), executed, executed,
                v.flag("log_replica_updates") or v.flag("log_slave_updates"))

    def parse_position(self, text: str | None) -> Position:
        return MysqlGtidSet.parse(text)

    def parse_binlog_state(self, text: str | None) -> BinlogState:
        return MysqlGtidSet.parse(text)

    def dump_position(self, dump_text: str) -> str | None:
        found = self._dump_position.search(dump_text)
        return found.group(1).replace("\n", "") if found else None

    def wait_for_gtid_sql(self, position: str, timeout_s: float) -> tuple[str, tuple[Any, ...]]:
        return "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (position, timeout_s)

    def last_write_sql(self) -> str:
        """MySQL has no `@@last_gtid`: its executed set after the commit contains the commit, which is enough
        to wait on."""
        return "SELECT '' AS last_gtid, @@GLOBAL.gtid_executed AS pos"

    def change_source_sql(self, host: str, port: int, user: str, password: str,
                          gtid_mode: str = "slave_pos") -> tuple[str, tuple[Any, ...]]:
        return ("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
                "SOURCE_PASSWORD=%s, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1",
                (host, port, user, password))

    def repoint_sql(self, host: str, port: int, gtid_mode: str = "slave_pos") -> tuple[str, tuple[Any, ...]]:
        return "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_AUTO_POSITION=1", (host, port)

    def set_read_only_sql(self, on: bool) -> list[str]:
        """super_read_only too, so admins are fenced as well."""
        return ["SET GLOBAL super_read_only=ON"] if on else ["SET GLOBAL super_read_only=OFF",
                                                              "SET GLOBAL read_only=OFF"]

    def empty_transaction_sql(self, gtid: str) -> list[Statement]:
        """An empty transaction under GTID_NEXT."""
        return [("SET GTID_NEXT=%s", (gtid,)), ("BEGIN", ()), ("COMMIT", ()), ("SET GTID_NEXT='AUTOMATIC'", ())]

    def errant(self, replica_state: str, reference_state: str, ignore_server_ids: frozenset[int],
               ignore_uuids: frozenset[str]) -> tuple[tuple[str, ...], tuple[GtidRange, ...]]:
        """GTID_SUBTRACT(replica, reference), without the ignored source UUIDs."""
        rest = MysqlGtidSet.parse(replica_state).minus(MysqlGtidSet.parse(reference_state))
        ignore = {u.lower() for u in ignore_uuids}
        rest = MysqlGtidSet(tuple((u, iv) for u, iv in rest.sources if u not in ignore))
        return (tuple(str(rest).split(",")) if rest else ()), ()

    def inject_sql(self, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...]) -> list[Statement]:
        """Every GTID of the set, each as an empty transaction."""
        out: list[Statement] = []
        for uuid, intervals in MysqlGtidSet.parse(",".join(gtids)).sources:
            for lo, hi in intervals:
                for n in range(lo, hi + 1):
                    out.extend(self.empty_transaction_sql(f"{uuid}:{n}"))
        return out

    def forget_sql(self, replica_state: str, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...],
                   reference_state: str) -> list[Statement]:
        """RESET MASTER, then gtid_purged = executed minus errant."""
        keep = MysqlGtidSet.parse(replica_state).minus(MysqlGtidSet.parse(",".join(gtids)))
        return [("RESET MASTER", ()), ("SET GLOBAL gtid_purged=%s", (str(keep),))]

    def is_errant_event(self, trx_gtid: str, gtids: tuple[str, ...], ranges: tuple[GtidRange, ...]) -> bool:
        return bool(trx_gtid) and MysqlGtidSet.parse(trx_gtid).minus(MysqlGtidSet.parse(",".join(gtids))).count() == 0


def _check_gtid_mode(gtid_mode: str) -> None:
    if gtid_mode not in ("slave_pos", "current_pos"):
        raise ValueError(f"MASTER_USE_GTID must be slave_pos or current_pos, not {gtid_mode!r}")


MARIADB: Dialect = MariaDBDialect()
MYSQL: Dialect = MySQLDialect()


_GTID_EVENT_INFO = (re.compile(r"GTID (\d+-\d+-\d+)"),  # MariaDB: `BEGIN GTID d-s-n` / `GTID d-s-n`
                    re.compile(r"GTID_NEXT\s*=\s*'([0-9a-fA-F-]{36}:\d+)'"))  # MySQL: `SET @@SESSION.GTID_NEXT= '…'`


def gtid_of_event(info: str) -> str:
    """The GTID a `SHOW BINLOG EVENTS` Gtid event's Info names, in either flavour's spelling ('' if none)."""
    for pattern in _GTID_EVENT_INFO:
        m = pattern.search(info)
        if m:
            return m.group(1)
    return ""


def dialect_for(flavor_or_version: str) -> Dialect:
    """The dialect for "mariadb"/"mysql" or for a `@@version` string (MariaDB says so in it)."""
    text = flavor_or_version.lower()
    if text == "mysql":
        return MYSQL
    if text == "mariadb" or "mariadb" in text:
        return MARIADB
    return MYSQL
