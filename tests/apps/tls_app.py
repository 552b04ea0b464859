"""Handlers exercised by tests/test_tls.py: native, and a WSGI one."""

import os

from forker import Response


def app(request):
    path = request.path
    if path == "/":
        return b"greeting!!!"
    if path == "/scheme":
        return request.scheme
    if path == "/echo":
        return Response(request.body, headers=[("X-Body-Length", str(len(request.body)))])
    if path == "/big":
        return b"b" * (10 * 1024 * 1024)
    if path == "/stream":
        return (b"part%d;" % i for i in range(5))
    if path == "/file":
        return open(os.environ["TLS_TEST_FILE"], "rb")
    if path == "/pid":
        return str(os.getpid())
    return Response(b"not found", status=404)


def wsgi(environ, start_response):
    body = f"{environ['wsgi.url_scheme']} {environ['SERVER_PORT']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
