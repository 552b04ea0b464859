"""Handlers for the loop's chaos harness (tests/test_chaos.py): each route is
a way a handler can use or outlive its connection. FORKER_TEST_DIR holds the
file that /file sends.

  /pid           the worker's pid
  /echo          the body read through request.stream: "<length>"
  /sleep         a handler that takes a while (up to 50 ms)
  /big           1 MiB in one body
  /stream        a generator of 64 chunks of 4 KiB
  /raise-stream  a generator that raises after a few chunks
  /raise         a handler that raises
  /exit          sys.exit() in a handler
  /file          a 2 MiB file, sent with sendfile
  /keep          keeps request.stream, and reads the one kept before
wsgi_app: the same routes through WSGI, plus
  /drain         a streamed body whose close() drains wsgi.input
"""

import os
import random
import sys
import time

from forker.response import Response

DIR = os.environ.get("FORKER_TEST_DIR", "")
_kept = []


def _chunks(n, fail=False):
    for i in range(n):
        if fail and i == 3:
            raise RuntimeError("a generator that fails midway")
        yield b"c" * 4096


def _route(path, body_stream, reader):
    if path == "/pid":
        return str(os.getpid()).encode()
    if path == "/echo":
        return b"%d" % len(reader())
    if path == "/sleep":
        time.sleep(random.random() * 0.05)
        return b"slept"
    if path == "/big":
        return b"b" * (1 << 20)
    if path == "/raise":
        raise RuntimeError("a handler that fails")
    if path == "/exit":
        sys.exit(1)
    if path == "/keep":
        if _kept:
            try:
                _kept.pop().read(10)
            except (RuntimeError, OSError, ValueError):
                pass
        _kept.append(body_stream())
        return b"kept"
    return None


def app(request):
    path = request.path
    if path == "/stream":
        return Response(_chunks(64))
    if path == "/raise-stream":
        return Response(_chunks(64, fail=True))
    if path == "/file":
        return Response(open(os.path.join(DIR, "chaos.bin"), "rb"))
    answer = _route(path, lambda: request.stream, lambda: request.stream.read())
    return answer if answer is not None else b"path=" + path.encode()


class _Drain:
    def __init__(self, environ, fail=False):
        self.environ = environ
        self.fail = fail

    def __iter__(self):
        yield b"drain"
        if self.fail:
            raise RuntimeError("a WSGI iterable that fails midway")

    def close(self):
        self.environ["wsgi.input"].read()


def wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path in ("/drain", "/raise-stream"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Drain(environ, fail=path == "/raise-stream")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _chunks(64)
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(os.path.join(DIR, "chaos.bin"), "rb"))
    stream = environ["wsgi.input"]
    answer = _route(path, lambda: stream, lambda: stream.read())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer if answer is not None else b"path=" + path.encode()]
