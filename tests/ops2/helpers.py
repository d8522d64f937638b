"""Shared pieces of the errant/relay/clone/group live tests (real sandboxes)."""

from __future__ import annotations

from gateway.sandbox import Sandbox
from gateway.topology.conn import Credentials
from gateway.topology.discovery import discover
from gateway.topology.model import Snapshot

ADMIN = Credentials("root", "", connect_timeout=2, io_timeout=20)


def ep(sb: Sandbox, name: str) -> str:
    return f"127.0.0.1:{sb.node(name).port}"


def snap(sb: Sandbox) -> Snapshot:
    return discover([ep(sb, n) for n in sb.db_names()], ADMIN)


def sql(sb: Sandbox, name: str, *statements: str) -> list:
    """Run statements on `name` as root; the last one's rows."""
    with sb.connect(name, read_timeout=40) as conn, conn.cursor() as cur:
        for s in statements:
            cur.execute(s)
        return list(cur.fetchall())


def one(sb: Sandbox, name: str, statement: str):
    return sql(sb, name, statement)[0][0]


def data_consistency(sb: Sandbox, names: list[str], primary: str, table: str = "iot.t") -> tuple[int, str]:
    """Every server in `names` applied the primary's position and holds the same rows (count, CHECKSUM)."""
    pos = one(sb, primary, "SELECT @@gtid_binlog_pos")
    seen = {}
    for name in names:
        if name != primary:
            assert one(sb, name, f"SELECT MASTER_GTID_WAIT('{pos}', 30)") == 0, f"{name} did not apply {pos}"
        count = one(sb, name, f"SELECT COUNT(*) FROM {table}")
        seen[name] = (int(count), str(sql(sb, name, f"CHECKSUM TABLE {table}")[0][1]))
    assert len(set(seen.values())) == 1, f"servers differ: {seen}"
    return seen[primary]


def wait_sql_error(sb: Sandbox, name: str, errno: int, timeout: float = 20) -> None:
    """Wait until `name`'s SQL thread stopped with `errno`."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sb.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            cols = [c[0] for c in cur.description]
            row = dict(zip(cols, cur.fetchone(), strict=True))
        if int(row["Last_SQL_Errno"]) == errno:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not stop with error {errno} within {timeout} s")


class RowLoad:
    """A thread writing to `iot.t` on the primary: inserts, updates and deletes, until stopped."""

    def __init__(self, sb: Sandbox, primary: str = "db1", period: float = 0.003) -> None:
        import threading

        self.sb, self.primary, self.period = sb, primary, period
        self.ops = {"insert": 0, "update": 0, "delete": 0}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="row-load", daemon=True)

    def start(self) -> RowLoad:
        self._thread.start()
        return self

    def _run(self) -> None:
        import time

        i = 0
        with self.sb.connect(self.primary) as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                i += 1
                try:
                    cur.execute("INSERT INTO iot.t (id, v) VALUES (%s, %s)", (100_000 + i, i))
                    self.ops["insert"] += 1
                    if i % 3 == 0:
                        cur.execute("UPDATE iot.t SET v = v + 1000 WHERE id = %s", (100_000 + i - 1,))
                        self.ops["update"] += 1
                    if i % 5 == 0:
                        cur.execute("DELETE FROM iot.t WHERE id = %s", (100_000 + i - 4,))
                        self.ops["delete"] += 1
                except Exception as exc:  # recorded: the test asserts there were none
                    self.errors.append(repr(exc))
                    return
                time.sleep(self.period)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(10)
        return self.ops
