"""Plain WSGI applications for the server tests (served as tests.apps.wsgiapps:NAME
or, with --chdir tests/apps, as wsgiapps:NAME)."""

import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import wsgiref.validate

SAFE_KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "RAW_URI", "REQUEST_URI",
    "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT",
    "CONTENT_TYPE", "CONTENT_LENGTH", "wsgi.url_scheme", "wsgi.multithread",
    "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated", "HTTPS",
)


def environ_app(environ, start_response):
    """Echoes the environ (its plain values) and the body as JSON."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    out = {key: environ[key] for key in SAFE_KEYS if key in environ}
    out.update({key: value for key, value in environ.items() if key.startswith("HTTP_")})
    out["wsgi.version"] = list(environ["wsgi.version"])
    out["body"] = body.decode("latin-1")
    out["thread"] = threading.get_ident()
    out["pid"] = os.getpid()
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


validated_environ_app = wsgiref.validate.validator(environ_app)


def stream_app(environ, start_response):
    """A chunked response: no Content-Length, several chunks with pauses."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(5):
        yield b"chunk %d\n" % i
        time.sleep(0.01)


validated_stream_app = wsgiref.validate.validator(stream_app)


class Tracked:
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        sys.stderr.write("iterable closed\n")
        sys.stderr.flush()


class SlowStream:
    """A body whose second piece waits for the client to have read the first
    (the file "go" in folder, bounded at 30 s), then pieces every 10 ms; close()
    leaves the file "closed"."""

    def __init__(self, folder):
        self.folder = folder

    def __iter__(self):
        yield b"first;"
        for _ in range(3000):
            if os.path.exists(os.path.join(self.folder, "go")):
                break
            time.sleep(0.01)
        yield b"second;"
        for _ in range(3000):
            time.sleep(0.01)
            yield b"more;"

    def close(self):
        open(os.path.join(self.folder, "closed"), "w").close()


def misc_app(environ, start_response):
    """Routes exercising the response side of PEP 3333."""
    path = environ["PATH_INFO"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return [b"returned"]
    if path == "/inject":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
        return [b"should not be seen"]
    if path == "/hop":
        start_response("200 OK", [("Connection", "close")])
        return [b"closing after this"]
    if path == "/cookies":
        start_response("200 OK", [("Set-Cookie", "a=1; Path=/"), ("X-Between", "x"),
                                  ("Set-Cookie", "b=2")])
        return [b"two"]
    if path == "/raise":
        raise RuntimeError("application failure")
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](f, 1024)
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"a", b"b"])
    if path == "/infinite":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked(iter(lambda: b"x" * 65536, None))
    if path == "/head":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"hello"]
    if path == "/declared":  # a Content-Length that is not the body's: ?declared=N&send=M
        query = dict(urllib.parse.parse_qsl(environ["QUERY_STRING"]))
        start_response("200 OK", [("Content-Length", query["declared"])])
        return [b"x" * int(query["send"])]
    if path == "/slow-stream":  # ?FOLDER
        start_response("200 OK", [("Content-Type", "text/plain")])
        return SlowStream(urllib.parse.unquote(environ["QUERY_STRING"]))
    if path == "/stop-me":  # a graceful stop (TERM) arrives while the handler runs
        os.kill(os.getpid(), signal.SIGTERM)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"stopping"]
    if path == "/sleep":
        time.sleep(0.1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    if path == "/together":
        body = together(int(environ["QUERY_STRING"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def factory(greeting="hello", punctuation="!"):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [(greeting + punctuation).encode()]
    return app


def native(request):
    """A native handler, for --interface native."""
    return f"native {request.method} {request.path}".encode()


application = factory("module default")


_barriers = {}
_barriers_lock = threading.Lock()


def together(count):
    """Waits until `count` requests are in this application at once: b"together",
    or b"alone" when they were not within 8 s (a bound on a hang, nothing more;
    a client gives up after 10)."""
    with _barriers_lock:
        barrier = _barriers.setdefault(count, threading.Barrier(count, timeout=8))
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        return b"alone"
    return b"together"
