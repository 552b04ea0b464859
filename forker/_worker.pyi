"""Types of forker._worker, the compiled worker engine (_worker.pyx)."""

import io
import socket
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar, Union,
                    overload)

from .config import Config

_T = TypeVar("_T")

STREAM_WINDOW: int

class EngineError(OSError):
    """The C loop could not be set up (errno from the failing call)."""

class Headers:
    """The request's header fields: a case-insensitive mapping that iterates the
    raw (name, value) pairs in their original order, repeated names kept."""

    @property
    def raw(self) -> List[Tuple[str, str]]: ...
    def __getitem__(self, name: str, /) -> str: ...
    @overload
    def get(self, name: str) -> Optional[str]: ...
    @overload
    def get(self, name: str, default: _T) -> Union[str, _T]: ...
    def getall(self, name: str) -> List[str]: ...
    def __contains__(self, name: object, /) -> bool: ...
    def __iter__(self) -> Iterator[Tuple[str, str]]: ...
    def __len__(self) -> int: ...
    def items(self) -> List[Tuple[str, str]]: ...
    def keys(self) -> List[str]: ...
    def values(self) -> List[str]: ...

class BodyStream:
    """A request body larger than body_buffer_size, read from the client as the
    handler reads it; valid until the request is answered."""

    @property
    def length(self) -> Optional[int]: ...
    def read(self, size: Optional[int] = -1, /) -> bytes: ...
    def read1(self, size: Optional[int] = -1, /) -> bytes: ...
    def readinto(self, buffer: Any, /) -> int: ...
    def readline(self, size: Optional[int] = -1, /) -> bytes: ...
    def readlines(self, hint: Optional[int] = -1, /) -> List[bytes]: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def readable(self) -> bool: ...
    def close(self) -> None: ...

class Request:
    """One HTTP request; attributes are built on first access."""

    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def host(self) -> Optional[str]: ...
    @property
    def queue_time(self) -> float: ...
    @property
    def version(self) -> str: ...
    @property
    def keep_alive(self) -> bool: ...
    @property
    def absolute_form(self) -> bool: ...
    @property
    def scheme(self) -> str: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def body(self) -> bytes: ...
    @property
    def stream(self) -> Union[BodyStream, io.BytesIO]: ...
    @property
    def remote_addr(self) -> str: ...
    @property
    def remote_port(self) -> int: ...
    @property
    def server_addr(self) -> str: ...
    @property
    def server_port(self) -> int: ...

class Reply:
    """What a compiled handler answers the engine's own requests with
    (forker._wsgi): Response(body, status, headers, reason) without the
    attribute lookups of a Python object, read by make_plan from its struct."""

    def __init__(self, body: Any, status: int, headers: List[Tuple[str, str]],
                 reason: Optional[str]) -> None: ...
    @property
    def body(self) -> Any: ...
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> List[Tuple[str, str]]: ...
    @property
    def reason(self) -> Optional[str]: ...

def loop_config_fields() -> List[Tuple[str, str]]:
    """The fields of fk_loop_config in order, as (name, kind), kind one of
    "count", "u64", "ms", "int", "text", "len", "addr"."""

class Engine:
    """One worker's loop. run() returns when the loop stopped."""

    stop_requested: int
    @property
    def listen_addrs(self) -> List[Tuple[str, int]]: ...
    @property
    def listen_schemes(self) -> List[str]: ...
    def __init__(
        self,
        app: Callable[..., Any],
        config: Config,
        listeners: Iterable[socket.socket],
        slot: Optional[memoryview] = None,
        wake_fd: int = -1,
        parent_pid: int = 0,
        access_log: Optional[Any] = None,
        tick: Optional[Callable[[], Any]] = None,
        schemes: Optional[Iterable[str]] = None,
        constant_body: Optional[bytes] = None,
        ticket_keys: Optional[bytes] = None,
        ssl_context: Optional[Any] = None,
        stats: Optional[memoryview] = None,
        asynchronous: bool = False,
    ) -> None: ...
    @property
    def served(self) -> int: ...
    @property
    def open_connections(self) -> int: ...
    def loop_config(self) -> Dict[str, Union[int, bytes, None]]:
        """The loop's own copy of its fk_loop_config, every field by name (for
        tests: text fields as bytes, address fields as integers)."""
    def stop(self, graceful: bool = True) -> None: ...
    def run(self) -> None: ...
    def run_async(self, aloop: Any) -> None:
        """Serves with a coroutine handler on the asyncio event loop aloop, on this
        thread, until the loop stopped: handler(request, exchange) returns the
        awaitable that answers through the Exchange."""

class Exchange:
    """One request answered by a task on the event loop (Engine.run_async): the
    hold on its connection, the response, the client's leaving."""

    @property
    def request(self) -> Request: ...
    @property
    def closed(self) -> bool: ...
    @property
    def complete(self) -> bool: ...
    @property
    def started(self) -> bool: ...
    @property
    def ws(self) -> bool:
        """The connection became a websocket."""
    def wait_body(self, ms: int) -> Any:
        """A future resumed when the loop has news of the request's streamed
        body, the client left, the response ended, or after ms (-1: no limit)."""
    def wait_writable(self) -> Any:
        """A future resumed once the connection took what was held, the response
        ended, or the client left."""
    def wait_closed(self) -> Any:
        """A future resumed when the client leaves or the response is over."""
    def wait_message(self) -> Any:
        """A future resumed when the loop has news of the websocket: a message,
        its close, or the connection's loss."""

def standard_reason(status: int) -> str:
    """The reason phrase the engine writes for status ("Unknown" when unregistered)."""

def check_ssl_context(context: Any) -> None:
    """Raises ConfigError unless the loop can serve TLS with context."""

def proxy_networks(items: Iterable[str]) -> List[Tuple[int, int, bytes]]:
    """The allow-list of the PROXY protocol, from forwarded_allow_ips: a list of
    (address family, prefix length, packed network address); '*' allows every
    IPv4 and IPv6 peer. Unix-socket peers are always allowed (by the loop)."""

def tls_library() -> str:
    """The version of the OpenSSL that Python's ssl module loaded, which the
    loop's TLS uses; raises OSError when there is none usable."""

def trim_memory() -> bool:
    """Gives the free pages of the C heap back to the system (malloc_trim(0));
    True when some were."""

def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send signum to this process when its parent thread dies."""

def slot_layout() -> Dict[str, Any]:
    """The shared worker slot and the statsd area as csrc/fk_metrics.h lays
    them out."""
