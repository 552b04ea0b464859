"""Native handlers exercised by tests/test_engine.py."""

import os
import time

from forker import Response
from wsgiapps import together as _together  # tests/apps is on the path of these servers


def app(request):
    path = request.path
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
