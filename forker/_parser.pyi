"""Types of forker._parser, the C request parser and chunked decoder exposed to
Python for tests and benchmarks (_parser.pyx)."""

from typing import Any, Dict, Optional, Tuple

class ParseError(ValueError):
    """A request refused by the parser: `code` is the fk_status (negative),
    `status` the HTTP status code the client should get."""

    code: int
    status: int
    def __init__(self, code: int) -> None: ...

def parse_request(
    data: bytes,
    last_len: int = 0,
    max_fields: int = 100,
    max_request_line: int = 8190,
    max_field_size: int = 8190,
) -> Optional[Dict[str, Any]]:
    """The parts of the request head at the start of data (bytes slices, flags
    as bools, `consumed`), or None when more bytes are needed."""

class ChunkedDecoder:
    """Incremental decoder of one chunked body."""

    def feed(self, data: bytes) -> Tuple[bytes, bool, bytes]:
        """(decoded body bytes, whether the body is complete, the bytes after it)."""
