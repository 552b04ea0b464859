"""Handlers that read request bodies in the ways applications do, for the
streamed request body tests (tests/test_body_stream.py).

Each route answers "<kind> <length> <sha256 of what it read>", where kind is
the type of the body object it was given (BodyStream when streamed, BytesIO
when received whole).

Native handler `app`:
  /stream        request.stream read in 64 KiB pieces
  /body          request.body
  /lines         request.stream iterated line by line (also counts the lines)
  /first?N       N bytes read, the rest left unread
  /none          nothing read
Native handler `slow_app`: as `app`, each read followed by a 10 ms sleep, and
  /hold?N        request.stream read in 64 KiB pieces, pausing after the first
                 until N /beside requests were answered meanwhile (20 s at most)
  /beside        "while holding" when a /hold handler is pausing, else "alone"
WSGI application `wsgi_app`:
  /read          wsgi.input.read(65536) until b""
  /readall       wsgi.input.read()
  /readline      wsgi.input.readline() until b"" (also counts the lines)
  /readinto      wsgi.input.readinto() of a 100 000-byte bytearray
  /length        CONTENT_LENGTH as the application sees it
  /none          nothing read
"""

import hashlib
import threading
import time

from forker.errors import RequestBodyError


def _digest(kind, data, lines=None):
    text = f"{kind} {len(data)} {hashlib.sha256(data).hexdigest()}"
    return text if lines is None else f"{text} {lines}"


def _read_pieces(stream, size, pause=0.0):
    parts = []
    while True:
        piece = stream.read(size)
        if not piece:
            return b"".join(parts)
        parts.append(piece)
        if pause:
            time.sleep(pause)


def _native(request, pause):
    path = request.path
    if path == "/body":
        return _digest("body", request.body)
    stream = request.stream
    kind = type(stream).__name__
    if path == "/stream":
        return _digest(kind, _read_pieces(stream, 65536, pause))
    if path == "/lines":
        lines = list(stream)
        return _digest(kind, b"".join(lines), len(lines))
    if path == "/first":
        return _digest(kind, stream.read(int(request.query)))
    if path == "/error":
        try:
            stream.read()
        except RequestBodyError as exc:
            return f"caught {exc.status}"
        return "no error"
    return _digest(kind, b"")


def app(request):
    return _native(request, 0.0)


_hold = threading.Condition()
_holding = False
_beside = 0


def slow_app(request):
    global _holding, _beside
    if request.path == "/hold":
        stream = request.stream
        first = stream.read(65536)
        with _hold:
            _holding, _beside = True, 0
            served = _hold.wait_for(lambda: _beside >= int(request.query), timeout=20)
            _holding = False
        if not served:
            return f"only {_beside} requests answered beside the held one"
        return _digest(type(stream).__name__, first + _read_pieces(stream, 65536))
    if request.path == "/beside":
        with _hold:
            if not _holding:
                return "alone"
            _beside += 1
            _hold.notify_all()
        return "while holding"
    return _native(request, 0.01)


def wsgi_app(environ, start_response):
    stream = environ["wsgi.input"]
    kind = type(stream).__name__
    path = environ["PATH_INFO"]
    if path == "/read":
        text = _digest(kind, _read_pieces(stream, 65536))
    elif path == "/readall":
        text = _digest(kind, stream.read())
    elif path == "/readline":
        lines = []
        while True:
            line = stream.readline()
            if not line:
                break
            lines.append(line)
        text = _digest(kind, b"".join(lines), len(lines))
    elif path == "/readinto":
        buf = bytearray(100_000)
        parts = []
        while True:
            n = stream.readinto(buf)
            if not n:
                break
            parts.append(bytes(buf[:n]))
        text = _digest(kind, b"".join(parts))
    elif path == "/length":
        text = f"{kind} {environ.get('CONTENT_LENGTH')}"
    else:
        text = _digest(kind, b"")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text.encode()]
