"""Limits and timeouts through real sockets against `python -m forker`.

Each limit is checked on both sides of its boundary; timeouts use one- or
two-second settings, and a close must come no earlier than the timeout and
before a bound that only catches a hang (a busy machine delays the close, it
cannot make it early)."""

from __future__ import annotations

import fcntl
import os
import resource
import select
import socket
import sys
import termios
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import (  # noqa: E402
    ForkerProcess, Reader, connect, cpu_seconds, exchange, get, open_fds, read_until_close,
)

KiB, MiB = 1 << 10, 1 << 20
APP = "hardening_app:app"


@pytest.fixture(scope="module")
def strict():
    with ForkerProcess("--limit-request-line", "100", "--limit-request-field-size", "100",
                       "--limit-request-fields", "10", "--max-body-size", "1000",
                       "--header-timeout", "1", "--request-timeout", "2",
                       "--keep-alive", "1", "--write-timeout", "1",
                       # the request timeout alone bounds a slow body here
                       "--min-request-rate", "0", app=APP) as server:
        yield server


@pytest.fixture(scope="module")
def defaults():
    with ForkerProcess(app=APP) as server:
        yield server


# Timeout tests check that a connection is closed, not before its timeout, and
# within a bound (10 s) that only catches a hang: each runs where no other
# timeout could close the connection first (it is 60 s, or the client's
# dribbling keeps it from firing).

@pytest.fixture(scope="module")
def head_1s():
    with ForkerProcess("--header-timeout", "1", "--request-timeout", "60", app=APP) as server:
        yield server


@pytest.fixture(scope="module")
def keepalive_1s():
    with ForkerProcess("--keep-alive", "1", "--header-timeout", "60", "--request-timeout", "60",
                       app=APP) as server:
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


# The chunked framing's fixed bounds (SECURITY.md): a chunk-size line, size and
# extensions, of at most 4096 bytes (CRLF not counted), a trailer section of at
# most 8192 bytes (from its first field to the final CRLF included); 400 beyond,
# and the request pipelined behind is never answered.

CHUNKED_POST = head(b"POST /echo HTTP/1.1", b"Host: t", b"Transfer-Encoding: chunked")
AFTER = b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def trailer_section(size: int) -> bytes:
    """A trailer section of exactly `size` bytes: one field and the final CRLF."""
    return b"X-Trailer: " + b"v" * (size - len("X-Trailer: \r\n\r\n")) + b"\r\n\r\n"


@pytest.mark.parametrize("line", [b"0" * 4095 + b"1", b"1;" + b"e" * 4094],
                         ids=["size", "extension"])
def test_chunk_size_line_at_limit_is_served(defaults, line):
    assert len(line) == 4096
    data = exchange(defaults.port, CHUNKED_POST + line + b"\r\nx\r\n0\r\n\r\n" + AFTER)
    assert status_of(data) == 200 and b"\r\n\r\n1 x" in data, data[:300]
    assert data.count(b"HTTP/1.1 ") == 2 and b"path=/after" in data, data[:300]


@pytest.mark.parametrize("line", [b"0" * 4096 + b"1", b"1;" + b"e" * 4095],
                         ids=["size", "extension"])
def test_chunk_size_line_over_limit_is_400_and_closes(defaults, line):
    assert len(line) == 4097
    data = exchange(defaults.port, CHUNKED_POST + line + b"\r\nx\r\n0\r\n\r\n" + AFTER)
    assert status_of(data) == 400 and data.count(b"HTTP/1.1 ") == 1, data[:300]


def test_chunk_size_line_over_limit_is_400_before_its_end(defaults):
    """The bound holds as bytes arrive: no CRLF ever comes."""
    with connect(defaults.port) as sock:
        sock.sendall(CHUNKED_POST + b"0" * 8192)
        data, closed = read_until_close(sock, 10)
    assert status_of(data) == 400 and closed


def test_trailer_section_at_limit_is_served(defaults):
    trailer = trailer_section(8192)
    assert len(trailer) == 8192
    data = exchange(defaults.port, CHUNKED_POST + b"1\r\nx\r\n0\r\n" + trailer + AFTER)
    assert status_of(data) == 200 and b"\r\n\r\n1 x" in data, data[:300]
    assert data.count(b"HTTP/1.1 ") == 2 and b"path=/after" in data, data[:300]


