"""Limits and timeouts through real sockets against `python -m forker`.

Each limit is checked on both sides of its boundary; timeouts use one-second
settings, so the expected close happens between the timeout and the timeout
plus the loop's once-a-second sweep (with slack for a busy machine)."""

from __future__ import annotations

import os
import resource
import select
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from forker_proc import (  # noqa: E402
    ForkerProcess, Reader, connect, cpu_seconds, exchange, get, open_fds, read_until_close,
    rss_bytes,
)

SWEEP_SLACK = 2.5  # the sweep runs once a second; the machine may be busy


@pytest.fixture(scope="module")
def strict():
    with ForkerProcess("--limit-request-line", "100", "--limit-request-field-size", "100",
                       "--limit-request-fields", "10", "--max-body-size", "1000",
                       "--header-timeout", "1", "--request-timeout", "2",
                       "--keep-alive", "1", "--write-timeout", "1") as server:
        yield server


@pytest.fixture(scope="module")
def defaults():
    with ForkerProcess() as server:
        yield server


def status_of(data: bytes) -> int:
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data[9:12])


def request_line_of(length: int) -> bytes:
    """A request line of exactly `length` bytes (CRLF not counted)."""
    fixed = len("GET / HTTP/1.1") + len("?")
    return b"GET /?" + b"a" * (length - fixed) + b" HTTP/1.1"


def field_line_of(length: int) -> bytes:
    """A field line of exactly `length` bytes (CRLF not counted)."""
    return b"X-Pad: " + b"v" * (length - len("X-Pad: "))


def head(*lines: bytes) -> bytes:
    return b"\r\n".join(lines + (b"", b""))


# -- request line, fields ---------------------------------------------------------------

def test_request_line_at_limit_is_served(strict):
    line = request_line_of(100)
    assert len(line) == 100
    assert status_of(exchange(strict.port, head(line, b"Host: t", b"Connection: close"))) == 200


def test_request_line_over_limit_is_414(strict):
    data = exchange(strict.port, head(request_line_of(101), b"Host: t"))
    assert status_of(data) == 414


def test_request_line_over_limit_is_414_before_its_end(strict):
    """The limit is enforced as bytes arrive, not once the line is complete."""
    with connect(strict.port) as sock:
        sock.sendall(b"GET /" + b"a" * 200)
        data, closed = read_until_close(sock, 3)
    assert status_of(data) == 414 and closed


def test_field_line_at_limit_is_served(strict):
    data = exchange(strict.port, head(b"GET / HTTP/1.1", b"Host: t", field_line_of(100),
                                      b"Connection: close"))
    assert status_of(data) == 200


def test_field_line_over_limit_is_431(strict):
    data = exchange(strict.port, head(b"GET / HTTP/1.1", b"Host: t", field_line_of(101)))
    assert status_of(data) == 431


def test_fields_at_limit_are_served(strict):
    fields = [b"Host: t", b"Connection: close"] + [b"X-%d: v" % i for i in range(8)]
    assert len(fields) == 10
    assert status_of(exchange(strict.port, head(b"GET / HTTP/1.1", *fields))) == 200


def test_too_many_fields_is_431(strict):
    fields = [b"Host: t"] + [b"X-%d: v" % i for i in range(10)]
    assert status_of(exchange(strict.port, head(b"GET / HTTP/1.1", *fields))) == 431


def test_default_request_line_limit_is_8190(defaults):
    ok = exchange(defaults.port, head(request_line_of(8190), b"Host: t", b"Connection: close"))
    assert status_of(ok) == 200
    assert status_of(exchange(defaults.port, head(request_line_of(8191), b"Host: t"))) == 414


def test_default_field_size_limit_is_8190(defaults):
    ok = exchange(defaults.port, head(b"GET / HTTP/1.1", b"Host: t", field_line_of(8190),
                                      b"Connection: close"))
    assert status_of(ok) == 200
    bad = exchange(defaults.port, head(b"GET / HTTP/1.1", b"Host: t", field_line_of(8191)))
    assert status_of(bad) == 431


