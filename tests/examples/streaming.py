"""A handler that streams its body from a generator: chunked encoding on
HTTP/1.1, one chunk per item.

    python tests/examples/streaming.py             # all interfaces, port 8080
    curl -N localhost:8080/
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from forker import Response, serve

if TYPE_CHECKING:
    from forker._worker import Request


def count(request: Request) -> Response:
    def lines() -> Iterator[bytes]:
        for n in range(1, 6):
            yield f"line {n}\n".encode()

    return Response(lines(), headers=[("Content-Type", "text/plain")])


if __name__ == "__main__":
    serve(count, ":8080")
