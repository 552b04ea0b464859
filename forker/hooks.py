"""gunicorn's server hooks (the options of forker.config named after them).

The `server` a hook gets is the master's Arbiter (forker/master.py): `pid`,
`cfg` (the configuration, also readable by gunicorn's setting names),
`log`, `num_workers` (settable), `WORKERS`. The `worker` is the master's
record of a worker (forker.master.Worker): `id`, `pid`, `ppid`, `age`,
`log`, `cfg`, `booted`.

pre_request and post_request put Python on the request path: when either is
set, each worker wraps its application once (wrap_requests); when neither is,
nothing is wrapped and a request costs what it did without them.
"""

from __future__ import annotations

import logging

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

log = logging.getLogger("forker.master")


class HookError(Exception):
    """A hook whose failure stops the server (on_starting, when_ready, on_exit:
    gunicorn exits with status 1) raised."""


def call(name: str, hook: Optional[Callable[..., Any]], *args: Any,
         fatal: bool = False) -> None:
    """Call a hook if set; an exception in it is logged, and with fatal raised
    again as a HookError."""
    if hook is None:
        return
    try:
        hook(*args)
    except Exception as exc:
        log.exception("the %s hook raised", name)
        if fatal:
            raise HookError(f"the {name} hook raised {exc!r}") from None


class Request:
    """What pre_request and post_request get as `req` for a WSGI application:
    gunicorn's request attributes, read from the environ. A hook may set its
    own attributes on it (req.start_time = ...), and a field it appends to
    req.headers in pre_request reaches the environ, as in gunicorn."""

    __slots__ = ("environ", "method", "uri", "path", "query", "scheme", "remote_addr",
                 "_headers", "_given", "__dict__")

    def __init__(self, environ: Dict[str, Any]) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET")
        self.uri: str = environ.get("RAW_URI", "")
        path, _, query = self.uri.partition("?")
        self.path = path.partition("#")[0]
        self.query: str = environ.get("QUERY_STRING", query)
        self.scheme: str = environ.get("wsgi.url_scheme", "http")
        self.remote_addr: str = environ.get("REMOTE_ADDR", "")
        self._headers: Optional[List[Tuple[str, str]]] = None
        self._given = 0

    @property
    def peer_addr(self) -> Tuple[str, int]:
        try:
            port = int(self.environ.get("REMOTE_PORT") or 0)
        except ValueError:
            port = 0
        return self.remote_addr, port

    @property
    def body(self) -> Any:
        return self.environ.get("wsgi.input")

    def _apply_new_fields(self) -> None:
        """The fields a hook appended to headers, into the environ (a repeated
        name joined with a comma, as the environ keeps repeats)."""
        if self._headers is None:
            return
        for name, value in self._headers[self._given:]:
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            old = self.environ.get(key)
            self.environ[key] = value if old is None else f"{old},{value}"
        self._given = len(self._headers)

    @property
    def version(self) -> Tuple[int, int]:
        text = self.environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        return (1, 0) if text == "HTTP/1.0" else (1, 1)

    @property
    def headers(self) -> List[Tuple[str, str]]:
        """(NAME, value) pairs with upper-case names, as gunicorn gives them."""
        if self._headers is None:
            pairs = []
            for key, value in self.environ.items():
                if key.startswith("HTTP_"):
                    pairs.append((key[5:].replace("_", "-"), value))
                elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                    pairs.append((key.replace("_", "-"), value))
            self._headers = pairs
            self._given = len(pairs)
        return self._headers


class Response:
    """What post_request gets as `resp`: `status` ("200 OK"), `status_code`
    (200) and `headers`, once the application answered (a 500 if it raised)."""

    __slots__ = ("status", "headers", "__dict__")  # a hook may add its own attributes

    def __init__(self) -> None:
        self.status: Optional[str] = None
        self.headers: List[Tuple[str, str]] = []

    @property
    def response_length(self) -> Optional[int]:
        """The Content-Length the application gave, None without one."""
        for name, value in self.headers:
            if name.lower() == "content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    @property
    def status_code(self) -> Optional[int]:
        if self.status is None:
            return None
        try:
            return int(str(self.status).split(None, 1)[0])
        except ValueError:
            return None


class _Closing:
    """An application's response iterable whose close() also runs post_request."""

    __slots__ = ("result", "after")

    def __init__(self, result: Any, after: Callable[[], None]) -> None:
        self.result = result
        self.after = after

    def __iter__(self) -> Iterator[Any]:
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.after()


def wrap_requests(app: Any, config: Any, worker: Any) -> Any:
    """app (the worker's handler) with pre_request and post_request around each
    call; app itself when neither hook is set."""
    pre, post = config.pre_request, config.post_request
    if pre is None and post is None:
        return app
    if getattr(app, "interface", None) == "asgi":
        log.warning("pre_request and post_request are not called for an ASGI application")
        return app
    from .wsgi import WSGIHandler

    if isinstance(app, WSGIHandler):
        return WSGIHandler(_wsgi(app.app, pre, post, worker), config)
    return _native(app, pre, post, worker)


def _wsgi(app: Any, pre: Any, post: Any, worker: Any) -> Callable[..., Any]:
    from .wsgi import FileWrapper

    def hooked(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        req = Request(environ)
        if pre is not None:
            pre(worker, req)  # raising answers 500, as in gunicorn
            req._apply_new_fields()
        if post is None:
            return app(environ, start_response)
        resp = Response()

        def start(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            resp.status, resp.headers = status, headers
            return start_response(status, headers, exc_info)

        def after() -> None:
            call("post_request", post, worker, req, environ, resp)

        try:
            result = app(environ, start)
        except BaseException:
            resp.status = "500 Internal Server Error"
            after()
            raise
        kind = type(result)
        if kind is list or kind is tuple or kind is FileWrapper:
            after()  # the body is known (or is a file the loop sends): complete
            return result
        return _Closing(result, after)

    return hooked


def _native(handler: Any, pre: Any, post: Any, worker: Any) -> Callable[[Any], Any]:
    def hooked(request: Any) -> Any:
        if pre is not None:
            pre(worker, request)
        if post is None:
            return handler(request)
        resp = Response()
        try:
            result = handler(request)
        except BaseException:
            resp.status = "500 Internal Server Error"
            call("post_request", post, worker, request, {}, resp)
            raise
        status = getattr(result, "status", 200)
        resp.status = f"{status} {_reason(status)}"
        resp.headers = list(getattr(result, "headers", None) or [])
        call("post_request", post, worker, request, {}, resp)
        return result

    return hooked


def _reason(status: int) -> str:
    """The reason phrase the engine writes for status (csrc/fk_write.c)."""
    from ._worker import standard_reason

    return standard_reason(status)
