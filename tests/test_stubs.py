"""The stubs forker/_worker.pyi, _parser.pyi, _wsgi.pyi and _asgi.pyi against the compiled
modules: each public function, class and class attribute the module defines is
in its stub, and the stub names nothing the module lacks. (mypy's stubtest says
more, but its verdicts on Cython classes change between mypy versions.)"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Dict, Set

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "forker"


def stub_names(module: str, methods_only: bool = False) -> Dict[str, Set[str]]:
    """{"": top-level names, class name: the names its body defines}; with
    methods_only, a class's annotated (instance) attributes are left out."""
    tree = ast.parse((PACKAGE / f"{module}.pyi").read_text())
    names: Dict[str, Set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[""].add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[""].add(node.target.id)
        if isinstance(node, ast.ClassDef):
            names[node.name] = {
                item.name if isinstance(item, ast.FunctionDef) else item.target.id
                for item in node.body
                if isinstance(item, ast.FunctionDef)
                or not methods_only and isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
            }
    return names


def runtime_names(module_name: str) -> Dict[str, Set[str]]:
    module = importlib.import_module(f"forker.{module_name}")
    names: Dict[str, Set[str]] = {"": set()}
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(value) and value.__module__ == module.__name__:
            public = {attr for attr in vars(value) if not attr.startswith("_")}
            if public or issubclass(value, Exception):
                names[""].add(name)
                names[name] = public
        elif callable(value) and getattr(value, "__module__", None) == module.__name__:
            names[""].add(name)
        elif isinstance(value, (int, str)) and name.isupper():
            names[""].add(name)
    return names


@pytest.mark.parametrize("module", ["_worker", "_parser", "_wsgi", "_asgi"])
def test_stub_matches_the_compiled_module(module):
    stub, runtime = stub_names(module), runtime_names(module)
    assert runtime[""] - stub[""] == set(), f"missing from forker/{module}.pyi"
    for cls, attrs in runtime.items():
        if cls:
            missing = attrs - stub[cls]
            assert not missing, f"{cls} in forker/{module}.pyi lacks {sorted(missing)}"
    for cls, attrs in stub_names(module, methods_only=True).items():
        extra = {a for a in attrs if not a.startswith("_")} - runtime.get(cls, attrs)
        assert not extra, f"forker/{module}.pyi names {sorted(extra)} that {cls or 'the module'} lacks"