def test_trailer_section_over_limit_is_400_and_closes(defaults):
    trailer = trailer_section(8193)
    data = exchange(defaults.port, CHUNKED_POST + b"1\r\nx\r\n0\r\n" + trailer + AFTER)
    assert status_of(data) == 400 and data.count(b"HTTP/1.1 ") == 1, data[:300]


def test_trailer_section_of_many_small_fields_over_limit_is_400(defaults):
    """The bound is on the section, not on each field line."""
    fields = b"".join(b"X-T%04d: v\r\n" % i for i in range(1000))  # 12 000 bytes
    data = exchange(defaults.port, CHUNKED_POST + b"1\r\nx\r\n0\r\n" + fields + b"\r\n" + AFTER)
    assert status_of(data) == 400 and data.count(b"HTTP/1.1 ") == 1, data[:300]


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
    with ForkerProcess("--threads", "2", "--max-body-size", "200000", app=APP) as server:
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


def test_header_timeout_closes_a_slowloris(head_1s):
    """One byte of head every 0.2 s: the head deadline (1 s) is not extended."""
    with connect(head_1s.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        data, elapsed = dribble_until_closed(sock, (b"X" for _ in range(1000)), 0.2, 10)
    assert status_of(data) == 408
    assert elapsed >= 0.9


def test_header_timeout_closes_a_silent_connection(head_1s):
    start = time.monotonic()
    with connect(head_1s.port) as sock:
        data, closed = read_until_close(sock, 10)
    elapsed = time.monotonic() - start
    assert closed and data == b""
    assert elapsed >= 0.9


def test_request_timeout_bounds_a_slow_body(strict):
    """Each body byte arrives within the read timeout (1 s), but the whole
    request must be in within request_timeout (2 s)."""
    with connect(strict.port) as sock:
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Content-Length: 900"))
        data, elapsed = dribble_until_closed(sock, (b"b" for _ in range(900)), 0.25, 10)
    assert status_of(data) == 408  # each byte within the read timeout: nothing else closes it
    assert elapsed >= 1.9


def test_request_timeout_applies_to_wsgi_with_handler_threads():
    """The C loop reads the whole request before any handler runs, so the
    deadline holds whatever the interface."""
    with ForkerProcess("--interface", "wsgi", "--threads", "4", "--header-timeout", "5",
                       "--request-timeout", "1",
                       app="wsgiapps:environ_app") as server:
        with connect(server.port) as sock:
            sock.sendall(head(b"POST / HTTP/1.1", b"Host: t", b"Content-Length: 900"))
            data, elapsed = dribble_until_closed(sock, (b"b" for _ in range(900)), 0.25, 10)
    assert status_of(data) == 408
    assert elapsed >= 0.9


def test_body_read_timeout_closes_a_stalled_body(head_1s):
    """A body that stops arriving: the read timeout (header_timeout) applies."""
    with connect(head_1s.port) as sock:
        start = time.monotonic()
        sock.sendall(head(b"POST /echo HTTP/1.1", b"Host: t", b"Content-Length: 900") + b"b" * 10)
        data, closed = read_until_close(sock, 10)
    elapsed = time.monotonic() - start
    assert closed and status_of(data) == 408
    assert elapsed >= 0.9


def test_keepalive_idle_connection_is_closed(keepalive_1s):
    with connect(keepalive_1s.port) as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        status, fields, _ = Reader(sock).response()
        assert status == 200 and fields.get("connection", "").lower() != "close"
        start = time.monotonic()
        data, closed = read_until_close(sock, 10)
    elapsed = time.monotonic() - start
    assert closed and data == b""
    assert elapsed >= 0.9


def test_keepalive_zero_closes_after_each_response():
    with ForkerProcess("--keep-alive", "0", app=APP) as server:
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
    start = time.monotonic()  # before the worker's last write, from which it counts
    with connect(strict.port, rcvbuf=4096) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target.encode())
        assert sock.recv(1)  # the response began: the worker holds the connection
        # the worker gives up on us while we read nothing (10 s: a bound on a hang)
        assert wait_for(lambda: open_fds(worker) == baseline, 10), \
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


