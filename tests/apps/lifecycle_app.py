"""Handlers for the connection-lifecycle tests (tests/test_lifecycle.py):
who owns a connection slot, its body and its file while a handler runs.

FORKER_TEST_DIR names a directory the test shares with the server:
  /pid          the worker's pid
  /hold         writes started-<pid>-<n> there, then waits until the file
                "release" appears (a handler that sleeps until the test says)
  /exit         raises SystemExit (sys.exit() in application code)
  /interrupt    raises KeyboardInterrupt
  /keep         reads the body whole through request.stream, keeps the stream
  /read-kept    reads from the stream /keep kept: "refused" when that raises,
                else what it read
  /echo         "<length> <sha256>" of the body read through request.stream
  /file?name    the file FORKER_TEST_DIR/name, sent by the loop (sendfile)
  /drained?id   "<length> <sha256>" of what /wsgi-drain's close() read for id
  /bytes?n      n bytes of pattern(n), a new object each time

wsgi_app (the same routes through WSGI, where they apply):
  /wsgi-drain?id  a one-chunk streamed body whose close() drains wsgi.input, as
                  some frameworks' response objects do
"""

import hashlib
import itertools
import os
import sys
import time

from forker.response import Response

DIR = os.environ.get("FORKER_TEST_DIR", "")
_count = itertools.count()
_kept = []
DRAINED = {}


def _hold():
    with open(os.path.join(DIR, f"started-{os.getpid()}-{next(_count)}"), "w"):
        pass
    release = os.path.join(DIR, "release")
    while not os.path.exists(release):
        time.sleep(0.01)
    return b"held"


def pattern(n):
    """n bytes repeating with a period of 251: a part sent twice, skipped or
    from a freed buffer shows."""
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def _digest(data):
    return b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode())


def app(request):
    path = request.path
    if path == "/pid":
        return str(os.getpid())
    if path == "/hold":
        return _hold()
    if path == "/exit":
        sys.exit(3)
    if path == "/interrupt":
        raise KeyboardInterrupt
    if path == "/keep":
        stream = request.stream
        data = stream.read()
        _kept.append(stream)
        return _digest(data)
    if path == "/read-kept":
        try:
            data = _kept[-1].read(65536)
        except RuntimeError:
            return b"refused"
        return b"read " + data
    if path == "/echo":
        return _digest(request.stream.read())
    if path == "/file":
        return Response(open(os.path.join(DIR, request.query), "rb"))
    if path == "/drained":
        return DRAINED.get(request.query, b"none")
    if path == "/bytes":
        return pattern(int(request.query))
    return "path=" + path


class _DrainOnClose:
    def __init__(self, environ):
        self.environ = environ

    def __iter__(self):
        yield b"streamed"

    def close(self):
        data = self.environ["wsgi.input"].read()
        key = self.environ.get("QUERY_STRING", "")
        DRAINED[key] = _digest(data)


def wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/wsgi-drain":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _DrainOnClose(environ)
    if path == "/drained":
        body = DRAINED.get(environ.get("QUERY_STRING", ""), b"none")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/exit":
        sys.exit(3)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route"]