def test_default_field_count_limit_is_100(defaults):
    fields = [b"Host: t", b"Connection: close"] + [b"X-%d: v" % i for i in range(98)]
    assert status_of(exchange(defaults.port, head(b"GET / HTTP/1.1", *fields))) == 200
    fields.append(b"X-One-Too-Many: v")
    assert status_of(exchange(defaults.port, head(b"GET / HTTP/1.1", *fields))) == 431


# -- body size ----------------------------------------------------------------------

def test_body_at_limit_is_served(strict):
    data = exchange(strict.port, head(b"POST /echo HTTP/1.1", b"Host: t", b"Content-Length: 1000",
                                      b"Connection: close") + b"b" * 1000)
    assert status_of(data) == 200 and data.endswith(b"1000 " + b"b" * 32)


def test_content_length_over_limit_is_413_before_the_body(strict):
    """The server answers from the head alone: the client never sends the body."""
    with connect(strict.port) as sock:
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Content-Length: 1001"))
        data, closed = read_until_close(sock, 3)
    assert status_of(data) == 413 and closed


def test_default_body_limit_is_100_mib(defaults):
    with connect(defaults.port) as sock:
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t",
                          b"Content-Length: %d" % (100 * 1024 * 1024 + 1)))
        data, closed = read_until_close(sock, 3)
    assert status_of(data) == 413 and closed
    with connect(defaults.port) as sock:  # at the limit: the server waits for the body
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t",
                          b"Content-Length: %d" % (100 * 1024 * 1024)) + b"z" * 1000)
        data, closed = read_until_close(sock, 0.5)
    assert data == b"" and not closed


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def test_chunked_body_at_limit_is_served(strict):
    data = exchange(strict.port, head(b"POST /echo HTTP/1.1", b"Host: t",
                                      b"Transfer-Encoding: chunked", b"Connection: close")
                    + chunked(b"c" * 600, b"c" * 400))
    assert status_of(data) == 200 and b"\r\n\r\n1000 " in data


def test_chunked_body_over_limit_is_413_while_decoding(strict):
    """No length up front: the decoder counts, and the 413 comes as soon as the
    decoded body passes the limit, before the body's end."""
    with connect(strict.port) as sock:
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Transfer-Encoding: chunked")
                     + b"258\r\n" + b"c" * 600 + b"\r\n")
        data, closed = read_until_close(sock, 0.5)
        assert data == b"" and not closed  # 600 bytes: still within the limit
        sock.sendall(b"1f4\r\n" + b"c" * 401)  # 1001 bytes, chunk not even finished
        data, closed = read_until_close(sock, 3)
    assert status_of(data) == 413 and closed


def test_chunked_single_huge_chunk_is_413(strict):
    with connect(strict.port) as sock:
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Transfer-Encoding: chunked")
                     + b"7fffffffffffffff\r\n" + b"c" * 2000)
        data, closed = read_until_close(sock, 3)
    assert status_of(data) == 413 and closed



def test_chunk_size_over_limit_is_413_at_its_size_line(strict, defaults):
    """A chunk that cannot fit is refused when its size line is read, before
    any of its data comes: a huge size with the default limit too."""
    for server, first, size_line in ((strict, b"", b"3e9"),  # 1001
                                     (strict, b"258\r\n" + b"c" * 600 + b"\r\n", b"191"),  # 601 + 400
                                     (defaults, b"", b"7fffffffffffffff"),
                                     (defaults, b"", b"6400001")):  # 100 MiB + 1
        with connect(server.port) as sock:
            sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Transfer-Encoding: chunked")
                         + first + size_line + b"\r\n")
            data, closed = read_until_close(sock, 5)
        assert data and status_of(data) == 413 and closed, (size_line, data)


def test_chunk_size_over_limit_is_413_while_the_handler_reads_the_body():
    """A streamed body (handed to the handler before its end): the size line
    of a chunk past max_body_size makes the handler's read fail with 413."""
    with ForkerProcess("--threads", "2", "--max-body-size", "200000") as server:
        with connect(server.port) as sock:
            sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Transfer-Encoding: chunked")
                         + b"186a0\r\n" + b"c" * 100000 + b"\r\n"  # streamed from here
                         + b"20000\r\n")  # 100000 + 131072 > 200000
            data, closed = read_until_close(sock, 5)
        assert data and status_of(data) == 413 and closed, data


