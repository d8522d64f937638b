"""Record the stored snapshots used by tests/ops/test_plan.py (run by hand: python tests/ops/snapshots/record.py).

A 1+3 sandbox: db3's SQL thread is stopped (it received everything, applied less), db4's IO thread is stopped
earlier (it received less), then db1 is killed: `primary_dead_lagging.json`. `healthy.json` is taken before.
"""

import tempfile
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
        import time

        time.sleep(1.5)  # let the replicas' IO threads notice (only for the recording)
        (HERE / "primary_dead_lagging.json").write_text(discover(eps, ADMIN).to_json())


if __name__ == "__main__":
    main()
