"""GTID positions of both server flavours, parsed into plain values that can be compared.

MariaDB writes a position as `domain-server-seq` per replication domain (`0-1-345,1-2-10`): within a domain
the sequence only grows (with `gtid_strict_mode`), so "has a replica applied X" is a per-domain `seq >=`.
The server id is kept for errant-transaction checks, but MariaDB's own `MASTER_GTID_WAIT` ignores it (it
compares sequence numbers per domain only), which is why the writer tags its tokens with the topology epoch too.
A MariaDB *binlog state* (`@@gtid_binlog_state`, `MariaBinlogState`) keeps the last sequence number of every
server id in every domain: that is what tells "the primary had this GTID" apart from "the primary reached the
same sequence number with its own writes".

MySQL 8 writes a set of intervals per source UUID (`3e11fa47-…:1-5:7,4f…:1-3`): "applied" is set inclusion
and a distance is the number of transactions in one set and not in the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TypeVar


class GtidError(ValueError):
    """Text that is not a GTID position of the expected flavour (or two flavours compared)."""


V = TypeVar("V", bound="GtidValue")


class GtidValue(ABC):
    """What a server says about the transactions it holds, in one flavour's terms; values of one flavour combine
    and compare only with values of the same flavour (`GtidError` otherwise)."""

    @abstractmethod
    def merged(self: V, other: GtidValue) -> V:
        """Everything either value holds."""

    def _same(self: V, other: GtidValue) -> V:
        if not isinstance(other, type(self)):
            raise GtidError(f"cannot combine {type(self).__name__} with {type(other).__name__}")
        return other


class Position(GtidValue):
    """A GTID position: `contains` says "has applied", `distance_to` counts the transactions between."""

    @abstractmethod
    def contains(self, other: Position) -> bool:
        """True if everything `other` holds is reached here."""

    @abstractmethod
    def distance_to(self, ahead: Position) -> int:
        """How many transactions `ahead` has that this position has not."""


@dataclass(frozen=True, order=True)
class MariaGtid:
    """One MariaDB GTID `domain-server-seq`."""

    domain: int
    server_id: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.seq}"


def _maria_gtids(text: str | None) -> list[MariaGtid]:
    """Every `domain-server-seq` of a comma-separated MariaDB list (newlines ignored; empty gives none)."""
    out = []
    for part in (text or "").replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        pieces = part.split("-")
        if len(pieces) != 3 or not all(p.isdigit() for p in pieces):
            raise GtidError(f"not a MariaDB GTID: {part!r} in {text!r}")
        out.append(MariaGtid(*(int(p) for p in pieces)))
    return out


@dataclass(frozen=True)
class MariaPos(Position):
    """A MariaDB GTID position: at most one GTID per domain (`@@gtid_slave_pos`, `@@gtid_binlog_pos`, …)."""

    gtids: tuple[MariaGtid, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> MariaPos:
        """Parse `0-1-345,1-2-10` (empty or None gives the empty position)."""
        by_domain: dict[int, MariaGtid] = {}
        for g in _maria_gtids(text):
            old = by_domain.get(g.domain)
            if old is None or g.seq > old.seq:
                by_domain[g.domain] = g
        return cls(tuple(sorted(by_domain.values())))

    def seq(self, domain: int) -> int:
        """The sequence number reached in `domain` (0 if the domain is absent)."""
        for g in self.gtids:
            if g.domain == domain:
                return g.seq
        return 0

    def contains(self, other: Position) -> bool:
        """True if every domain of `other` is reached here (sequence numbers only, like MASTER_GTID_WAIT)."""
        return all(self.seq(g.domain) >= g.seq for g in self._same(other).gtids)

    def distance_to(self, ahead: Position) -> int:
        """How many transactions `ahead` has that this position has not (summed over domains)."""
        return sum(max(0, g.seq - self.seq(g.domain)) for g in self._same(ahead).gtids)

    def merged(self, other: GtidValue) -> MariaPos:
        """The per-domain maximum of both positions."""
        return MariaPos.parse(f"{self},{self._same(other)}")

    def __str__(self) -> str:
        return ",".join(str(g) for g in self.gtids)

    def __bool__(self) -> bool:
        return bool(self.gtids)


@dataclass(frozen=True)
class MysqlGtidSet(Position):
    """A MySQL GTID set: per source UUID, sorted disjoint closed intervals of transaction numbers."""

    sources: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> MysqlGtidSet:
        """Parse `uuid:1-5:7,uuid2:1-3` (MySQL prints newlines after the commas)."""
        acc: dict[str, list[tuple[int, int]]] = {}
        for part in (text or "").replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            uuid, *ranges = part.split(":")
            if len(uuid) != 36 or not ranges:
                raise GtidError(f"not a MySQL GTID set member: {part!r}")
            for r in ranges:
                lo, _, hi = r.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()):
                    raise GtidError(f"bad interval {r!r} in {part!r}")
                acc.setdefault(uuid.lower(), []).append((int(lo), int(hi or lo)))
        return cls(tuple((u, _normalise(iv)) for u, iv in sorted(acc.items())))

    def _intervals(self, uuid: str) -> tuple[tuple[int, int], ...]:
        for u, iv in self.sources:
            if u == uuid:
                return iv
        return ()

    def count(self) -> int:
        """Number of transactions in the set."""
        return sum(hi - lo + 1 for _, iv in self.sources for lo, hi in iv)

    def minus(self, other: MysqlGtidSet) -> MysqlGtidSet:
        """Transactions here and not in `other` (like GTID_SUBTRACT)."""
        out = []
        for uuid, iv in self.sources:
            rest = _subtract(iv, other._intervals(uuid))
            if rest:
                out.append((uuid, rest))
        return MysqlGtidSet(tuple(out))

    def contains(self, other: Position) -> bool:
        """True if `other` is a subset of this set (like GTID_SUBSET(other, self))."""
        return not self._same(other).minus(self).sources

    def distance_to(self, ahead: Position) -> int:
        """How many transactions `ahead` has that this set has not."""
        return self._same(ahead).minus(self).count()

    def merged(self, other: GtidValue) -> MysqlGtidSet:
        """The union of both sets."""
        return MysqlGtidSet.parse(f"{self},{self._same(other)}")

    def __str__(self) -> str:
        return ",".join(u + "".join(f":{lo}" if lo == hi else f":{lo}-{hi}" for lo, hi in iv) for u, iv in self.sources)

    def __bool__(self) -> bool:
        return bool(self.sources)


def _normalise(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _subtract(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in a:
        pieces = [(lo, hi)]
        for blo, bhi in b:
            nxt = []
            for plo, phi in pieces:
                if bhi < plo or blo > phi:
                    nxt.append((plo, phi))
                    continue
                if plo < blo:
                    nxt.append((plo, blo - 1))
                if phi > bhi:
                    nxt.append((bhi + 1, phi))
            pieces = nxt
        out.extend(pieces)
    return tuple(out)


@dataclass(frozen=True)
class GtidRange:
    """MariaDB: the transactions of one server id in one domain with sequence numbers in (after, upto]."""

    domain: int
    server_id: int
    after: int  # what the reference holds for (domain, server id); 0 if nothing
    upto: int

    @property
    def last(self) -> str:
        return str(MariaGtid(self.domain, self.server_id, self.upto))

    def covers(self, gtid: MariaGtid) -> bool:
        return (gtid.domain, gtid.server_id) == (self.domain, self.server_id) and self.after < gtid.seq <= self.upto


@dataclass(frozen=True)
class MariaBinlogState(GtidValue):
    """MariaDB `@@gtid_binlog_state` (`0-1-9,0-2-11`): the last sequence number per (domain, server id)."""

    last: tuple[tuple[tuple[int, int], int], ...] = ()  # ((domain, server id), seq), sorted by key

    @classmethod
    def parse(cls, text: str | None) -> MariaBinlogState:
        """Parse a binlog state (also a `Gtid_list` event's text without its brackets); empty gives empty."""
        acc: dict[tuple[int, int], int] = {}
        for g in _maria_gtids(text):
            acc[(g.domain, g.server_id)] = max(g.seq, acc.get((g.domain, g.server_id), 0))
        return cls.of(acc)

    @classmethod
    def of(cls, entries: dict[tuple[int, int], int]) -> MariaBinlogState:
        return cls(tuple(sorted(entries.items())))

    def as_dict(self) -> dict[tuple[int, int], int]:
        return dict(self.last)

    def seq(self, domain: int, server_id: int) -> int:
        """The last sequence number of `server_id` in `domain` (0 if it never wrote there)."""
        return self.as_dict().get((domain, server_id), 0)

    def holds(self, gtid: MariaGtid) -> bool:
        """True if this binlog had `gtid`: the same server id reached at least its sequence number."""
        return (gtid.domain, gtid.server_id) in self.as_dict() and self.seq(gtid.domain, gtid.server_id) >= gtid.seq

    def domain_top(self, domain: int) -> int:
        """The highest sequence number of `domain` over every server id (what strict mode compares with)."""
        return max((n for (d, _s), n in self.last if d == domain), default=0)

    def beyond(self, reference: MariaBinlogState, ignore_server_ids: frozenset[int] = frozenset()) -> list[GtidRange]:
        """Per (domain, server id), what this state has beyond `reference`."""
        ref = reference.as_dict()
        return [GtidRange(d, s, ref.get((d, s), 0), n) for (d, s), n in self.last
                if s not in ignore_server_ids and n > ref.get((d, s), 0)]

    def merged(self, other: GtidValue) -> MariaBinlogState:
        """The per-(domain, server id) maximum of both states."""
        acc = self.as_dict()
        for k, n in self._same(other).last:
            acc[k] = max(n, acc.get(k, 0))
        return MariaBinlogState.of(acc)

    def rolled_back(self, ranges: tuple[GtidRange, ...], reference: MariaBinlogState) -> MariaBinlogState:
        """This state with each range's (domain, server id) set back to what `reference` holds (or dropped)."""
        acc, ref = self.as_dict(), reference.as_dict()
        for r in ranges:
            key = (r.domain, r.server_id)
            if key in ref:
                acc[key] = ref[key]
            else:
                acc.pop(key, None)
        return MariaBinlogState.of(acc)

    def __str__(self) -> str:
        """Ordered so each domain's highest GTID comes last (the server reads it as the domain's position)."""
        return ",".join(f"{d}-{s}-{n}" for (d, s), n in sorted(self.last, key=lambda kv: (kv[0][0], kv[1])))

    def __bool__(self) -> bool:
        return bool(self.last)


# What a server's binlog holds, as errant checks compare it: MariaDB's binlog state, MySQL's executed set.
BinlogState = MariaBinlogState | MysqlGtidSet


def parse_position(flavor: str, text: str | None) -> Position:
    """Parse a GTID position of `flavor` ("mariadb" or "mysql")."""
    return MysqlGtidSet.parse(text) if flavor == "mysql" else MariaPos.parse(text)
