"""The response a native handler may return instead of plain bytes or str."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: `import forker` does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

    Body = Union[bytes, bytearray, memoryview, str, Iterable[Any], None]


class Response:
    """A body with a status and extra header fields.

    body: bytes or str (sent with Content-Length), or an iterable of bytes/str
    chunks (streamed with chunked encoding on HTTP/1.1, unless headers carry a
    Content-Length). headers: a list of (name, value) pairs, or a dict.
    reason: the reason phrase; the standard one for the status when omitted."""

    __slots__ = ("body", "status", "headers", "reason")

    def __init__(
        self,
        body: Body = b"",
        status: int = 200,
        headers: Optional[Union[List[Tuple[str, str]], Dict[str, str]]] = None,
        reason: Optional[str] = None,
    ) -> None:
        self.body = body
        self.status = status
        self.headers = list(headers.items()) if isinstance(headers, dict) else (headers or [])
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Response {self.status} {type(self.body).__name__}>"
