"""The topology epoch: the authority on which server is the primary.

Every promotion (our failover and switchover, or a person's `iotgw topology promote`) first inserts a row
with a higher epoch naming the promoted server, on that server, before opening it for writes; replication
carries the row to everyone who follows it. The writer trusts only the writable server that holds the
highest epoch among the reachable servers and is named by it (`analysis.writer_primary`), so an old primary
that comes back writable holds an older epoch and is refused.

Accounts: a promotion writes the row while the server is still `read_only` (publish first, open second), so
it needs an admin account (READ_ONLY ADMIN / SUPER); the writer account would get error 1290 there, which is
the point of making it a plain account. Adoption (epoch 1 on a topology that has none) is done by the
writer itself, with its own account, and only on a server that is writable: a fenced server refuses it.
"""

from __future__ import annotations

from typing import Any

from gateway.topology.dialect import META_SCHEMA

EPOCH_TABLE_SQL = f"""CREATE TABLE IF NOT EXISTS `{META_SCHEMA}`.epoch (
  epoch BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  server_id INT UNSIGNED NOT NULL,
  host VARCHAR(255) NOT NULL,
  port INT UNSIGNED NOT NULL,
  promoted_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  promoted_by VARCHAR(64) NOT NULL DEFAULT ''
) ENGINE=InnoDB"""


def ensure_schema(cur: Any) -> None:
    """Create `iotgw_meta.epoch` if missing (replicated like any write on the primary).

    Only when missing: `CREATE … IF NOT EXISTS` is binlogged even when the object exists, and the epoch row
    must be the first transaction a newly promoted server writes (a replica holding anything of the new
    primary then holds its epoch: the writer's confirmation check relies on it).
    """
    cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'epoch'",
                (META_SCHEMA,))
    row = cur.fetchone()
    if int(row[0] if isinstance(row, tuple | list) else next(iter(row.values()))):
        return
    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{META_SCHEMA}`")
    cur.execute(EPOCH_TABLE_SQL)


def write_epoch(cur: Any, epoch: int, server_id: int, host: str, port: int, by: str) -> bool:
    """Insert epoch row `epoch` naming the server; False if that epoch number already exists there.

    INSERT IGNORE: two gateways adopting the same primary at once both write epoch 1 naming the same
    server, and the second insert is a harmless no-op.
    """
    ensure_schema(cur)
    cur.execute(f"INSERT IGNORE INTO `{META_SCHEMA}`.epoch (epoch, server_id, host, port, promoted_by) "
                "VALUES (%s, %s, %s, %s, %s)", (epoch, server_id, host, port, by[:64]))
    return cur.rowcount == 1
