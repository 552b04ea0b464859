"""The per-request cost of forker's handler path, measured end to end through
one worker engine: a forked child runs forker._worker.Engine on a loopback
listener, and each benchmark round sends 64 pipelined GETs on one connection
and reads the 64 responses. The syscalls are shared by the 64 requests, so
the round time is mostly parse + Request + handler call + response head.

Handlers compared: the built-in greeting, a native handler returning bytes,
one returning a Response with three header fields (the cost of validating and
serializing handler fields), and a WSGI app behind forker's WSGI adapter.
test_wsgi_adapter_alone times forker.wsgi.WSGIHandler in-process, without
the engine; test_h11_response_head times h11's head serializer for scale."""

import os
import signal
import socket
import time

import pytest

_worker = pytest.importorskip("forker._worker")
from forker import Response
from forker.app import as_handler, greeting
from forker.config import Config

DEPTH = 64
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n"
FIELDS = [
    ("Content-Type", "text/plain"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
]


def native_bytes(request):
    return b"greeting!!!"


def native_response(request):
    return Response(b"greeting!!!", headers=FIELDS)


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [b"greeting!!!"]


HANDLERS = {
    "builtin-greeting": (greeting, "native"),
    "native-bytes": (native_bytes, "native"),
    "native-response-3-fields": (native_response, "native"),
    "wsgi": (wsgi_app, "wsgi"),
}


def _serve(app, interface):
    """Fork a child that runs one engine; returns (pid, port)."""
    config = Config(interface=interface, workers=1, server_header="forker")
    handler = as_handler(app, config)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _worker.Engine(handler, config, [listener]).run()
            status = 0
        finally:
            os._exit(status)
    listener.close()
    return pid, port


def _response_size(sock):
    sock.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))  # fmt: skip
    while len(rest) < length:
        rest += sock.recv(4096)
    return len(head) + 4 + length


@pytest.fixture(params=list(HANDLERS))
def connection(request):
    app, interface = HANDLERS[request.param]
    pid, port = _serve(app, interface)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        size = _response_size(sock)
        yield sock, size
        sock.close()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_engine_pipelined_64(benchmark, connection):
    sock, size = connection
    batch = REQUEST * DEPTH
    want = size * DEPTH
    buf = bytearray(want + 65536)
    view = memoryview(buf)

    def round_trip():
        sock.sendall(batch)
        got = 0
        while got < want:
            n = sock.recv_into(view[got:], want - got)
            if not n:
                raise ConnectionError("server closed the connection")
            got += n
        return got

    assert benchmark(round_trip) == want
    benchmark.extra_info["requests_per_round"] = DEPTH
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["us_per_request"] = benchmark.stats.stats.median / DEPTH * 1e6


class FakeRequest:
    """The attributes forker.wsgi.WSGIHandler reads from a native Request."""

    method = "GET"
    path = "/"
    query = ""
    target = "/"
    version = "HTTP/1.1"
    scheme = "http"
    remote_addr = "127.0.0.1"
    remote_port = 50000
    server_addr = "127.0.0.1"
    server_port = 8080
    body = b""
    host = "127.0.0.1:8080"
    headers = (("Host", "127.0.0.1:8080"), ("User-Agent", "bench"), ("Accept", "*/*"))


def test_wsgi_adapter_alone(benchmark):
    handler = as_handler(wsgi_app, Config(interface="wsgi"))
    response = benchmark(handler, FakeRequest())
    assert response.status == 200


def test_h11_response_head(benchmark):
    h11 = pytest.importorskip("h11")
    headers = [("Content-Length", "11"), *FIELDS]

    def serialize():
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(REQUEST)
        conn.next_event()
        return conn.send(h11.Response(status_code=200, headers=headers))

    assert benchmark(serialize).startswith(b"HTTP/1.1 200")
