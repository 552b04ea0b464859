"""Which interface an application speaks, told from its signature (the
interface option's "auto"): three positional arguments are ASGI 3's scope,
receive and send (a coroutine function's, or a wrapper's), two are
PEP 3333's environ and start_response, one is a native handler's request.

Read from code objects rather than through inspect, which a native worker
would otherwise import (and keep in memory) for this alone."""

from __future__ import annotations

import functools
import logging
import sys
import types

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Optional

CO_VARARGS = 0x04  # inspect.CO_VARARGS: the code takes *args
CO_ASYNC = 0x80 | 0x200  # inspect.CO_COROUTINE | CO_ASYNC_GENERATOR


def is_async(app: Any) -> bool:
    """Whether calling app gives a coroutine (an ASGI application, an async
    handler) rather than an answer. The function itself (under any
    functools.partial), or its class's __call__, decides: a synchronous
    wrapper of a coroutine is synchronous."""
    while isinstance(app, functools.partial):
        app = app.func
    function = app.__func__ if isinstance(app, types.MethodType) else app
    if not isinstance(function, (types.FunctionType, type)):
        function = getattr(type(app), "__call__", None)
    code = getattr(function, "__code__", None)
    return code is not None and bool(code.co_flags & CO_ASYNC)


def is_asgi2(app: Any) -> bool:
    """Whether app is an ASGI 2 application: a class whose instances, made
    with the scope, are called with receive and send as a coroutine."""
    return isinstance(app, type) and is_async(getattr(app, "__call__", None))


def detect(app: Any) -> str:
    """"asgi" for a coroutine function of three positional arguments (scope,
    receive, send; or an object whose __call__ is one, or a partial of one),
    and for any callable that needs three (a synchronous wrapper returning
    the coroutine, as asgiref's: neither of the others takes three); "wsgi"
    for a callable taking two positional arguments (a Flask or Django
    application, a WSGI function, class or middleware), "native" for one
    taking one. A signature that says neither (only *args, or none readable)
    is served as native, with a warning naming --interface."""
    wsgi = sys.modules.get("forker.wsgi")
    if wsgi is not None and isinstance(app, wsgi.WSGIHandler):
        return "native"  # a WSGI application wrapped already
    count = positional_arguments(app)
    if is_async(app):
        return "asgi" if count in (3, None) else "native"
    if count == 3:
        return "asgi"
    if count == 2:
        return "wsgi"
    if count == 1:
        return "native"
    logging.getLogger("forker.error").warning(
        "cannot tell from its signature whether %r is a WSGI application or a native "
        "handler; serving it as a native handler (set --interface wsgi or native)", app)
    return "native"


def positional_arguments(obj: Any, bound: int = 0, depth: int = 0) -> Optional[int]:
    """How many positional arguments a call of obj needs (all it takes when
    all are optional), bound of them already supplied; None when its code
    does not say."""
    if depth > 8:
        return None
    wrapped = getattr(obj, "__wrapped__", None)  # functools.wraps
    if wrapped is not None:
        return positional_arguments(wrapped, bound, depth + 1)
    if isinstance(obj, functools.partial):
        return positional_arguments(obj.func, bound + len(obj.args), depth + 1)
    if isinstance(obj, type):
        return positional_arguments(getattr(obj, "__init__"), bound + 1, depth + 1)
    if isinstance(obj, types.MethodType):
        return positional_arguments(obj.__func__, bound + 1, depth + 1)
    code = getattr(obj, "__code__", None)
    if code is None:
        if isinstance(obj, (types.BuiltinFunctionType, types.MethodWrapperType,
                            types.WrapperDescriptorType)):
            return None
        call = getattr(type(obj), "__call__", None)
        return None if call is None else positional_arguments(call, bound + 1, depth + 1)
    positional: int = code.co_argcount - bound
    required = positional - len(getattr(obj, "__defaults__", None) or ())
    if required > 0:
        return required
    if code.co_flags & CO_VARARGS:
        return None  # only *args: anything goes
    return positional
