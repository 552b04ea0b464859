"""Request bodies larger than body_buffer_size reach the application as it
reads them (wsgi.input, request.stream) instead of being received whole first.

Real forker processes, raw sockets: the bodies' bytes, their framing
(Content-Length, chunked), the connection's reuse afterwards, and the
failures a client can cause (stall, hang-up, oversize, broken coding)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from typing import Dict, List, Optional, Tuple

import pytest

from harness import ForkerProcess, Reader, connect, read_until_close

MiB = 1 << 20
NATIVE = "body_app:app"
WSGI = "body_app:wsgi_app"
STREAM = ["--body-buffer-size", str(MiB)]  # with --threads 1, streaming is opted into


def payload(size: int, lines: bool = False) -> bytes:
    if lines:
        line = b"0123456789abcdefghijklmnopqrstuvwxyz-line\n"
        return (line * (size // len(line) + 1))[:size]
    return os.urandom(size)


def digest(kind: str, data: bytes) -> str:
    return f"{kind} {len(data)} {hashlib.sha256(data).hexdigest()}"


def chunked(data: bytes, sizes=(1, 4096, 65536, 333_333, 7)) -> bytes:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        piece = data[i:i + n]
        out.append(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
        i += n
        k += 1
    out.append(b"0\r\nTrailer-Field: x\r\n\r\n")
    return b"".join(out)


def head(path: str, length: Optional[int] = None, extra: str = "") -> bytes:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return f"POST {path} HTTP/1.1\r\nHost: t\r\n{framing}\r\n{extra}\r\n".encode()


def send_body(sock: socket.socket, data: bytes, step: int = 256 * 1024) -> None:
    for i in range(0, len(data), step):
        sock.sendall(data[i:i + step])


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """send_body for a sender thread: a server that answers without reading
    the whole body closes the connection under it."""
    try:
        send_body(sock, data)
    except OSError:
        pass


def post(port: int, path: str, data: bytes, use_chunked: bool = False,
         sock: Optional[socket.socket] = None) -> Tuple[int, Dict[str, str], bytes]:
    own = sock is None
    sock = sock or connect(port, timeout=20)
    try:
        wire = head(path, None if use_chunked else len(data))
        body = chunked(data) if use_chunked else data
        sender = threading.Thread(target=send_quietly, args=(sock, wire + body))
        sender.start()  # the server may answer while it still receives
        result = Reader(sock).response()
        sender.join(20)
        return result
    finally:
        if own:
            sock.close()


@pytest.fixture(scope="module")
def native():
    with ForkerProcess(*STREAM, app=NATIVE) as server:
        yield server


@pytest.fixture(scope="module")
def wsgi():
    with ForkerProcess(*STREAM, "--interface", "wsgi", app=WSGI) as server:
        yield server


@pytest.fixture(scope="module")
def threaded():
    with ForkerProcess("--threads", "4", app=NATIVE) as server:
        yield server


# -- what the application reads ---------------------------------------------------------

@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/stream", "/body", "/lines"])
def test_native_handler_reads_a_large_body_whole(native, path, use_chunked):
    data = payload(5 * MiB + 123, lines=path == "/lines")
    status, fields, body = post(native.port, path, data, use_chunked)
    assert status == 200
    kind = "body" if path == "/body" else "BodyStream"
    assert body.decode().startswith(digest(kind, data))
    if path == "/lines":
        lines = data.count(b"\n") + (not data.endswith(b"\n"))
        assert body.decode().endswith(f" {lines}")


@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/read", "/readall", "/readline", "/readinto"])
def test_wsgi_input_streams_a_large_body(wsgi, path, use_chunked):
    data = payload(3 * MiB + 5, lines=path == "/readline")
    status, _, body = post(wsgi.port, path, data, use_chunked)
    assert status == 200
    assert body.decode().startswith(digest("BodyStream", data))


def test_small_bodies_are_still_received_whole(native, wsgi):
    data = payload(64 * 1024)
    assert post(native.port, "/stream", data)[2].decode() == digest("BytesIO", data)
    assert post(wsgi.port, "/read", data, True)[2].decode() == digest("BytesIO", data)


def test_wsgi_content_length_of_a_streamed_body(wsgi):
    data = payload(2 * MiB)
    assert post(wsgi.port, "/length", data)[2] == b"BodyStream %d" % len(data)
    # a streamed chunked body has no length: the application reads to the end
    # (wsgi.input_terminated)
    assert post(wsgi.port, "/length", data, True)[2] == b"BodyStream None"


def test_body_buffer_size_zero_receives_every_body_whole():
    with ForkerProcess("--threads", "2", "--body-buffer-size", "0", app=NATIVE) as server:
        data = payload(3 * MiB)
        assert post(server.port, "/stream", data)[2].decode() == digest("BytesIO", data)


def test_single_threaded_worker_receives_bodies_whole_by_default():
    """With --threads 1 a streamed body would hold the worker's only thread
    for as long as the client takes: by default the loop receives it whole."""
    with ForkerProcess(app=NATIVE) as server:
        data = payload(3 * MiB)
        assert post(server.port, "/stream", data)[2].decode() == digest("BytesIO", data)


def test_threads_stream_large_bodies_by_default(threaded):
    data = payload(64 * 1024 + 1)
    assert post(threaded.port, "/stream", data)[2].decode() == digest("BodyStream", data)
    data = payload(64 * 1024)
    assert post(threaded.port, "/stream", data)[2].decode() == digest("BytesIO", data)


def test_body_buffer_size_option_sets_the_threshold():
    with ForkerProcess("--body-buffer-size", "1000", app=NATIVE) as server:
        data = payload(5000)
        assert post(server.port, "/stream", data)[2].decode() == digest("BodyStream", data)
        data = payload(1000)
        assert post(server.port, "/stream", data)[2].decode() == digest("BytesIO", data)


# -- the connection afterwards -------------------------------------------------------------

@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
def test_connection_is_reused_after_a_body_read_to_its_end(native, use_chunked):
    sock = connect(native.port, timeout=20)
    try:
        for _ in range(3):
            data = payload(2 * MiB + 17)
            status, fields, body = post(native.port, "/stream", data, use_chunked, sock=sock)
            # a chunked body that arrived whole before it passed the threshold
            # is handed over whole: only the bytes matter here
            assert status == 200 and body.decode().split(" ", 1)[1] == digest("", data)[1:]
            assert fields.get("connection") != "close"
    finally:
        sock.close()


def test_request_pipelined_behind_a_streamed_chunked_body(native):
    data = payload(2 * MiB)
    sock = connect(native.port, timeout=20)
    try:
        sock.sendall(head("/stream") + chunked(data) + b"GET /none HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(sock)
        # streamed as a rule; handed over whole when all of it was read before
        # the engine passed the streaming threshold (a matter of timing)
        assert reader.response()[2].decode() in (digest("BodyStream", data),
                                                  digest("BytesIO", data))
        assert reader.response()[2].decode() == digest("BytesIO", b"")
    finally:
        sock.close()


def test_handler_answers_before_the_body_arrives(native):
    """The proof that the body is not waited for: the client sends the head and
    a little of a 50 MiB body, and the answer comes anyway. The connection then
    closes, since the rest of the body was never read."""
    sock = connect(native.port, timeout=10)
    try:
        sock.sendall(head("/first?1000", 50 * MiB) + payload(100_000))
        status, fields, body = Reader(sock).response()
        assert status == 200 and body.startswith(b"BodyStream 1000 ")
        assert fields["connection"] == "close"
        data, closed = read_until_close(sock, timeout=10)
        assert closed
    finally:
        sock.close()
    assert post(native.port, "/stream", b"after")[0] == 200


def test_unread_body_closes_the_connection_after_the_answer(native):
    sock = connect(native.port, timeout=10)
    sender = threading.Thread(target=send_quietly,
                              args=(sock, head("/none", 3 * MiB) + payload(3 * MiB)))
    sender.start()
    try:
        status, fields, _ = Reader(sock).response()
        assert status == 200 and fields["connection"] == "close"
    finally:
        sender.join(10)
        sock.close()


def test_expect_100_continue_before_a_streamed_body(native):
    data = payload(2 * MiB)
    sock = connect(native.port, timeout=10)
    try:
        sock.sendall(head("/stream", len(data), "Expect: 100-continue\r\n"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        send_body(sock, data)
        assert Reader(sock).response()[2].decode() == digest("BodyStream", data)
    finally:
        sock.close()


# -- what a client can break ----------------------------------------------------------------

def test_stalled_body_gets_408_and_the_worker_serves_on():
    with ForkerProcess(*STREAM, "--header-timeout", "1", app=NATIVE) as server:
        sock = connect(server.port, timeout=10)
        try:
            sock.sendall(head("/stream", 4 * MiB) + payload(2 * MiB))
            status, fields, _ = Reader(sock).response()
            # the socket's 10 s bound a hang: without the read timeout (1 s)
            # only request_timeout (60 s) would end the request
            assert status == 408 and fields["connection"] == "close"
        finally:
            sock.close()
        assert post(server.port, "/stream", b"x" * 10)[0] == 200


def test_handler_can_catch_the_body_error():
    with ForkerProcess(*STREAM, "--header-timeout", "1", app=NATIVE) as server:
        sock = connect(server.port, timeout=10)
        try:
            sock.sendall(head("/error", 4 * MiB) + payload(2 * MiB))
            status, fields, body = Reader(sock).response()
            assert (status, body) == (200, b"caught 408")
            assert fields["connection"] == "close"
        finally:
            sock.close()


def test_chunked_body_over_max_body_size_gets_413():
    with ForkerProcess(*STREAM, "--max-body-size", str(3 * MiB), app=NATIVE) as server:
        data = payload(5 * MiB)
        status, fields, _ = post(server.port, "/stream", data, use_chunked=True)
        assert status == 413 and fields["connection"] == "close"
        status, _, body = post(server.port, "/stream", payload(2 * MiB), use_chunked=True)
        assert status == 200


def test_malformed_chunk_in_a_streamed_body_gets_400(native):
    sock = connect(native.port, timeout=10)
    try:
        good = chunked(payload(2 * MiB))[:-len(b"0\r\nTrailer-Field: x\r\n\r\n")]
        sock.sendall(head("/stream") + good + b"zz\r\n")
        status, fields, _ = Reader(sock).response()
        assert status == 400 and fields["connection"] == "close"
    finally:
        sock.close()


@pytest.mark.parametrize("server", ["native", "threaded"])
def test_client_hanging_up_mid_body_costs_nothing(server, request):
    proc = request.getfixturevalue(server)
    pids = proc.worker_pids()
    for _ in range(5):
        sock = connect(proc.port)
        sock.sendall(head("/stream", 8 * MiB) + payload(MiB))
        sock.close()
    time.sleep(0.3)
    data = payload(2 * MiB)
    assert post(proc.port, "/stream", data)[2].decode() == digest("BodyStream", data)
    assert proc.worker_pids() == pids


# -- handler threads ---------------------------------------------------------------------------

@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
def test_threads_stream_bodies_concurrently(threaded, use_chunked):
    datas = [payload(3 * MiB + i) for i in range(4)]
    results: List[Optional[str]] = [None] * 4

    def run(i: int) -> None:
        results[i] = post(threaded.port, "/stream", datas[i], use_chunked)[2].decode()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert results == [digest("BodyStream", d) for d in datas]


def test_slow_reader_with_threads_keeps_the_worker_serving():
    """A handler thread in the middle of reading a body holds one thread; the
    loop and the other threads go on answering: the handler, after its first
    piece, waits until 5 requests were answered beside it."""
    with ForkerProcess("--threads", "4", app="body_app:slow_app") as server:
        data = payload(2 * MiB)
        done: List[str] = []
        slow = threading.Thread(
            target=lambda: done.append(post(server.port, "/hold?5", data)[2].decode()))
        slow.start()
        beside = 0
        deadline = time.monotonic() + 20  # a bound on a hang
        while beside < 5:
            status, _, body = post(server.port, "/beside", b"")
            assert status == 200
            if body == b"while holding":
                beside += 1
            else:
                assert beside == 0 and time.monotonic() < deadline, "the handler never held"
                time.sleep(0.02)
        slow.join(30)
        assert done == [digest("BodyStream", data)]
