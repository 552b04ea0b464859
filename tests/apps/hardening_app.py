"""A native handler for the hardening tests (limits, smuggling, robustness).

Routes:
  /pid                  the worker's pid
  /echo                 "<body length> <first 32 body bytes>"
  /big?N                N MiB in one body with Content-Length (default 1)
  /bigcount             how many /big requests this worker has answered
  /stream?N             N MiB streamed in 64 KiB chunks (chunked on HTTP/1.1)
  /inject/value         a header value carrying CRLF and a second field
  /inject/lf            a header value carrying a bare LF
  /inject/name          a header name carrying CRLF
  /inject/reason        a reason phrase carrying CRLF
  /status?S             Response(status=S), S as given (invalid ones included)
  anything else         "path=<path>", so a smuggled request would show its target
"""

import os

from forker.response import Response

MiB = 1 << 20
_MIB_BLOCK = b"x" * MiB
_CHUNK = b"y" * 65536
_big_answered = 0


def _stream(mib):
    for _ in range(mib * 16):
        yield _CHUNK


def app(request):
    global _big_answered
    path = request.path
    if path == "/pid":
        return str(os.getpid())
    if path == "/echo":
        body = request.body
        return b"%d %s" % (len(body), body[:32])
    if path == "/big":
        _big_answered += 1
        return _MIB_BLOCK * int(request.query or 1)
    if path == "/bigcount":
        return str(_big_answered)
    if path == "/stream":
        return Response(_stream(int(request.query or 1)))
    if path == "/inject/value":
        return Response(b"no", headers=[("X-Evil", "a\r\nSet-Cookie: pwned=1")])
    if path == "/inject/lf":
        return Response(b"no", headers=[("X-Evil", "a\nSet-Cookie: pwned=1")])
    if path == "/inject/name":
        return Response(b"no", headers=[("X-Evil\r\nSet-Cookie", "pwned=1")])
    if path == "/inject/reason":
        return Response(b"no", reason="OK\r\nSet-Cookie: pwned=1")
    if path == "/status":
        raw = request.query
        try:
            status = int(raw)
        except ValueError:
            status = raw  # a str status: the engine must refuse it too
        return Response(b"no", status=status)
    return "path=" + path
