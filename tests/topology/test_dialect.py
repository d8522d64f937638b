"""The dialect layer: generated SQL for both flavours and parsing of what each server says."""

import pytest

from gateway.topology.dialect import MARIADB, MYSQL, dialect_for
from gateway.topology.model import RawObservation


def test_flavour_from_version_string():
    assert dialect_for("10.11.19-MariaDB-0+deb12u1-log") is MARIADB
    assert dialect_for("8.0.36") is MYSQL
    assert dialect_for("mysql") is MYSQL and dialect_for("mariadb") is MARIADB


def test_replica_statements_differ_by_flavour():
    assert (MARIADB.replica_hosts_sql, MYSQL.replica_hosts_sql) == ("SHOW SLAVE HOSTS", "SHOW REPLICAS")
    assert MYSQL.replica_status_sql == "SHOW REPLICA STATUS"
    assert (MARIADB.reset_replica_all_sql, MYSQL.reset_replica_all_sql) == ("RESET SLAVE ALL", "RESET REPLICA ALL")


def test_change_source_is_parameterised():
    sql, params = MARIADB.change_source_sql("db'; DROP TABLE x; --", 3306, "repl", "pw")
    assert "DROP" not in sql and params[0].startswith("db'")
    assert "MASTER_USE_GTID=slave_pos" in sql and sql.count("%s") == 4
    sql, params = MYSQL.change_source_sql("h", 3306, "repl", "pw")
    assert sql.startswith("CHANGE REPLICATION SOURCE TO") and "SOURCE_AUTO_POSITION=1" in sql
    with pytest.raises(ValueError):
        MARIADB.change_source_sql("h", 1, "u", "p", gtid_mode="slave_pos; DROP")
    sql, params = MARIADB.repoint_sql("h", 3307, "current_pos")
    assert sql == "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USE_GTID=current_pos" and params == (
        "h",
        3307,
    )


def test_wait_statements():
    assert MARIADB.wait_for_gtid_sql("0-1-5", 0.5) == ("SELECT MASTER_GTID_WAIT(%s, %s)", ("0-1-5", 0.5))
    assert MYSQL.wait_for_gtid_sql("u:1-5", 1)[0] == "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)"
    assert "@@last_gtid" in MARIADB.last_write_sql() and "gtid_executed" in MYSQL.last_write_sql()


def test_fencing_uses_super_read_only_on_mysql():
    assert MYSQL.set_read_only_sql(True) == ["SET GLOBAL super_read_only=ON"]
    assert MYSQL.set_read_only_sql(False)[-1] == "SET GLOBAL read_only=OFF"
    assert MARIADB.set_read_only_sql(True) == ["SET GLOBAL read_only=ON"]


def test_empty_transaction_repair_differs():
    mysql = MYSQL.empty_transaction_sql("3e11fa47-71ca-11e1-9e33-c80aa9429562:23")
    assert [s for s, _ in mysql] == ["SET GTID_NEXT=%s", "BEGIN", "COMMIT", "SET GTID_NEXT='AUTOMATIC'"]
    maria = MARIADB.empty_transaction_sql("0-3-77")
    assert maria[0][1] == (0, 3, 77) and maria[1][0].startswith("DROP TABLE IF EXISTS")  # BEGIN;COMMIT is not binlogged


def test_variables_query_names_every_column():
    sql = MARIADB.variables_sql()
    assert "@@gtid_slave_pos AS `gtid_slave_pos`" in sql and "@@gtid_executed" not in sql
    assert "@@gtid_executed AS `gtid_executed`" in MYSQL.variables_sql()


