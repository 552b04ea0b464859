"""Who owns a connection slot, its request body and its response file while a
handler runs (csrc/fk_loop.c, "Who owns a slot"): through a real server, with
clients that leave, reset, half-close, keep what they should not, or raise.

Under the sanitizer build (tests/sanitize.sh) a broken rule is a report and a
dead worker; in the normal build each test still checks what a client sees,
that the worker survived and that nothing was left behind (descriptors,
sockets in CLOSE-WAIT)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from typing import Callable, List

import pytest

from apps.lifecycle_app import pattern
from harness import (
    ForkerProcess, Reader, connect, cpu_seconds, get, open_fds, read_until_close, reset,
    wait_for,
)

NATIVE = "lifecycle_app:app"
WSGI = "lifecycle_app:wsgi_app"


def server(tmp_path, *args: str, app: str = NATIVE, workers: int = 1) -> ForkerProcess:
    return ForkerProcess(*args, workers=workers, app=app, env={"FORKER_TEST_DIR": str(tmp_path)})


def started(tmp_path) -> int:
    return sum(1 for name in os.listdir(tmp_path) if name.startswith("started-"))


def request(sock: socket.socket, target: str, body: bytes = b"", close: bool = False) -> None:
    fields = f"Content-Length: {len(body)}\r\n" if body else ""
    if close:
        fields += "Connection: close\r\n"
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n{fields}\r\n".encode() + body)


def chunked(data: bytes, size: int = 1000) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
             for i in range(0, len(data), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def digest(data: bytes) -> bytes:
    return b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode())


def close_wait(port: int) -> int:
    """Server sockets of port in CLOSE-WAIT (the client's FIN received, ours
    never sent)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == port and fields[3] == "08":
                        count += 1
        except FileNotFoundError:
            continue
    return count


# -- the slab: slots Python still holds are not free ------------------------------------

def test_slots_held_by_handler_threads_are_not_reused(tmp_path):
    """Clients that reset while their handlers run leave slots that Python
    holds: the loop accepts no connection into a slot it does not have (the
    old loop counted sockets, and wrote past its array), and the clients that
    wait meanwhile are served once the handlers return."""
    with server(tmp_path, "--threads", "2", "--max-connections", "2") as srv:
        pid = srv.worker_pids()[0]
        holders = [connect(srv.port) for _ in range(2)]
        for sock in holders:
            request(sock, "/hold")
        wait_for(lambda: started(tmp_path) == 2, "both handlers running")
        for sock in holders:
            reset(sock)
        waiting = [connect(srv.port, timeout=20) for _ in range(3)]
        for sock in waiting:
            request(sock, "/pid", close=True)
        (tmp_path / "release").touch()
        for sock in waiting:
            with sock:
                status, _, body = Reader(sock).response()
            assert (status, body) == (200, str(pid).encode())
        assert srv.worker_pids() == [pid]


def test_a_worker_whose_slots_are_all_busy_waits_without_spinning(tmp_path):
    """Every slot with a handler: nothing may be evicted, so the worker stops
    polling the listener (no busy loop) and accepts again once a slot frees."""
    with server(tmp_path, "--threads", "2", "--max-connections", "2") as srv:
        pid = srv.worker_pids()[0]
        holders = [connect(srv.port, timeout=30) for _ in range(2)]
        for sock in holders:
            request(sock, "/hold")
        wait_for(lambda: started(tmp_path) == 2, "both handlers running")
        extra = connect(srv.port, timeout=30)
        request(extra, "/pid", close=True)
        before = cpu_seconds(pid)
        time.sleep(1.0)  # a spinning worker would burn this second
        assert cpu_seconds(pid) - before < 0.5
        (tmp_path / "release").touch()
        for sock in holders + [extra]:
            with sock:
                assert Reader(sock).response()[0] == 200


def test_slow_heads_give_their_slots_to_new_clients(tmp_path):
    """Slowloris: every slot holds a connection trickling its head. A new
    client still gets a slot at once (the oldest incomplete head is closed),
    while the header timeout is a minute away."""
    with server(tmp_path, "--max-connections", "20", "--header-timeout", "60") as srv:
        slow = []
        for _ in range(40):
            sock = connect(srv.port, timeout=30)
            sock.sendall(b"GET / HTTP/1.1\r\nX-a: ")
            slow.append(sock)
        assert get(srv.port, "/pid", timeout=30)[0] == 200
        closed = 0
        for sock in slow:
            sock.settimeout(0.0)
            try:
                closed += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
            sock.close()
        assert closed >= 20  # the oldest gave way, not the new client


