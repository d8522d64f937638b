"""Send quarantined messages through validation again, after a fix (`iotgw spool replay`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.protocol import Rejected, parse_frame, parse_reading, parse_topic
from gateway.spool import Spool, StoredReading


@dataclass
class ReplayResult:
    accepted: int = 0
    duplicates: int = 0
    still_rejected: int = 0


def replay_quarantine(spool_path: str | Path, prefix: str, *, reason: str | None = None,
                      ids: list[int] | None = None) -> ReplayResult:
    """Re-validate quarantined entries; those that pass move into the spool, the others stay with their reason."""
    spool = Spool(spool_path)
    result = ReplayResult()
    try:
        sql = "SELECT id, source, topic, site, raw, received_ms FROM quarantine"
        where, args = [], []
        if reason:
            where.append("reason = ?")
            args.append(reason)
        if ids:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if where:
            sql += " WHERE " + " AND ".join(where)
        entries = spool.conn.execute(sql + " ORDER BY id", args).fetchall()
        rows: list[StoredReading] = []
        moved, seen = [], set()
        for qid, source, topic, site, raw, received_ms in entries:
            if isinstance(raw, str):  # edited by hand with the sqlite3 shell: text instead of a blob
                raw = raw.encode()
            try:
                if source == "mqtt":
                    site, device, _kind = parse_topic(topic, prefix)
                    r = parse_reading(raw, site=site, received_ms=received_ms, topic_device=device)
                else:
                    framed = parse_frame(raw.decode("utf-8"))
                    if framed is None or framed[0] != "R":
                        raise Rejected("bad_frame")
                    r = parse_reading(framed[1].encode(), site=site, received_ms=received_ms)
            except (Rejected, UnicodeDecodeError):
                result.still_rejected += 1
                continue
            moved.append(qid)
            ident = (r.device, r.node, r.boot, r.seq)
            if ident in seen:
                result.duplicates += 1
                continue
            seen.add(ident)
            rows.append(StoredReading.of(r))
        if moved:
            spool.insert_replayed(rows, moved)
        result.accepted = len(rows)
    finally:
        spool.close()
    return result
