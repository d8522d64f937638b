"""The import graph of `gateway/` flows one way and has no cycles.

Layers, highest first: the command line; the demo; the sandbox (test and demo servers); the service; the
operations, the status model and the ingest/drain path; the writer (`sinks`) and the clients; the topology layer, the spool, the
broker connection and metrics; protocol, config, crash points and sizing; the native (C) fast paths at the bottom. A module may import only from
its own package or from a lower layer. Imports inside functions hide cycles, so at most a few are allowed,
each with a one-line reason on its line.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

LAYERS: dict[str, int] = {
    "gateway.cli": 9,
    "gateway.demo": 8, "gateway.demo_ha": 8,
    "gateway.sandbox": 7,
    "gateway.service": 6,
    "gateway.ops": 5, "gateway.status": 5, "gateway.drain": 5, "gateway.ingest": 5, "gateway.replay": 5, "gateway.simulator": 5,
    "gateway.acks": 5,
    "gateway.sinks": 4, "gateway.client": 4,
    "gateway.topology": 3, "gateway.spool": 3, "gateway.mqttconn": 3, "gateway.metrics": 3,
    "gateway.devices": 2, "gateway.device_status": 2,
    "gateway.protocol": 1, "gateway.config": 1, "gateway.backoff": 1, "gateway.crashpoints": 1, "gateway.sizing": 1,
    "gateway.native": 0,
}
MAX_FUNCTION_LEVEL = 10


def _module(path: Path) -> str:
    parts = list(path.relative_to(GATEWAY.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(imported gateway module, statement, inside a function) for every import of `path`."""
    module = _module(path)
    tree = ast.parse(path.read_text())
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                   for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            # `from gateway import crashpoints` imports the module gateway.crashpoints
            targets = [f"{name}.{a.name}" if name == "gateway" else name for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        out += [(t, node, id(node) in in_function) for t in targets if t.startswith("gateway")]
    return out


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _sources() -> list[Path]:
    return sorted(GATEWAY.rglob("*.py"))


def test_imports_flow_one_way_between_layers() -> None:
    wrong = []
    for path in _sources():
        mine = _package(_module(path))
        if mine == "gateway":
            continue  # the package itself re-exports the public API (gateway.connect)
        assert mine in LAYERS, f"{mine}: new top-level module: give it a layer here"
        for target, node, _ in _imports(path):
            theirs = _package(target)
            if theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
                wrong.append(f"{path.relative_to(GATEWAY.parent)}:{node.lineno}: {mine} imports {theirs}")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    modules = {_module(p) for p in _sources()}
    for path in _sources():
        for target, _, _ in _imports(path):
            # `from gateway.x import name` may name a module gateway.x.name or a function of gateway.x
            graph[_module(path)].add(target if target in modules else target.rpartition(".")[0])
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if n == m or n not in modules or n in _parents(m):
                continue  # a package's __init__ importing its own modules is not a cycle of the graph
            if state.get(n) == 1:
                cycles.append(" -> ".join([*path[path.index(n):], n]))
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def _parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_few_function_level_imports_each_with_a_reason() -> None:
    found = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for _target, node, inside in _imports(path):
            if inside:
                line = lines[node.lineno - 1]
                found.append((f"{path.relative_to(GATEWAY.parent)}:{node.lineno}", "#" in line))
    assert len(found) <= MAX_FUNCTION_LEVEL, found
    assert [where for where, reasoned in found if not reasoned] == []


def test_topology_ops_and_clients_never_import_click_or_the_sandbox() -> None:
    offending = []
    for folder in ("topology", "ops", "client"):
        for path in sorted((GATEWAY / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offending += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "click"
                              or n.startswith("gateway.sandbox")]
    assert offending == []