# -- timeouts ---------------------------------------------------------------------

def dribble_until_closed(sock: socket.socket, pieces, interval: float, limit: float):
    """Sends one piece every interval until the server answers or closes.
    Returns (data received, seconds elapsed)."""
    start = time.monotonic()
    data = b""
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        if time.monotonic() - start > limit:
            raise AssertionError("the server never closed the connection")
    rest, closed = read_until_close(sock, limit)
    assert closed, "the server never closed the connection"
    return data + rest, time.monotonic() - start


def test_header_timeout_closes_a_slowloris(strict):
    """One byte of head every 0.2 s: the head deadline (1 s) is not extended."""
    with connect(strict.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        data, elapsed = dribble_until_closed(sock, (b"X" for _ in range(1000)), 0.2, 10)
    assert status_of(data) == 408
    assert 0.9 <= elapsed <= 1 + SWEEP_SLACK


def test_header_timeout_closes_a_silent_connection(strict):
    start = time.monotonic()
    with connect(strict.port) as sock:
        data, closed = read_until_close(sock, 10)
    elapsed = time.monotonic() - start
    assert closed and data == b""
    assert 0.9 <= elapsed <= 1 + SWEEP_SLACK


def test_request_timeout_bounds_a_slow_body(strict):
    """Each body byte arrives within the read timeout (1 s), but the whole
    request must be in within request_timeout (2 s)."""
    with connect(strict.port) as sock:
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Content-Length: 900"))
        data, elapsed = dribble_until_closed(sock, (b"b" for _ in range(900)), 0.25, 10)
    assert status_of(data) == 408
    assert 1.9 <= elapsed <= 2 + SWEEP_SLACK


def test_request_timeout_applies_to_wsgi_with_handler_threads():
    """The C loop reads the whole request before any handler runs, so the
    deadline holds whatever the interface."""
    with ForkerProcess("--interface", "wsgi", "--threads", "4", "--header-timeout", "5",
                       "--request-timeout", "1",
                       app="tests.apps.wsgiapps:environ_app") as server:
        with connect(server.port) as sock:
            sock.sendall(head(b"POST / HTTP/1.1", b"Host: t", b"Content-Length: 900"))
            data, elapsed = dribble_until_closed(sock, (b"b" for _ in range(900)), 0.25, 10)
    assert status_of(data) == 408
    assert 0.9 <= elapsed <= 1 + SWEEP_SLACK


def test_body_read_timeout_closes_a_stalled_body(strict):
    """A body that stops arriving: the read timeout (header_timeout) applies."""
    with connect(strict.port) as sock:
        start = time.monotonic()
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Content-Length: 900") + b"b" * 10)
        data, closed = read_until_close(sock, 10)
    elapsed = time.monotonic() - start
    assert closed and status_of(data) == 408
    assert 0.9 <= elapsed <= 1 + SWEEP_SLACK


def test_keepalive_idle_connection_is_closed(strict):
    with connect(strict.port) as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        status, fields, _ = Reader(sock).response()
        assert status == 200 and fields.get("connection", "").lower() != "close"
        start = time.monotonic()
        data, closed = read_until_close(sock, 10)
    elapsed = time.monotonic() - start
    assert closed and data == b""
    assert 0.9 <= elapsed <= 1 + SWEEP_SLACK


def test_keepalive_zero_closes_after_each_response():
    with ForkerProcess("--keep-alive", "0") as server:
        with connect(server.port) as sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
            data, closed = read_until_close(sock, 3)
    assert status_of(data) == 200 and closed
    assert b"\r\nConnection: close\r\n" in data


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.mark.parametrize("target", ["/big?64", "/stream?64"])
def test_write_timeout_closes_a_client_that_stops_reading(strict, target):
    (worker,) = strict.worker_pids()
    baseline = open_fds(worker)
    with connect(strict.port, rcvbuf=4096) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target.encode())
        assert wait_for(lambda: open_fds(worker) == baseline + 1, 2)
        start = time.monotonic()
        # the worker gives up on us while we read nothing
        assert wait_for(lambda: open_fds(worker) == baseline, 1 + SWEEP_SLACK + 1), \
            "the worker kept a connection whose client stopped reading"
        assert time.monotonic() - start >= 0.9
        received = 0
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += len(chunk)
    assert received < 64 << 20
    assert get(strict.port, "/pid")[0] == 200


