"""The application as the master holds it: a callable, or a "module:attr"
spec that the master (preload) or each worker imports; imported afresh on HUP
so that a reload serves the code now on disk."""

from __future__ import annotations

import importlib
import logging
import sys

from .errors import AppImportError

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("forker.master")


def load_handler(spec: Any, config: Any, fresh: bool) -> Any:
    """The handler for spec, wrapped for config.interface; raises AppImportError."""
    if isinstance(spec, str):
        from .app import load

        if fresh:
            _forget_module(spec.partition(":")[0].strip())
        app = load(spec)
    else:
        app = _reimport(spec) if fresh else spec
    if getattr(config, "interface", None) is None:
        return app
    from .app import as_handler

    return as_handler(app, config)


def describe(spec: Any) -> str:
    """What process titles call the application."""
    if isinstance(spec, str):
        return spec
    module = getattr(spec, "__module__", None) or type(spec).__module__
    name = getattr(spec, "__qualname__", None) or type(spec).__qualname__
    return f"{module}:{name}"


def _forget_module(name: str) -> None:
    """Drop a module from sys.modules so that the next import reads its file."""
    sys.modules.pop(name, None)
    importlib.invalidate_caches()


def _reimport(app: Any) -> Any:
    """The object named like app, imported again from its module's file; app
    itself when it has no importable name (defined in __main__, a closure...)."""
    module_name = getattr(app, "__module__", None)
    qualname = getattr(app, "__qualname__", None)
    if (not module_name or not qualname or module_name == "__main__" or "<" in qualname
            or module_name.split(".")[0] == "forker"):
        log.info("HUP: %r has no importable name; new workers run the same object", app)
        return app
    _forget_module(module_name)
    try:
        obj: Any = importlib.import_module(module_name)
        for attr in qualname.split("."):
            obj = getattr(obj, attr)
    except Exception as exc:
        raise AppImportError(f"re-importing {module_name}:{qualname} failed: {exc!r}") from exc
    return obj