# -- lingering close ----------------------------------------------------------------
# SECURITY.md: after an error response the worker shuts its side down and drains
# the client's remaining input for at most 2 s and 1 MiB before closing. A plain
# close() with unread input resets the connection instead: the client's next
# read fails with ECONNRESET where it should see the response and its end.

OVERSIZED_POST = head(b"POST /echo HTTP/1.1", b"Host: t", b"Content-Length: 100000000")


def _error_then_eof(sock: socket.socket) -> int:
    """Reads one whole response, then requires the end of the stream (a FIN, not
    a reset) with nothing after it; returns the response's status."""
    reader = Reader(sock)
    status, fields, body = reader.response()
    assert fields.get("connection") == "close" and len(body) == int(fields["content-length"])
    try:
        rest = sock.recv(65536)
    except ConnectionResetError:
        raise AssertionError(f"reset after the {status} instead of a lingering close") from None
    assert reader.buf + rest == b"", (reader.buf + rest)[:200]
    return status


def _send_until_closed(sock: socket.socket, piece: bytes, total: int, pause: float = 0.0) -> int:
    """Sends piece after piece until the server has closed (send fails) or
    `total` bytes went out; returns the bytes sent."""
    sent = 0
    while sent < total:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sent += len(piece)
        if pause:
            time.sleep(pause)
    return sent


def _tcp_buffer_max(name: str) -> int:
    with open(f"/proc/sys/net/ipv4/{name}") as f:
        return int(f.read().split()[2])


def test_lingering_close_lets_the_client_read_the_error_then_drains_at_most_1_mib(strict):
    """The client sends body bytes the server will never read: it gets the 413
    whole and a clean end of stream, may keep sending for a while, and the
    connection is closed once the worker drained 1 MiB. What the client gets
    to send is that MiB plus what the kernel buffers (the worker's receive
    buffer, the client's send buffer); without the byte limit a client sending
    at loopback speed would pass 64 MiB more long before the 2 s deadline."""
    most = MiB + _tcp_buffer_max("tcp_rmem") + _tcp_buffer_max("tcp_wmem") + 64 * MiB
    with connect(strict.port, timeout=30) as sock:
        sock.sendall(OVERSIZED_POST + b"b" * (64 * KiB))  # unread when the 413 goes out
        assert _error_then_eof(sock) == 413
        sent = _send_until_closed(sock, b"b" * (64 * KiB), most)
    assert sent < most, f"the worker drained {sent / MiB:.0f} MiB after its error response"


def test_lingering_close_ends_after_2_seconds_for_a_slow_client(strict):
    """A client dribbling bytes after the error stays far below 1 MiB: the
    linger's deadline closes the connection (the 30 s only bound a hang)."""
    with connect(strict.port, timeout=30) as sock:
        sock.sendall(OVERSIZED_POST + b"b" * 1000)
        assert _error_then_eof(sock) == 413
        sent = _send_until_closed(sock, b"b" * 100, 30 * 10 * 100, pause=0.1)
    assert sent < 30 * 10 * 100, "the worker lingered for 30 s"
    assert get(strict.port, "/pid")[0] == 200


# -- connections -------------------------------------------------------------------

def served(sock: socket.socket, timeout: float) -> bool:
    readable, _, _ = select.select([sock], [], [], timeout)
    return bool(readable)


def test_a_full_worker_gives_the_oldest_idle_slot_to_a_new_client():
    """At max_connections a new client is not left in the kernel's queue: the
    connection idle the longest gives up its slot (nginx's reuse of idle
    keep-alive connections), the others stay."""
    with ForkerProcess("--max-connections", "10", "--keep-alive", "60",
                       "--header-timeout", "60", app=APP) as server:
        (worker,) = server.worker_pids()
        held = []
        try:
            for _ in range(10):
                sock = connect(server.port)
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
                assert Reader(sock).response()[0] == 200
                held.append(sock)
            extra = connect(server.port, timeout=30)
            held.append(extra)
            extra.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(extra).response()[0] == 200
            data, closed = read_until_close(held[0], timeout=30)
            assert closed and data == b""
            held[1].sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(held[1]).response()[0] == 200
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
    with ForkerProcess("--header-timeout", "60", preexec=limit_nofile(64), app=APP) as server:
        (worker,) = server.worker_pids()
        held = []
        try:
            for _ in range(100):
                held.append(connect(server.port))
            assert wait_for(lambda: open_fds(worker) >= 60, 30)
            cpu_before = cpu_seconds(worker)
            time.sleep(2.0)
            assert cpu_seconds(worker) - cpu_before < 0.3, "the worker spins on EMFILE"
        finally:
            for sock in held:
                sock.close()
        assert wait_for(lambda: _served_ok(server.port), 30)
        assert server.worker_pids() == [worker]


