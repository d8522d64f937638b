"""Record the stored snapshots of tests/ops (run by hand: python tests/ops/snapshots/record.py).

Each recording starts a 1+3 sandbox with epoch 1 on db1 and a table `iot.t`, then:
- plan (tests/ops/test_plan.py): `healthy.json`; db4's IO thread is stopped (it received less), db3's SQL
  thread later (it received everything, applied less), then db1 is killed: `primary_dead_lagging.json`;
- errant (tests/ops/test_errant_pure.py): db2 gets an errant row (an INSERT made on it), db3 an errant
  `ANALYZE TABLE`; the primary then writes again (db2 and db3 stop with error 1950): `mariadb_errant.json`;
  then db1 is killed: `mariadb_errant_primary_dead.json` (the reference is the other replicas).
"""

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.sandbox import Sandbox
from gateway.topology.conn import Credentials
from gateway.topology.discovery import discover
from gateway.topology.epoch import write_epoch

HERE = Path(__file__).parent
ADMIN = Credentials("root", "", connect_timeout=1, io_timeout=3)


def _recording(scenario: Callable[[Sandbox, list[str]], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp, Sandbox.up(Path(tmp) / "sb", replicas=3, broker=False) as sb:
        eps = [sb.endpoint(n) for n in sb.db_names()]
        with sb.connect("db1") as conn, conn.cursor() as cur:
            write_epoch(cur, 1, 1, "127.0.0.1", sb.node("db1").port, "record")
            cur.execute("CREATE DATABASE iot")
            cur.execute("CREATE TABLE iot.t (id INT PRIMARY KEY)")
            for i in range(10):
                cur.execute("INSERT INTO iot.t VALUES (%s)", (i,))
        sb.wait_caught_up()
        scenario(sb, eps)


def plan(sb: Sandbox, eps: list[str]) -> None:
    (HERE / "healthy.json").write_text(discover(eps, ADMIN).to_json())
    with sb.connect("db4") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE IO_THREAD")
    with sb.connect("db1") as conn, conn.cursor() as cur:
        for i in range(10, 15):
            cur.execute("INSERT INTO iot.t VALUES (%s)", (i,))
    with sb.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE SQL_THREAD")
    with sb.connect("db1") as conn, conn.cursor() as cur:
        for i in range(15, 20):
            cur.execute("INSERT INTO iot.t VALUES (%s)", (i,))
    with sb.connect("db2") as conn, conn.cursor() as cur:
        cur.execute("SELECT MASTER_GTID_WAIT(%s, 10)", ("0-1-30",))
    sb.kill("db1")
    time.sleep(1.5)  # let the replicas' IO threads notice (only for the recording)
    (HERE / "primary_dead_lagging.json").write_text(discover(eps, ADMIN).to_json())


def errant(sb: Sandbox, eps: list[str]) -> None:
    with sb.connect("db2") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO iot.t VALUES (1000)")
    with sb.connect("db3") as conn, conn.cursor() as cur:
        cur.execute("ANALYZE TABLE iot.t")
    with sb.connect("db1") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO iot.t VALUES (10)")
    with sb.connect("db4") as conn, conn.cursor() as cur:
        cur.execute("SELECT MASTER_GTID_WAIT(%s, 10)", ("0-1-30",))
    time.sleep(1.0)  # let db2 and db3 hit error 1950 (only for the recording)
    (HERE / "mariadb_errant.json").write_text(discover(eps, ADMIN).to_json())
    sb.kill("db1")
    time.sleep(1.5)  # let the replicas' IO threads notice (only for the recording)
    (HERE / "mariadb_errant_primary_dead.json").write_text(discover(eps, ADMIN).to_json())


if __name__ == "__main__":
    _recording(plan)
    _recording(errant)
