"""Errant-transaction detection and repair SQL on stored snapshots and recorded outputs (no servers).

MariaDB snapshots were recorded live (tests/ops/snapshots/record.py); the MySQL ones are transcribed MySQL
8.0 output (the topology layer's mysql_1p2r_sql_stopped.json with one replica given its own GTIDs), since no
MySQL server runs here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gateway.ops import errant as e
from gateway.ops.plan import plan_failover
from gateway.topology.dialect import MARIADB
from gateway.topology.gtid import MariaBinlogState
from gateway.topology.operation import OpError
from gateway.topology.snapshots import load_snapshot

HERE = Path(__file__).parent / "snapshots"
TOPO = Path(__file__).parent.parent / "topology" / "snapshots"
PRIMARY_UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
REPLICA_UUID = "4f2b1c55-71ca-11e1-9e33-c80aa9429563"


def test_binlog_state_round_trip_keeps_each_domains_highest_last() -> None:
    state = MariaBinlogState.parse("0-1-9,0-2-11,1-5-3,0-1-12")
    assert state.as_dict() == {(0, 1): 12, (0, 2): 11, (1, 5): 3}
    assert str(state) == "0-2-11,0-1-12,1-5-3"


def test_mariadb_errant_compares_server_ids_not_only_sequence_numbers() -> None:
    # The primary is far ahead by sequence number, but never had anything of server 2 after 0-2-50.
    gtids, ranges = MARIADB.errant("0-1-100,0-2-101", "0-2-50,0-1-150", frozenset(), frozenset())
    assert ranges == (e.ErrantRange(0, 2, 50, 101),) and gtids == ("0-2-101",)
    assert ranges[0].last == "0-2-101"
    # a former primary's writes: not errant
    assert MARIADB.errant("0-1-100,0-2-50", "0-2-50,0-1-150", frozenset(), frozenset()) == ((), ())
    assert MARIADB.errant("0-1-100,0-2-101", "0-1-100", frozenset({2}), frozenset()) == ((), ())


def test_recorded_mariadb_snapshot_names_both_errant_replicas() -> None:
    snap = load_snapshot(HERE / "mariadb_errant.json")
    found = e.errant_transactions(snap)
    by_id = {s.endpoint: s.server_id for s in snap.servers}
    assert {by_id[ep]: gtids for ep, gtids in found.items()} == {2: ["0-2-22"], 3: ["0-3-22"]}
    db2 = next(s for s in snap.servers if s.server_id == 2)
    assert "errant transactions 0-2-22" in e.candidate_refusal(snap, db2.endpoint)
    db4 = next(s for s in snap.servers if s.server_id == 4)
    assert e.candidate_refusal(snap, db4.endpoint) == ""


def test_primary_dead_reference_is_the_other_replicas_and_ignores_the_old_primarys_gtids() -> None:
    snap = load_snapshot(HERE / "mariadb_errant_primary_dead.json")
    found = e.find_errant(snap)
    assert sorted(f.server_id for f in found) == [2, 3]
    assert all("no live primary" in f.reference for f in found)
    # db4 received 0-1-22 from the dead primary that the errant replicas never applied: lag, not errant.
    plan = plan_failover(snap)
    assert plan.ok and plan.candidate is not None and plan.candidate.server_id == 4
    assert e.candidate_refusal(snap, plan.candidate.endpoint) == ""
    # failover runs the errant check: the errant replicas are refused with the reason, never chosen silently
    refused = {c.server.server_id: c.refused for c in plan.considered}
    assert "errant transactions 0-2-" in refused[2] and "errant transactions 0-3-" in refused[3]
    db2 = next(s for s in snap.servers if s.server_id == 2)
    forced = plan_failover(snap, candidate=db2.endpoint, force=True)
    assert not forced.ok and "errant transactions" in forced.refused


def _mysql_snapshot(extra: str) -> dict:
    data = json.loads((TOPO / "mysql_1p2r_sql_stopped.json").read_text())
    data = copy.deepcopy(data)
    for raw in data["servers"]:
        if raw["variables"]["server_id"] == 2:
            raw["variables"]["gtid_executed"] = f"{PRIMARY_UUID}:1-1000,\n{REPLICA_UUID}:{extra}"
    return data


def test_mysql_errant_is_a_set_difference_by_source_uuid() -> None:
    snap = load_snapshot(_mysql_snapshot("1-2:5"))
    found = e.find_errant(snap)
    assert [(f.server_id, f.gtids) for f in found] == [(2, (f"{REPLICA_UUID}:1-2:5",))]
    sql = e.inject_sql("mysql", found[0])
    # One empty transaction per errant GTID under GTID_NEXT, then back to AUTOMATIC.
    nexts = [p[0] for s, p in sql if s == "SET GTID_NEXT=%s"]
    assert nexts == [f"{REPLICA_UUID}:1", f"{REPLICA_UUID}:2", f"{REPLICA_UUID}:5"]
    assert [s for s, _ in sql[1:5]] == ["SET GTID_NEXT=%s", "BEGIN", "COMMIT", "SET GTID_NEXT='AUTOMATIC'"]
    clean = e.clean_sql("mysql", f"{PRIMARY_UUID}:1-1000,{REPLICA_UUID}:1-2:5", found[0], f"{PRIMARY_UUID}:1-1000")
    assert clean[-2:] == [("RESET MASTER", ()), ("SET GLOBAL gtid_purged=%s", (f"{PRIMARY_UUID}:1-1000",))]
    assert e.inject_refusal("mysql", found[0], "") == ""


def test_mariadb_repair_sql_and_strict_mode_rule() -> None:
    finding = e.ErrantFinding("127.0.0.1:2", 2, "mariadb", ("0-2-11",), (e.ErrantRange(0, 2, 0, 11),))
    sql = e.inject_sql("mariadb", finding)
    assert sql[0] == ("SET SESSION sql_log_bin=1", ())
    assert sql[1] == ("SET SESSION gtid_domain_id=%s, server_id=%s, gtid_seq_no=%s", (0, 2, 11))
    assert sql[2][0].startswith("DROP TABLE IF EXISTS iotgw_meta.")
    assert e.inject_refusal("mariadb", finding, "0-1-9") == ""
    assert "strict" in e.inject_refusal("mariadb", finding, "0-1-11")  # at or below the domain's maximum
    clean = e.clean_sql("mariadb", "0-1-9,0-2-11", finding, "0-1-9")
    assert clean == [("SET SESSION sql_log_bin=0", ()), ("RESET MASTER", ()),
                     ("SET GLOBAL gtid_binlog_state=%s", ("0-1-9",))]
    # A former primary's legitimate entry for the same server id is restored, not dropped.
    old = e.ErrantFinding("x", 2, "mariadb", ("0-2-101",), (e.ErrantRange(0, 2, 50, 101),))
    assert e.clean_sql("mariadb", "0-2-101,0-1-100", old, "0-2-50,0-1-150")[-1][1] == ("0-2-50,0-1-100",)


# SHOW BINLOG EVENTS as MariaDB 10.11 printed it here, and as MySQL 8.0 prints it (transcribed).
MARIADB_EVENTS = [
    ("mysql-bin.000001", 4, "Format_desc", 2, 256, "Server ver: 10.11.19-MariaDB-0+deb12u1-log, Binlog ver: 4"),
    ("mysql-bin.000001", 256, "Gtid_list", 2, 285, "[]"),
    ("mysql-bin.000001", 1995, "Gtid", 2, 2037, "BEGIN GTID 0-2-10"),
    ("mysql-bin.000001", 2037, "Annotate_rows", 2, 2090, "INSERT INTO iot.t VALUES (3,3)"),
    ("mysql-bin.000001", 2090, "Table_map", 2, 2134, "table_id: 18 (iot.t)"),
    ("mysql-bin.000001", 2134, "Write_rows_v1", 2, 2176, "table_id: 18 flags: STMT_END_F"),
    ("mysql-bin.000001", 2176, "Xid", 2, 2207, "COMMIT /* xid=36 */"),
    ("mysql-bin.000001", 2207, "Gtid", 2, 2249, "GTID 0-2-11"),
    ("mysql-bin.000001", 2249, "Query", 2, 2331, "ANALYZE TABLE iot.t"),
    ("mysql-bin.000001", 2331, "Gtid", 2, 2373, "GTID 0-2-12"),
    ("mysql-bin.000001", 2373, "Query", 2, 2470, "CREATE USER 'x'@'%'"),
]
MYSQL_EVENTS = [
    ("binlog.000003", 4, "Format_desc", 2, 126, "Server ver: 8.0.36, Binlog ver: 4"),
    ("binlog.000003", 126, "Previous_gtids", 2, 197, f"{PRIMARY_UUID}:1-1000"),
    ("binlog.000003", 197, "Gtid", 2, 276, f"SET @@SESSION.GTID_NEXT= '{REPLICA_UUID}:1'"),
    ("binlog.000003", 276, "Query", 2, 351, "BEGIN"),
    ("binlog.000003", 351, "Rows_query", 2, 410, "# INSERT INTO iot.t VALUES (1000)"),
    ("binlog.000003", 410, "Table_map", 2, 458, "table_id: 92 (iot.t)"),
    ("binlog.000003", 458, "Write_rows", 2, 498, "table_id: 92 flags: STMT_END_F"),
    ("binlog.000003", 498, "Xid", 2, 529, "COMMIT /* xid=25 */"),
    ("binlog.000003", 529, "Gtid", 2, 606, f"SET @@SESSION.GTID_NEXT= '{REPLICA_UUID}:2'"),
    ("binlog.000003", 606, "Query", 2, 700, "use `iot`; ANALYZE TABLE t"),
]


@pytest.mark.parametrize("rows,gtids", [(MARIADB_EVENTS, ["0-2-10", "0-2-11", "0-2-12"]),
                                        (MYSQL_EVENTS, [f"{REPLICA_UUID}:1", f"{REPLICA_UUID}:2"])])
def test_binlog_events_are_grouped_and_classified(rows: list, gtids: list[str]) -> None:
    trxs = e.transactions_from_events(rows)
    assert [t.gtid for t in trxs] == gtids
    row_change, analyze = trxs[0], trxs[1]
    assert row_change.changes_rows and row_change.tables == ["iot.t"] and not row_change.harmless
    assert "row changes in iot.t" in row_change.kind
    assert analyze.harmless and not analyze.changes_rows
    assert (row_change.start, row_change.end) in ((1995, 2207), (197, 529))
    if len(trxs) == 3:
        assert not trxs[2].harmless and "schema or accounts" in trxs[2].kind


def test_scan_stops_at_a_file_that_starts_before_every_errant_range() -> None:
    head = [("f", 4, "Format_desc", 1, 256, "x"), ("f", 256, "Gtid_list", 1, 300, "[0-1-9,0-2-3]")]
    assert MARIADB.older_files_hold_none(head, (e.ErrantRange(0, 2, 3, 11),))
    assert not MARIADB.older_files_hold_none(head, (e.ErrantRange(0, 2, 1, 11),))


def test_the_primarys_own_gtids_are_never_errant() -> None:
    # Under load a replica probed after the primary can hold the primary's newer GTIDs: a race, not errant.
    data = json.loads((HERE / "mariadb_errant.json").read_text())
    for raw in data["servers"]:
        if raw["variables"]["server_id"] == 4:
            raw["variables"]["gtid_binlog_state"] = "0-1-30"
            raw["variables"]["gtid_binlog_pos"] = "0-1-30"
    found = e.errant_transactions(load_snapshot(data))
    assert sorted(found.values()) == [["0-2-22"], ["0-3-22"]]
    snap = load_snapshot(_mysql_snapshot("1-2"))
    raw = next(r for r in snap.raw if r.variables["server_id"] == 2)
    raw.variables["gtid_executed"] = f"{PRIMARY_UUID}:1-1005,{REPLICA_UUID}:1-2"
    found = e.find_errant(load_snapshot(json.loads(snap.to_json())))
    assert [f.gtids for f in found] == [(f"{REPLICA_UUID}:1-2",)]


def test_the_repair_is_chosen_or_refused_without_a_server() -> None:
    snap = load_snapshot(HERE / "mariadb_errant.json")
    finding = next(f for f in e.find_errant(snap) if f.server_id == 2)
    s = snap.get(finding.endpoint)
    analyze = e.transactions_from_events(MARIADB_EVENTS)[1]  # ANALYZE TABLE: no data change
    account = e.transactions_from_events(MARIADB_EVENTS)[2]  # CREATE USER: cannot be proven harmless
    low, high = "0-1-5", "0-1-99"  # the primary's domain below / at or above the errant sequence
    assert e.choose_repair(snap, s, finding, [analyze], "auto", False, low) == "inject"
    assert e.choose_repair(snap, s, finding, [analyze], "auto", False, high) == "clean"  # strict mode says no
    assert e.choose_repair(snap, s, finding, [analyze], "auto", True, low) == "clean"  # revert goes with clean
    with pytest.raises(e.ErrantError, match="strict"):
        e.choose_repair(snap, s, finding, [analyze], "inject", False, high)
    with pytest.raises(e.ErrantError, match="only the clean repair"):
        e.choose_repair(snap, s, finding, [analyze], "inject", True, low)
    with pytest.raises(e.ErrantError, match="schema or accounts"):
        e.choose_repair(snap, s, finding, [account], "auto", False, low)
    with pytest.raises(e.ErrantError, match="unknown repair"):
        e.choose_repair(snap, s, finding, [], "rewrite", False, low)
    assert isinstance(e.ErrantError("x"), OpError)
