"""Types of forker._asgi, the compiled per-request part of forker.asgi (_asgi.pyx)."""

from typing import Any, Coroutine, Dict, Optional

from ._worker import Exchange, Request

class ClientDisconnected(OSError):
    """send() after the client left (ASGI spec 2.4: an OSError)."""

class Core:
    """Calls an ASGI 3 application for each of the engine's requests:
    core(request, exchange) -> the coroutine answering it. Subclassed by
    forker.asgi.ASGIHandler."""

    app: Any
    asgi: Dict[str, str]
    root_path: str
    state: Optional[Dict[str, Any]]
    extensions: Dict[str, Any]
    ws_extensions: Dict[str, Any]
    websockets: bool
    ws_deflate: bool
    ws_max_size: int
    def __init__(self, app: Any, root_path: str = "") -> None: ...
    def __call__(self, request: Request, exchange: Exchange) -> Any: ...
    def forwarded(self, scope: Dict[str, Any], fields: Dict[bytes, str]) -> None:
        """Applies a trusted proxy's forwarded fields to the scope."""

class Cycle:
    """One request: the application's receive and send."""

    def run(self) -> Coroutine[Any, Any, None]: ...
    def receive(self) -> Coroutine[Any, Any, Dict[str, Any]]: ...
    def read_stream(self) -> Coroutine[Any, Any, Dict[str, Any]]: ...
    def send(self, message: Dict[str, Any]) -> Coroutine[Any, Any, None]: ...

class WSCycle:
    """One websocket: the application's receive and send over the Exchange,
    which holds the connection from the upgrade until it closes."""

    def run(self) -> Coroutine[Any, Any, None]: ...
    def receive(self) -> Coroutine[Any, Any, Dict[str, Any]]: ...
    def send(self, message: Dict[str, Any]) -> Coroutine[Any, Any, None]: ...
