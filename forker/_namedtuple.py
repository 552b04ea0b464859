"""typing.NamedTuple's class syntax without importing typing, which would cost
every process about 0.6 MiB that nothing else in a lean worker needs.

    class Address(NamedTuple):
        family: int
        target: str = ""

builds collections.namedtuple("Address", ["family", "target"], defaults=[""])
and copies the class body's methods onto it. Modules import it as

    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from ._namedtuple import NamedTuple

so that mypy checks the fields against typing's own."""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, Tuple

_NOT_COPIED = {"__annotations__", "__module__", "__qualname__", "__dict__", "__weakref__"}


class _NamedTupleMeta(type):
    def __new__(mcls, name: str, bases: Tuple[type, ...], namespace: Dict[str, Any]) -> Any:
        if not bases:  # NamedTuple itself
            return super().__new__(mcls, name, bases, namespace)
        fields = list(namespace.get("__annotations__", {}))
        defaults = [namespace[field] for field in fields if field in namespace]
        make: Any = namedtuple  # called with names known at run time, which mypy refuses
        cls = make(name, fields, defaults=defaults, module=namespace["__module__"])
        for key, value in namespace.items():
            if key not in _NOT_COPIED and key not in fields:
                setattr(cls, key, value)
        cls.__qualname__ = namespace.get("__qualname__", name)
        return cls


class NamedTuple(metaclass=_NamedTupleMeta):
    """Base of a record class: fields by annotation, defaults by value."""
