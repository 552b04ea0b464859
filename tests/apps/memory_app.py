"""Handlers for the memory tests (tests/test_memory.py): /pid answers the
worker's pid, a POST the length of its body, anything else a greeting."""

import os


def app(request):
    if request.path == "/pid":
        return str(os.getpid()).encode()
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
    elif environ["REQUEST_METHOD"] == "POST":
        body = str(size).encode()
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
