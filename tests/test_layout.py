"""The layout of forker's own modules: no import cycle among them, the
compiled ones included (their imports and cimports, and the .pxi files a .pyx
includes), lazy imports inside functions counted as much as those at the top,
only imports for type checkers left out. A part imports what it uses and is
handed the rest (docs/ARCHITECTURE.md, "The worker's Python side")."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parent.parent / "forker"


def python_imports(path: Path) -> Set[str]:
    """forker's modules that the module at path imports, anywhere in it but
    under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            skipped.update(id(child) for item in node.body for child in ast.walk(item))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("forker."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("forker."))
    return found


CYTHON_IMPORT = re.compile(
    r"^\s*(?:from\s+(?:\.|forker\.)(\w+)\s+c?import|c?import\s+forker\.(\w+)|include\s+\"([^\"]+)\")",
    re.M)


def cython_imports(path: Path) -> Set[str]:
    """forker's modules that a .pyx or .pxd imports or cimports, with what the
    .pxi files it includes import."""
    found = set()
    for match in CYTHON_IMPORT.finditer(path.read_text()):
        module, imported, included = match.groups()
        if included:
            found |= cython_imports(path.parent / included)
        else:
            found.add(module or imported)
    return found


def import_graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        graph.setdefault(path.stem, set()).update(python_imports(path))
    for pattern in ("*.pyx", "*.pxd"):
        for path in PACKAGE.glob(pattern):
            graph.setdefault(path.stem, set()).update(cython_imports(path))
    for name, edges in graph.items():
        edges.discard(name)  # a .pyx cimporting its own .pxd
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    found = []
    state: Dict[str, int] = {}

    def visit(node: str, path: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_graph_sees_the_compiled_modules():
    graph = import_graph()
    assert "_worker" in graph["_wsgi"]  # cimport of Request and Reply
    assert "_csrc" in graph["_worker"]  # through its .pxd and the .pxi files
    assert "errors" in graph["_worker"]  # imported in forker/engine/*.pxi
    assert "_worker" in graph["tls"]  # a function-level import


def test_no_import_cycle_among_forkers_modules():
    assert cycles(import_graph()) == []


def reached(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    found: Set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in found:
                found.add(nxt)
                todo.append(nxt)
    return found


# The master's own modules (docs/ARCHITECTURE.md, "The master's modules"), and
# the worker's: the master imports the worker's, never the other way.
MASTERS = {"master", "child", "signals", "upgrade", "metrics"}
WORKERS = {"worker", "_worker", "_wsgi", "_asgi", "asgi", "wsgi", "app"}


def test_the_workers_modules_never_reach_the_masters():
    graph = import_graph()
    assert {name: reached(graph, name) & MASTERS for name in WORKERS} == \
        {name: set() for name in WORKERS}
    assert {name for name, edges in graph.items() if "master" in edges} == {"__init__", "cli"}
