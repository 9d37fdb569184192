"""The package's import graph has no cycles, and the session options are listed once."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import get_type_hints

import realtime_sda


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (every import statement: TYPE_CHECKING and
    function-level ones included; the lazy string exports of ``__init__`` are not imports)."""
    mods: dict[str, tuple[Path, bool]] = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, (f, is_pkg) in mods.items():
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == root.name and (r := resolve(name)) and r != mod:
                    deps.add(r)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                found.append(frozenset(comp + [v]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    graph = import_graph(Path(realtime_sda.__file__).parent)
    assert "realtime_sda.streaming.stepping" in graph["realtime_sda.streaming.worker"]
    assert len(graph) > 50
    assert "realtime_sda.server.app" not in graph["realtime_sda.server.client"]
    assert cycles(graph) == []


def test_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_open_session_keywords_are_the_options_fields() -> None:
    from realtime_sda.streaming.options import SessionOptionArgs, SessionOptions

    assert set(get_type_hints(SessionOptionArgs)) == {f.name for f in dataclasses.fields(SessionOptions)}
