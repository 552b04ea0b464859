"""Find the application named on the command line.

    load("myproject.wsgi:application")
    load("myapp:create_app()")               # a factory, called once
    load("myapp:create_app('prod', debug=False)")  # literal arguments only
    load("myapp")                            # its `application`, else its `app`

Errors are AppImportError with a message naming what failed.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from keyword import iskeyword

from .errors import AppImportError

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    import ast


def greeting(request: Any) -> bytes:
    """The built-in application served when none is named."""
    return b"greeting!!!"


def load(spec: str, chdir: Optional[str] = None) -> Any:
    """Import the module of `spec` and return the object it names."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppImportError(f"cannot change directory to {chdir!r}: {exc.strerror}") from None
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # `forker mod:app` finds mod.py here, as `python -m` would

    module_name, sep, expression = spec.partition(":")
    module_name = module_name.strip()
    if not module_name or (sep and not expression.strip()):
        raise AppImportError(f"{spec!r}: expected MODULE, MODULE:NAME or MODULE:FACTORY(ARGS)")
    module = _import(module_name)
    if sep:
        return _evaluate(module, module_name, expression.strip())
    for name in ("application", "app"):
        obj = getattr(module, name, None)
        if obj is not None:
            return _check_callable(obj, f"{module_name}:{name}")
    raise AppImportError(f"module {module_name!r} has neither an `application` nor an `app`; "
                         f"name it: {module_name}:NAME")


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppImportError(f"no module named {name!r} (looked in {os.getcwd()})") from None
        raise AppImportError(f"importing {name!r} failed:\n{_traceback()}") from exc
    except Exception as exc:
        raise AppImportError(f"importing {name!r} failed:\n{_traceback()}") from exc


def _traceback() -> str:
    return "".join(traceback.format_exc()).rstrip()


def _evaluate(module: Any, module_name: str, expression: str) -> Any:
    where = f"{module_name}:{expression}"
    names = expression.split(".")
    if all(name.isidentifier() and not iskeyword(name) for name in names):
        return _check_callable(_attribute(module, module_name, names, where), where)
    import ast  # only for a factory call: a worker that loads app:NAME never needs it

    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise AppImportError(f"{where!r}: not a name or a call with literal arguments") from None
    call: Optional[ast.Call] = None
    if isinstance(node, ast.Call):
        call, node = node, node.func
    path = _dotted(node)
    if path is None:
        raise AppImportError(f"{where!r}: not a name or a call with literal arguments")
    obj = _attribute(module, module_name, path, where)
    if call is not None:
        args, kwargs = _literal_arguments(call, where)
        if not callable(obj):
            raise AppImportError(f"{where!r}: {'.'.join(path)!r} is not callable")
        try:
            obj = obj(*args, **kwargs)
        except Exception as exc:
            raise AppImportError(f"calling the factory {where!r} failed:\n{_traceback()}") from exc
    return _check_callable(obj, where)


def _attribute(module: Any, module_name: str, path: List[str], where: str) -> Any:
    obj = module
    for depth, attr in enumerate(path):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            owner = ".".join([module_name] + path[:depth])
            raise AppImportError(f"{owner!r} has no attribute {attr!r} (from {where!r})") from None
    return obj


def _dotted(node: ast.AST) -> Optional[List[str]]:
    import ast

    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _literal_arguments(call: ast.Call, where: str) -> Tuple[List[Any], Dict[str, Any]]:
    import ast

    try:
        args = [ast.literal_eval(arg) for arg in call.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except ValueError:
        raise AppImportError(f"{where!r}: factory arguments must be Python literals") from None
    if any(kw.arg is None for kw in call.keywords):
        raise AppImportError(f"{where!r}: factory arguments must be Python literals")
    return args, kwargs


def _check_callable(obj: Any, where: str) -> Any:
    if not callable(obj):
        raise AppImportError(f"{where!r} is a {type(obj).__name__}, not a callable application")
    return obj


def as_handler(app: Any, config: Any) -> Any:
    """The native handler for app under config.interface ("wsgi": wrapped in a
    WSGIHandler; "auto": as forker.interface.detect says). Safe to call twice:
    a handler is never wrapped again."""
    from .interface import detect, is_asgi2, is_async

    if getattr(app, "interface", None) == "asgi":
        return app  # an ASGIHandler already
    interface = config.interface
    if is_asgi2(app):
        raise AppImportError(
            f"{app!r} is an ASGI 2 application (a class called with the scope, then with "
            "receive and send): forker serves ASGI 3; wrap it with "
            "asgiref.compatibility.guarantee_single_callable")
    if interface == "auto":
        interface = detect(app)
    if interface == "asgi":
        from .asgi import ASGIHandler  # only now: a WSGI worker does without asyncio

        return ASGIHandler(app, config)
    if is_async(app):
        raise AppImportError(
            f"{app!r} is a coroutine function but not an ASGI application "
            f"(app(scope, receive, send)), and the interface is {interface!r}: "
            "a native handler or a WSGI application answers synchronously")
    if interface != "wsgi":
        return app
    from .wsgi import WSGIHandler  # only now: a native worker does without it

    if isinstance(app, WSGIHandler):
        return app
    return WSGIHandler(app, config)
