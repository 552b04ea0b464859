"""HEAD against GET: the same routes as a WSGI application (wsgi) and a native
handler (native). Every route runs for HEAD as for GET, except /empty-on-head,
which returns an empty body to HEAD as Werkzeug (Flask) does.

    /gen            a generator, no Content-Length
    /cl             a generator, with the application's Content-Length: 6
    /one            a one-item list (WSGI: forker states its length)
    /empty-on-head  a generator, or an empty body for HEAD
"""

from forker.response import Response


def _gen():
    yield b"abc"
    yield b"def"


def wsgi(environ, start_response):
    path, head = environ["PATH_INFO"], environ["REQUEST_METHOD"] == "HEAD"
    fields = [("Content-Type", "text/plain")]
    if path == "/cl":
        start_response("200 OK", fields + [("Content-Length", "6")])
        return _gen()
    start_response("200 OK", fields)
    if path == "/one":
        return [b"hello"]
    if path == "/empty-on-head" and head:
        return ()
    return _gen()


def native(request):
    path, head = request.path, request.method == "HEAD"
    if path == "/cl":
        return Response(_gen(), headers=[("Content-Length", "6")])
    if path == "/one":
        return [b"hello"]
    if path == "/empty-on-head" and head:
        return b""
    return _gen()
