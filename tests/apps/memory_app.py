"""Handlers for the memory tests (tests/test_memory.py): /pid answers the
worker's pid, /big the same 16 MiB object every time, a POST the length of its
body, anything else a greeting."""

import os

_big = []


def big():
    """16 MiB made on first use (the other tests measure a worker without it);
    a pattern, not one repeated byte, so that a body sent from a wrong offset shows."""
    if not _big:
        _big.append(bytes(range(256)) * (1 << 16))
    return _big[0]


def app(request):
    if request.path == "/pid":
        return str(os.getpid()).encode()
    if request.path == "/big":
        return big()
    if request.method == "POST":
        return str(len(request.body)).encode()
    return b"hello"


def wsgi_app(environ, start_response):
    stream = environ["wsgi.input"]
    size = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        size += len(chunk)
    if environ["PATH_INFO"] == "/pid":
        body = str(os.getpid()).encode()
    elif environ["PATH_INFO"] == "/big":
        body = big()
    elif environ["REQUEST_METHOD"] == "POST":
        body = str(size).encode()
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/big":
        body = big()
    elif scope["path"] == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"hello"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