# -- connections -------------------------------------------------------------------

def served(sock: socket.socket, timeout: float) -> bool:
    readable, _, _ = select.select([sock], [], [], timeout)
    return bool(readable)


def test_max_connections_pauses_accepting_without_spinning():
    with ForkerProcess("--max-connections", "10", "--keep-alive", "60",
                       "--header-timeout", "60") as server:
        (worker,) = server.worker_pids()
        held = []
        try:
            for _ in range(10):
                sock = connect(server.port)
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
                assert Reader(sock).response()[0] == 200
                held.append(sock)
            extra = connect(server.port)  # completes in the kernel's backlog
            held.append(extra)
            extra.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
            cpu_before = cpu_seconds(worker)
            assert not served(extra, 2.0), "an 11th connection was served"
            assert cpu_seconds(worker) - cpu_before < 0.2, "the worker spins at the limit"
            held.pop(0).close()
            assert served(extra, 3.0), "a freed slot did not resume accepting"
            assert Reader(extra).response()[0] == 200
        finally:
            for sock in held:
                sock.close()
        assert server.worker_pids() == [worker]


def limit_nofile(n: int):
    def apply() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    return apply


def test_emfile_does_not_spin_and_recovers():
    """With 64 descriptors per process the worker runs out long before
    max_connections: it must back off, not spin on the listener, and accept
    again once descriptors are free."""
    with ForkerProcess("--header-timeout", "60", preexec=limit_nofile(64)) as server:
        (worker,) = server.worker_pids()
        held = []
        try:
            for _ in range(100):
                held.append(connect(server.port))
            assert wait_for(lambda: open_fds(worker) >= 60, 3)
            cpu_before = cpu_seconds(worker)
            time.sleep(2.0)
            assert cpu_seconds(worker) - cpu_before < 0.3, "the worker spins on EMFILE"
        finally:
            for sock in held:
                sock.close()
        assert wait_for(lambda: _served_ok(server.port), 5)
        assert server.worker_pids() == [worker]


def _served_ok(port: int) -> bool:
    try:
        return get(port, "/pid", timeout=1)[0] == 200
    except OSError:
        return False


def test_pipelined_requests_from_a_client_that_does_not_read_are_bounded(strict):
    """A client pipelining requests for large responses without reading any
    must not make the worker buffer every response: memory stays bounded."""
    (worker,) = strict.worker_pids()
    before = rss_bytes(worker)
    with connect(strict.port, rcvbuf=4096) as sock:
        one = b"GET /big?1 HTTP/1.1\r\nHost: t\r\n\r\n"
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and sent < 200 * len(one):
            try:
                sent += sock.send(one)
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.3)
        grown = rss_bytes(worker) - before
    assert grown < 48 << 20, f"worker RSS grew by {grown >> 20} MiB for {sent // len(one)} requests"
    assert wait_for(lambda: _served_ok(strict.port), 5)


def test_pipelined_requests_held_back_are_all_answered(strict):
    """The other side of that bound: requests held back while the client was
    not reading are answered, in order, once it reads."""
    with connect(strict.port, timeout=10) as sock:
        sock.sendall(b"".join(b"GET /big?1 HTTP/1.1\r\nHost: t\r\n\r\n" for _ in range(20))
                     + b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)
        reader = Reader(sock)
        for _ in range(20):
            status, _, body = reader.response()
            assert status == 200 and len(body) == 1 << 20
        status, _, body = reader.response()
        assert (status, body) == (200, b"path=/last")
        assert read_until_close(sock, 3) == (b"", True)
