"""Types of forker._wsgi, the compiled per-request part of forker.wsgi (_wsgi.pyx)."""

from typing import Any, Callable, Dict, Iterable, Iterator, Union

from ._worker import Reply
from .response import Response

class WSGIError(Exception):
    """The application broke a PEP 3333 rule the server has to enforce."""

def bad_value(text: str) -> bool:
    """Whether text cannot be a field value: CR, LF or NUL (header injection),
    or a character beyond latin-1 (PEP 3333 "native strings")."""

class Body:
    """A streamed response: what write() buffered, the first chunk already
    taken from the application's iterator, then the rest; close() reaches the
    application's iterable."""

    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...

class Core:
    """A native handler running a PEP 3333 application: handler(request) ->
    forker.Response. Subclassed by forker.wsgi.WSGIHandler, which configures it
    and supplies _is_trusted(addr) and _apply_forwarded(environ)."""

    @property
    def app(self) -> Callable[..., Iterable[bytes]]: ...
    @property
    def root_path(self) -> str: ...
    def __init__(self, app: Callable[..., Iterable[bytes]], base: Dict[str, Any],
                 root_path: str) -> None: ...
    def __call__(self, request: Any) -> Union[Response, Reply]: ...
