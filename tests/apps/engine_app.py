"""Native handlers exercised by tests/test_engine.py."""

import os
import time

from forker import Response
from wsgiapps import together as _together  # tests/apps is on the path of these servers


class _Counter:
    """A header value whose text changes every time it is read."""

    def __init__(self):
        self.n = 0

    def __str__(self):
        self.n += 1
        return str(self.n)


# One Response answered again and again, changed in place between answers
# (/memo...): the engine joins a list of the same field tuples only once.
_MEMO = Response(b"memo", headers=[("X-Memo", "one"), ("Content-Length", "4")])
_COUNTED = Response(b"counted", headers=[("X-Count", _Counter())])
_CLOSING = Response(b"closing", headers=[("Connection", "close")])
_DATED = Response(b"dated", headers=[("Date", "Thu, 01 Jan 1970 00:00:00 GMT")])


def _memo(path, query):
    if path == "/memo/set":
        _MEMO.headers[0] = ("X-Memo", query)
    elif path == "/memo/append":
        _MEMO.headers.append(("X-Added", query))
    elif path == "/memo/bad":  # the memo's tuples but the last, which is refused
        return Response(b"x", headers=[*_MEMO.headers[:-1], ("X-Evil", "a\r\nInjected: yes")])
    elif path == "/memo/dated":
        return _DATED
    elif path == "/memo/counted":
        return _COUNTED
    elif path == "/memo/close":
        return _CLOSING
    elif path == "/memo/same-tuples":  # a new list of the memo's own tuples
        return Response(b"memo", headers=list(_MEMO.headers))
    return _MEMO


def app(request):
    path = request.path
    if path.startswith("/memo"):
        return _memo(path, request.query)
    if path == "/":
        return b"greeting!!!"
    if path == "/text":
        return "héllo"
    if path == "/echo":
        return Response(request.body, headers=[("X-Body-Length", str(len(request.body)))])
    if path == "/info":
        headers = request.headers
        return Response(repr({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "target": request.target,
            "version": request.version,
            "host": request.host,
            "remote_addr": request.remote_addr,
            "x_repeat": headers.getall("x-repeat"),
            "x_one": headers.get("X-ONE"),
            "pairs": list(headers),
            "keep_alive": request.keep_alive,
        }), headers={"Content-Type": "text/plain"})
    if path == "/boom":
        raise RuntimeError("handler failure on purpose")
    if path == "/big":
        return b"b" * (10 * 1024 * 1024)
    if path == "/stream":
        return (b"part%d;" % i for i in range(5))
    if path == "/status":
        return Response(b"created", status=201, headers=[("X-Custom", "yes")])
    if path == "/empty":
        return Response(None, status=204)
    if path == "/cookies":
        return Response(b"two", headers=[("Set-Cookie", "a=1; Path=/"), ("X-Between", "x"),
                                         ("Set-Cookie", "b=2")])
    if path == "/pid":
        return str(os.getpid())
    if path == "/sleep":
        time.sleep(float(request.query or "0.1"))
        return b"slept"
    if path == "/together":
        return _together(int(request.query))
    if path == "/file":
        handle = open(os.environ["ENGINE_APP_FILE"], "rb")
        handle.seek(int(request.query or "0"))
        return Response(handle, headers=[("Content-Type", "application/octet-stream")])
    if path == "/not-iterable":  # neither bytes nor an iterable: a 500
        return 42
    if path == "/an-app":  # a factory's product, returned by mistake
        return lambda environ, start_response: []
    if path == "/bad-header":
        return Response(b"x", headers=[("X-Evil", "a\r\nInjected: yes")])
    return Response(b"not found", status=404)