def test_mysql_replica_status_parsed_to_neutral_words():
    row = {
        "Source_Host": "10.0.0.1",
        "Source_Port": 3306,
        "Replica_IO_Running": "Connecting",
        "Replica_SQL_Running": "Yes",
        "Seconds_Behind_Source": None,
        "Source_Server_Id": 1,
        "Last_IO_Errno": 2003,
        "Last_IO_Error": "error connecting",
        "Retrieved_Gtid_Set": "u:1-5,\nv:1-2",
        "Auto_Position": 1,
    }
    rep = MYSQL.parse_replication(row)
    assert rep.source == "10.0.0.1:3306" and rep.io_running == "Connecting" and rep.sql_running
    assert rep.seconds_behind is None and rep.last_io_errno == 2003 and rep.received_gtid == "u:1-5,v:1-2"
    assert rep.using_gtid and not rep.running


def test_mariadb_handshaking_io_thread_is_starting_not_running():
    # MariaDB says "Preparing" between the TCP connection and "Yes" (seen right after START SLAVE).
    row = {"Master_Host": "127.0.0.1", "Master_Port": 3306, "Slave_IO_Running": "Preparing",
           "Slave_SQL_Running": "Yes", "Using_Gtid": "Slave_Pos"}
    rep = MARIADB.parse_replication(row)
    assert rep.io_running == "Preparing" and rep.io_starting and not rep.running
    stopped = MARIADB.parse_replication({**row, "Slave_IO_Running": "No"})
    assert not stopped.io_starting and not stopped.running
    assert MARIADB.parse_replication({**row, "Slave_IO_Running": "Yes"}).running


def test_reset_slave_leaves_an_empty_row_that_is_no_replication():
    assert MARIADB.parse_replication({"Master_Host": "", "Master_Port": 3306}) is None


def test_unreachable_observation():
    state = MARIADB.parse_observation(RawObservation(endpoint="127.0.0.1:1", reachable=False, error="2003: refused"))
    assert not state.reachable and state.error == "2003: refused" and not state.writable


def test_position_statements_differ_by_flavour():
    assert (MARIADB.binlog_position_sql, MYSQL.binlog_position_sql) == ("SELECT @@gtid_binlog_pos",
                                                                        "SELECT @@GLOBAL.gtid_executed")
    assert MARIADB.applied_position_sql == "SELECT @@gtid_slave_pos"
    assert MARIADB.stop_io_thread_sql == "STOP SLAVE IO_THREAD" and MYSQL.stop_io_thread_sql == "STOP REPLICA IO_THREAD"
    assert MARIADB.set_applied_position_sql("0-1-5") == [("SET GLOBAL gtid_slave_pos=%s", ("0-1-5",))]
    assert MYSQL.set_applied_position_sql("u:1") == [] and MYSQL.resume_after_own_writes_sql() == []
    assert "gtid_slave_pos" in MARIADB.confirm_check_sql() and "gtid_executed" in MYSQL.confirm_check_sql()


def test_dump_position_is_read_from_either_dump_format():
    maria = "-- CHANGE MASTER TO MASTER_LOG_FILE='b.000001';\n-- SET GLOBAL gtid_slave_pos='0-1-42';\n"
    assert MARIADB.dump_position(maria) == "0-1-42" and MARIADB.dump_position("no position") is None
    mysql = "SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5';"
    assert MYSQL.dump_position(mysql) == "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"


def test_same_writers_tells_a_newer_primary_apart_on_mariadb_only():
    assert MARIADB.same_writers("0-1-10", "0-1-12") and not MARIADB.same_writers("0-1-10", "0-2-12")
    assert MYSQL.same_writers("u", "v")


def test_setup_prerequisites_by_flavour():
    assert MARIADB.setup_problems({"gtid_strict_mode": "ON", "log_slave_updates": 1}) == []
    assert [p.split()[0] for p in MARIADB.setup_problems({})] == ["gtid_strict_mode", "log_slave_updates"]
    assert MYSQL.setup_problems({}) == []
    assert MARIADB.transactions_missing_from({"gtid_binlog_pos": "0-2-5"}, {"gtid_binlog_pos": "0-1-9"}) == ["0-2-5"]
    assert MARIADB.transactions_missing_from({"gtid_binlog_pos": "0-1-5"}, {"gtid_binlog_pos": "0-1-9"}) == []
