"""GTID positions of both flavours: parsing, containment, distance."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.topology.gtid import GtidError, MariaPos, MysqlGtidSet

A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
B = "4f2b1c55-71ca-11e1-9e33-c80aa9429563"


def test_mariadb_position_per_domain():
    pos = MariaPos.parse("0-1-345,1-2-10")
    assert pos.seq(0) == 345 and pos.seq(1) == 10 and pos.seq(7) == 0
    assert str(pos) == "0-1-345,1-2-10"
    assert MariaPos.parse("") == MariaPos() and not MariaPos.parse(None)


def test_mariadb_contains_ignores_server_id_like_master_gtid_wait():
    # The trap the writer guards against with its epoch check: 0-2-N "covers" a lost 0-1-N.
    assert MariaPos.parse("0-2-100").contains(MariaPos.parse("0-1-100"))
    assert not MariaPos.parse("0-1-99").contains(MariaPos.parse("0-1-100"))
    assert not MariaPos.parse("0-1-500").contains(MariaPos.parse("0-1-1,1-1-1"))


def test_mariadb_distance_and_merge():
    assert MariaPos.parse("0-1-90").distance_to(MariaPos.parse("0-1-100,1-3-5")) == 15
    assert MariaPos.parse("0-1-120").distance_to(MariaPos.parse("0-1-100")) == 0
    assert str(MariaPos.parse("0-1-5,1-1-9").merged(MariaPos.parse("0-2-7"))) == "0-2-7,1-1-9"


@pytest.mark.parametrize("bad", ["0-1", "a-b-c", "0-1-2-3", f"{A}:1-5"])
def test_mariadb_rejects_garbage(bad):
    with pytest.raises(GtidError):
        MariaPos.parse(bad)


def test_mysql_sets_with_newlines_and_gaps():
    s = MysqlGtidSet.parse(f"{A}:1-5:7-9,\n{B}:1-3")
    assert s.count() == 11
    assert str(s) == f"{A}:1-5:7-9,{B}:1-3"
    assert s.contains(MysqlGtidSet.parse(f"{A}:2-4"))
    assert not s.contains(MysqlGtidSet.parse(f"{A}:6"))
    assert MysqlGtidSet.parse(f"{A}:1-3").distance_to(s) == 8
    assert str(MysqlGtidSet.parse(f"{A}:1-3").merged(MysqlGtidSet.parse(f"{A}:4-6"))) == f"{A}:1-6"


intervals = st.lists(st.tuples(st.integers(1, 60), st.integers(0, 8)), max_size=6)


@given(intervals, intervals)
def test_mysql_set_arithmetic_matches_python_sets(a, b):
    def text(iv):
        return f"{A}:" + ":".join(f"{lo}-{lo + n}" for lo, n in iv) if iv else ""

    def members(iv):
        return {x for lo, n in iv for x in range(lo, lo + n + 1)}

    sa, sb = MysqlGtidSet.parse(text(a)), MysqlGtidSet.parse(text(b))
    assert sa.count() == len(members(a))
    assert sa.minus(sb).count() == len(members(a) - members(b))
    assert sa.contains(sb) == (members(b) <= members(a))
    assert sa.merged(sb).count() == len(members(a) | members(b))


def test_flavours_never_combine():
    from gateway.topology.gtid import GtidError, MariaBinlogState

    maria, mysql = MariaPos.parse("0-1-5"), MysqlGtidSet.parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")
    for a, b in ((maria, mysql), (mysql, maria)):
        with pytest.raises(GtidError, match="cannot combine"):
            a.contains(b)
        with pytest.raises(GtidError, match="cannot combine"):
            a.merged(b)
    with pytest.raises(GtidError, match="cannot combine"):
        MariaBinlogState.parse("0-1-5").merged(maria)
    assert maria.merged(MariaPos.parse("0-1-7,1-2-3")).contains(MariaPos.parse("1-2-3"))
