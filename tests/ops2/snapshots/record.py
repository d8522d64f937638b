"""Record the stored snapshots of tests/ops2/test_errant_pure.py (run by hand: python tests/ops2/snapshots/record.py).

A 1+3 sandbox with epoch 1 on db1 and a table. db2 gets an errant row (an INSERT made on it), db3 an errant
`ANALYZE TABLE`; the primary then writes again (db2 and db3 stop with error 1950): `mariadb_errant.json`.
Then db1 is killed: `mariadb_errant_primary_dead.json` (the reference is the other replicas).
"""

import tempfile
import time
from pathlib import Path

from gateway.sandbox import Sandbox
from gateway.topology.conn import Credentials
from gateway.topology.discovery import discover
from gateway.topology.epoch import write_epoch

HERE = Path(__file__).parent
ADMIN = Credentials("root", "", connect_timeout=1, io_timeout=3)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Sandbox.up(Path(tmp) / "sb", replicas=3, broker=False) as sb:
        eps = [f"127.0.0.1:{sb.node(n).port}" for n in sb.db_names()]
        with sb.connect("db1") as conn, conn.cursor() as cur:
            write_epoch(cur, 1, 1, "127.0.0.1", sb.node("db1").port, "record")
            cur.execute("CREATE DATABASE iot")
            cur.execute("CREATE TABLE iot.t (id INT PRIMARY KEY)")
            for i in range(10):
                cur.execute("INSERT INTO iot.t VALUES (%s)", (i,))
        sb.wait_caught_up()
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
    main()
