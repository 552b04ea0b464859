"""A handler that chooses its status and header fields with forker.Response.

    python tests/examples/json_response.py         # all interfaces, port 8080
    curl -i 'localhost:8080/hello?name=you'
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from forker import Response, serve

if TYPE_CHECKING:
    from forker._worker import Request


def hello(request: Request) -> Response:
    if request.path != "/hello":
        return Response("not found\n", status=404)
    name = parse_qs(request.query).get("name", ["world"])[0]
    body = json.dumps({"hello": name, "agent": request.headers.get("user-agent", "")})
    return Response(body, headers=[("Content-Type", "application/json")])


if __name__ == "__main__":
    serve(hello, ":8080", workers=2)
