"""Every flavour statement lives in the dialect: no SQL sent from elsewhere names a flavour's words.

The check reads the source with `ast`: every string (or f-string part) given to `execute`/`executemany`, and
every module-level constant that is a statement, outside `gateway/topology/dialect.py`. Prose (docstrings, log and step
messages) may name the statements; SQL may not.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
DIALECT = GATEWAY / "topology" / "dialect.py"

FLAVOUR_SQL = re.compile(
    r"SHOW\s+(ALL\s+)?(SLAVE|REPLICA|MASTER|BINARY|BINLOG)|CHANGE\s+(MASTER|REPLICATION)"
    r"|(START|STOP|RESET)\s+(ALL\s+)?(SLAVE|REPLICA)|read_only|gtid_|MASTER_GTID_WAIT|WAIT_FOR_EXECUTED",
    re.IGNORECASE,
)

STATEMENT = re.compile(r"\s*(SELECT|SET|SHOW|CHANGE|START|STOP|RESET|INSTALL)\b", re.IGNORECASE)


def _strings(node: ast.AST) -> list[str]:
    """The literal text inside an expression (constants, f-string parts, concatenations, tuples)."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _offending_sql(path: Path, root: Path = GATEWAY.parent) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        texts: list[str] = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("execute", "executemany") and node.args:
            texts = _strings(node.args[0])
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node in tree.body and node.value is not None:
            texts = [t for t in _strings(node.value) if STATEMENT.match(t)]
        found += [f"{path.relative_to(root)}:{node.lineno}: {t!r}" for t in texts if FLAVOUR_SQL.search(t)]
    return found


def test_no_flavour_statement_outside_the_dialect() -> None:
    offending = [hit for path in sorted(GATEWAY.rglob("*.py")) if path != DIALECT for hit in _offending_sql(path)]
    assert offending == []


def test_the_check_finds_a_statement_written_inline(tmp_path: Path) -> None:
    # The check itself must be able to fail: an inline statement of either kind is reported.
    sample = tmp_path / "sample.py"
    sample.write_text('SQL = "SHOW SLAVE STATUS"\n\ndef f(cur):\n    cur.execute(f"SET GLOBAL read_only={1}")\n')
    assert len(_offending_sql(sample, tmp_path)) == 2