def _served_ok(port: int) -> bool:
    try:
        return get(port, "/pid", timeout=1)[0] == 200
    except OSError:
        return False


def _tcp_queue(local_port: int, remote_port: int) -> int:
    """tx_queue of the IPv4 socket 127.0.0.1:local_port -> 127.0.0.1:remote_port,
    from /proc/net/tcp: bytes written to it that the peer has not acknowledged."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16), int(remote.split(":")[1], 16)) == \
                    (local_port, remote_port):
                return int(fields[4].split(":")[0], 16)
    raise AssertionError(f"no socket {local_port} -> {remote_port} in /proc/net/tcp")


def _big_answered(port: int) -> int:
    status, _, body = get(port, "/bigcount")
    assert status == 200, status
    return int(body)


def test_pipelined_requests_from_a_client_that_does_not_read_are_bounded(strict):
    """SECURITY.md: while a connection has more than 256 KiB of response bytes
    waiting to be sent, the worker neither reads nor parses the client's next
    pipelined request. A client pipelines 200 requests for 1 MiB each and reads
    nothing; once the worker stops answering, the bytes it answered minus those
    the kernel holds (its send queue, the client's receive queue) are what it
    buffers: at most 256 KiB plus the one response that crossed the mark."""
    before = _big_answered(strict.port)
    with connect(strict.port, rcvbuf=4096) as sock:
        sock.sendall(b"GET /big?1 HTTP/1.1\r\nHost: t\r\n\r\n" * 200)
        client_port = sock.getsockname()[1]

        def sample():
            answered = _big_answered(strict.port) - before
            in_kernel = (_tcp_queue(strict.port, client_port)
                         + int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4),
                                          sys.byteorder))
            return answered, in_kernel

        # Until the worker has stopped answering and the kernel's queues stopped
        # filling (a worker without the bound answers all 200 first); the
        # deadline only bounds a hang.
        last, now = None, sample()
        deadline = time.monotonic() + 60
        while now != last:
            assert time.monotonic() < deadline, f"still moving: {now}"
            time.sleep(0.2)
            last, now = now, sample()
        answered, in_kernel = now
        buffered = answered * MiB - in_kernel  # response heads left out: an underestimate
        assert 1 <= answered < 200
        assert buffered <= 256 * KiB + MiB, \
            f"the worker buffers {buffered / MiB:.1f} MiB: answered {answered} requests of 1 MiB, " \
            f"the kernel holds {in_kernel / MiB:.1f} MiB"
    assert wait_for(lambda: _served_ok(strict.port), 30)


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


def test_bodies_received_whole_are_bounded_per_worker():
    """--threads 1 receives a body whole before the application runs, each up to
    --max-body-size; their sum is bounded too (--max-input-buffer): past it the
    connection holding most is answered 503, and the worker's memory stays
    near the bound (four 90 MiB uploads took a worker to 390 MiB)."""
    import threading

    with ForkerProcess("--threads", "1", "--max-input-buffer", str(16 * MiB), app=APP) as server:
        socks = [connect(server.port, timeout=30) for _ in range(2)]
        head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 40000000\r\n\r\n"

        def upload(sock):
            try:
                sock.sendall(head + b"x" * (12 * MiB))  # and then holds the rest back
            except OSError:
                pass  # refused (503) and closed while sending

        senders = [threading.Thread(target=upload, args=(sock,), daemon=True) for sock in socks]
        for sender in senders:
            sender.start()
        answered = None
        deadline = time.monotonic() + 30
        while answered is None:
            assert time.monotonic() < deadline, "no connection was refused"
            ready, _, _ = select.select(socks, [], [], 1.0)
            for sock in ready:
                data = sock.recv(4096)
                if data:
                    answered = data
                    break
        assert answered.startswith(b"HTTP/1.1 503 "), answered[:100]
        for sock in socks:
            sock.close()
        for sender in senders:
            sender.join(30)