@pytest.mark.parametrize("reader", [[], ["--threads", "2", "--body-buffer-size", "64"]],
                         ids=["loop", "handler-thread"])
def test_a_body_trickled_below_the_minimum_rate_is_refused(tmp_path, reader):
    """A body sent a byte at a time, far below --min-request-rate, is answered
    408 once the first header_timeout has passed, long before the request
    timeout: whether the loop receives it or a handler thread reads it."""
    with server(tmp_path, "--header-timeout", "1", "--request-timeout", "600",
                "--min-request-rate", "1000", *reader) as srv:
        with connect(srv.port, timeout=60) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
            reply = b""
            for _ in range(600):  # a byte every 0.1 s at most; ends with the 408
                try:
                    sock.sendall(b"x")
                except (BrokenPipeError, ConnectionResetError):
                    break
                sock.settimeout(0.1)
                try:
                    reply = sock.recv(4096)
                except socket.timeout:
                    continue
                break
        assert reply.startswith(b"HTTP/1.1 408")


# -- a request's body is its handler's until the request ends -------------------------

def test_body_drained_by_close_after_the_response_is_posted(tmp_path):
    """A WSGI iterable whose close() drains wsgi.input, on a handler thread:
    the body is read whole and is this client's, while other clients send
    theirs on the same worker (the old loop ended the request first, and the
    thread read freed memory or the next client's socket)."""
    with server(tmp_path, "--threads", "4", "--body-buffer-size", "1024", app=WSGI) as srv:
        pid = srv.worker_pids()[0]
        errors: List[str] = []

        def client(n: int) -> None:
            body = os.urandom(4000 + 97 * n)
            try:
                for round_ in range(5):
                    key = f"{n}-{round_}"
                    with connect(srv.port, timeout=20) as sock:
                        sock.sendall(f"POST /wsgi-drain?{key} HTTP/1.1\r\nHost: t\r\n"
                                     f"Transfer-Encoding: chunked\r\n\r\n".encode() + chunked(body))
                        status, _, got = Reader(sock).response()
                    if (status, got) != (200, b"streamed"):
                        errors.append(f"{key}: {status} {got[:80]!r}")
                        continue
                    with connect(srv.port, timeout=20) as sock:
                        request(sock, f"/drained?{key}", close=True)
                        status, _, got = Reader(sock).response()
                    if got != digest(body):
                        errors.append(f"{key}: drained {got!r}, sent {digest(body)!r}")
            except OSError as exc:
                errors.append(f"client {n}: {exc!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert srv.worker_pids() == [pid]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_kept_stream_cannot_read_the_next_request(tmp_path, threads):
    """A handler that keeps request.stream past its request: reading it on the
    next request of the same connection raises instead of handing over that
    request's body."""
    with server(tmp_path, "--threads", threads, "--body-buffer-size", "16") as srv:
        # larger than a first read: the handler gets the request before its body
        first, second = b"a" * 200_000, b"secret-" * 30_000
        with connect(srv.port) as sock:
            reader = Reader(sock)
            request(sock, "/keep", first)
            assert reader.response()[::2] == (200, digest(first))
            request(sock, "/read-kept", second)
            status, _, body = reader.response()
        assert (status, body) == (200, b"refused")


# -- files: the handler's until the loop has sent them ---------------------------------

def test_files_on_closing_connections_are_closed(tmp_path):
    """50 concurrent file responses on connections that close after them: every
    file is closed and every response logged (the old loop freed the slot
    before Python heard that the file was sent)."""
    (tmp_path / "f.bin").write_bytes(os.urandom(300_000))
    log_path = tmp_path / "access.log"
    with server(tmp_path, "--access-log", str(log_path)) as srv:
        pid = srv.worker_pids()[0]
        assert get(srv.port, "/pid")[0] == 200
        baseline = open_fds(pid)
        expected = (tmp_path / "f.bin").read_bytes()
        socks = [connect(srv.port, timeout=20) for _ in range(50)]
        for sock in socks:
            request(sock, "/file?f.bin", close=True)
        for sock in socks:
            with sock:
                data, closed = read_until_close(sock, timeout=20)
            assert closed and data.endswith(expected)
        wait_for(lambda: open_fds(pid) <= baseline, f"worker back to {baseline} descriptors")

        def logged() -> int:
            return sum("/file?f.bin" in line for line in log_path.read_text().splitlines())
        wait_for(lambda: logged() == 50, "50 access-log lines")


def test_large_files_reach_a_slow_reader_whole(tmp_path):
    """20 MB sent with sendfile to a client reading slowly, then 200 MB to a
    quick one: both whole (the old loop stopped for good at the first full
    socket buffer)."""
    small = os.urandom(1 << 20) * 20
    (tmp_path / "20m.bin").write_bytes(small)
    with open(tmp_path / "200m.bin", "wb") as f:
        for _ in range(10):
            f.write(small)
    with server(tmp_path) as srv:
        with connect(srv.port, timeout=30, rcvbuf=65536) as sock:
            request(sock, "/file?20m.bin")
            sock.settimeout(30)
            reader = Reader(sock)
            reader._fill = slow_fill(reader)  # type: ignore[method-assign]
            status, fields, body = reader.response()
            assert status == 200 and int(fields["content-length"]) == len(small)
            assert hashlib.sha256(body).digest() == hashlib.sha256(small).digest()
            request(sock, "/file?200m.bin", close=True)
            reader._fill = Reader._fill.__get__(reader)  # type: ignore[method-assign]
            hasher, total = hashlib.sha256(), 0
            status, fields, _ = reader.response(head_only=True)
            assert status == 200
            hasher.update(reader.buf)
            total += len(reader.buf)
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                hasher.update(chunk)
                total += len(chunk)
        assert total == int(fields["content-length"]) == 10 * len(small)
        expected = hashlib.sha256()
        for _ in range(10):
            expected.update(small)
        assert hasher.digest() == expected.digest()


def slow_fill(reader: Reader) -> Callable[[], bool]:
    """A recv of at most 64 KiB with a pause before each: a slow client."""
    def fill() -> bool:
        time.sleep(0.002)
        chunk = reader.sock.recv(65536)
        if not chunk:
            return False
        reader.buf += chunk
        return True
    return fill


@pytest.mark.parametrize("threads", ["1", "4"])
def test_large_bodies_pipelined_to_a_slow_reader_arrive_whole_in_order(tmp_path, threads):
    """Bodies of 32 KiB and more are sent from the application's bytes, not
    copied (with threads, by the loop's turn): the answers that follow one
    must wait until its last byte is out, and the bytes must stay alive until
    then although the application dropped them."""
    sizes = [3 << 20, 0, 100_000, 40_000, 1 << 20, 0, 5]
    with server(tmp_path, "--threads", threads) as srv:
        with connect(srv.port, timeout=30, rcvbuf=65536) as sock:
            sock.sendall(b"".join(
                b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % (b"/bytes?%d" % size if size else b"/pid")
                for size in sizes))
            reader = Reader(sock)
            reader._fill = slow_fill(reader)  # type: ignore[method-assign]
            for size in sizes:
                status, fields, body = reader.response()
                assert status == 200
                if size:
                    assert int(fields["content-length"]) == size
                    assert body == pattern(size), f"the {size}-byte body differs"
                else:
                    assert body == str(srv.worker_pids()[0]).encode()


def test_a_file_sent_to_a_client_that_stops_reading_times_out(tmp_path):
    """The write timeout applies to file bodies: a client that stops reading
    is closed (the old loop took it for a slow producer and kept it forever)."""
    with open(tmp_path / "big.bin", "wb") as f:
        f.truncate(256 << 20)  # sparse
    with server(tmp_path, "--write-timeout", "1") as srv:
        pid = srv.worker_pids()[0]
        assert get(srv.port, "/pid")[0] == 200
        baseline = open_fds(pid)
        with connect(srv.port, timeout=30, rcvbuf=65536) as sock:
            request(sock, "/file?big.bin")
            wait_for(lambda: open_fds(pid) > baseline, "the file opened")
            wait_for(lambda: open_fds(pid) <= baseline, "the socket and the file closed")
            data, closed = read_until_close(sock, timeout=30)
        assert closed and len(data) < 256 << 20
        assert get(srv.port, "/pid")[2] == str(pid).encode()


def test_a_file_that_shrinks_while_sent_ends_the_connection(tmp_path):
    path = tmp_path / "shrinks.bin"
    path.write_bytes(os.urandom(1 << 20) * 32)
    with server(tmp_path) as srv:
        pid = srv.worker_pids()[0]
        with connect(srv.port, timeout=30, rcvbuf=65536) as sock:
            request(sock, "/file?shrinks.bin")
            got = sock.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")
            os.truncate(path, 1 << 20)
            data, closed = read_until_close(sock, timeout=30)
        assert closed and len(got) + len(data) < 32 << 20
        assert get(srv.port, "/pid")[2] == str(pid).encode()


# -- the client's FIN ---------------------------------------------------------------

def watched(port: int) -> socket.socket:
    """A connection the worker has accepted and waits on: one request answered."""
    sock = connect(port, timeout=30)
    request(sock, "/pid")
    assert Reader(sock).response()[0] == 200
    return sock


def send_with_fin(sock: socket.socket, data: bytes) -> None:
    """data and the FIN in one segment: corked, the FIN joins the unsent data."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def test_a_fin_that_arrives_with_data_is_seen(tmp_path):
    """Part of a request and the FIN in one segment, on a connection the worker
    waits on: the server closes at once (the old loop took the short read for
    the end of the data, missed the FIN that edge-triggered epoll reports only
    once, and sat in CLOSE-WAIT until the header timeout)."""
    with server(tmp_path, "--header-timeout", "60", "--keep-alive", "60") as srv:
        socks = [watched(srv.port) for _ in range(20)]
        for sock in socks:
            send_with_fin(sock, b"GET /partial HTTP/1.1\r\nHost: t\r\n")
        for sock in socks:
            with sock:
                data, closed = read_until_close(sock, timeout=30)
            assert closed and data == b""
        wait_for(lambda: close_wait(srv.port) == 0, "no server socket in CLOSE-WAIT")


def test_many_partial_requests_with_fin_leave_nothing_behind(tmp_path):
    """500 connections that each send part of a head with their FIN, then let
    go of their socket, as an attacker holding no socket would: none stays in
    CLOSE-WAIT, and a normal client is served."""
    with server(tmp_path, "--header-timeout", "60", "--keep-alive", "60") as srv:
        for _ in range(500):
            sock = watched(srv.port)
            send_with_fin(sock, b"GET / HTTP/1.1\r\nHost")
            sock.close()
        wait_for(lambda: close_wait(srv.port) == 0, "no server socket in CLOSE-WAIT")
        assert get(srv.port, "/pid")[0] == 200


def test_a_request_then_a_half_close_is_answered_then_closed(tmp_path):
    """A whole request and the FIN in one segment: answered, then closed at
    once rather than at the keep-alive deadline."""
    with server(tmp_path, "--keep-alive", "60") as srv:
        with watched(srv.port) as sock:
            send_with_fin(sock, b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
            data, closed = read_until_close(sock, timeout=30)
        assert closed and data.startswith(b"HTTP/1.1 200")


# -- handlers that raise SystemExit or KeyboardInterrupt --------------------------------

@pytest.mark.parametrize("threads", ["1", "4"])
@pytest.mark.parametrize("app,target", [(NATIVE, "/exit"), (NATIVE, "/interrupt"),
                                        (WSGI, "/exit")])
def test_system_exit_from_a_handler_is_a_500(tmp_path, threads, app, target):
    with server(tmp_path, "--threads", threads, app=app) as srv:
        pid = srv.worker_pids()[0]
        for _ in range(6):
            assert get(srv.port, target)[0] == 500
        assert get(srv.port, "/pid")[2] == str(pid).encode()
        assert srv.worker_pids() == [pid]


# -- a slow but steady upload is not a stuck handler -----------------------------------

@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_steady_upload_longer_than_timeout_keeps_its_worker(tmp_path, threads):
    """The body arrives for 5 s, a piece every 0.1 s, with --timeout 2: the
    handler makes progress all along, so the master must not kill the worker."""
    with server(tmp_path, "--threads", threads, "--body-buffer-size", "64", "--timeout", "2",
                "--request-timeout", "60") as srv:
        pid = srv.worker_pids()[0]
        piece = b"z" * 100
        with connect(srv.port, timeout=30) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                         % (50 * len(piece)))
            for _ in range(50):
                time.sleep(0.1)  # the client's pace, not a synchronisation
                sock.sendall(piece)
            status, _, body = Reader(sock).response()
        assert (status, body) == (200, digest(piece * 50))
        assert srv.worker_pids() == [pid]


def test_a_client_address_holds_at_most_its_cap(tmp_path):
    """--max-connections-per-address: one address's connections beyond the cap
    are closed at accept (without an answer), while another address and the
    first one, once it closed some, are served."""
    with server(tmp_path, "--max-connections-per-address", "3", "--keep-alive", "60") as srv:
        held = [watched(srv.port) for _ in range(3)]
        extra = connect(srv.port, timeout=30)
        request(extra, "/pid")
        data, closed = read_until_close(extra, timeout=30)
        assert closed and data == b""
        extra.close()
        other = socket.socket()
        other.settimeout(30)
        other.bind(("127.0.0.2", 0))
        other.connect(("127.0.0.1", srv.port))
        with other:
            request(other, "/pid", close=True)
            assert Reader(other).response()[0] == 200
        held.pop().close()

        def served() -> bool:
            try:
                return get(srv.port, "/pid")[0] == 200
            except EOFError:  # closed at accept: the server has not seen the close yet
                return False
        wait_for(served, "a freed place taken")
        for sock in held:
            sock.close()
