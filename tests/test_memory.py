"""Resident memory of the workers: small after GET requests, and the buffers
of 1 MB uploads given back once the worker is quiet.

No timings: each bound is a size, with a generous margin. The bound on a
worker's RSS allows for the interpreter's own floor, measured here: a bare
`python -c` maps more or less memory depending on what the installation's
site-packages import at startup (.pth files)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import List

import pytest

from apps.memory_app import big
from harness import ForkerProcess, Reader, connect, exchange, open_fds, reset, rss_bytes

# Under tests/sanitize.sh the workers allocate through AddressSanitizer, whose
# allocator keeps freed memory in quarantine and ignores malloc_trim, and whose
# shadow memory counts in RSS: sizes measured there say nothing about forker.
pytestmark = pytest.mark.skipif(os.environ.get("FORKER_SANITIZED") == "1",
                                reason="RSS is meaningless under AddressSanitizer")

MiB = 1 << 20
APP = "memory_app:app"
WSGI_APP = "memory_app:wsgi_app"


def bare_interpreter_rss() -> int:
    """RSS of `python -c` doing nothing, in this installation."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; print('ready', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        return rss_bytes(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def get_requests(port: int, count: int) -> None:
    sock = connect(port)
    try:
        reader = Reader(sock)
        for _ in range(count):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _, body = reader.response()
            assert (status, body) == (200, b"hello")
    finally:
        sock.close()


def uploads(port: int, clients: int, each: int, size: int = MiB) -> None:
    """clients connections at once, each POSTing `each` bodies of size bytes."""
    head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size
    body = b"x" * size
    errors: List[BaseException] = []

    def client() -> None:
        try:
            sock = connect(port, timeout=30)
            try:
                reader = Reader(sock)
                for _ in range(each):
                    sock.sendall(head + body)
                    status, _, answer = reader.response()
                    assert (status, answer) == (200, str(size).encode())
            finally:
                sock.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def settled_rss(pid: int, bound: int, seconds: float = 8.0) -> int:
    """The worker's RSS once it is at most bound, else after seconds: a worker
    gives free memory back after a second without requests."""
    deadline = time.monotonic() + seconds
    rss = rss_bytes(pid)
    while rss > bound and time.monotonic() < deadline:
        time.sleep(0.2)
        rss = rss_bytes(pid)
    return rss


def test_worker_rss_after_get_requests() -> None:
    bound = max(15 * MiB, bare_interpreter_rss() + 3 * MiB)
    with ForkerProcess(app=APP) as server:
        [worker] = server.worker_pids()
        get_requests(server.port, 200)
        rss = rss_bytes(worker)
        master = rss_bytes(server.proc.pid)
    assert rss < bound, f"worker RSS {rss / MiB:.1f} MiB after 200 requests (bound {bound / MiB:.1f})"
    assert master < 25 * MiB, f"master RSS {master / MiB:.1f} MiB"


@pytest.mark.parametrize("args, app", [
    ((), APP),
    (("--interface", "wsgi", "--threads", "4"), WSGI_APP),
], ids=["native", "wsgi-4-threads"])
def test_upload_buffers_are_given_back(args: tuple, app: str) -> None:
    with ForkerProcess(*args, app=app) as server:
        [worker] = server.worker_pids()
        get_requests(server.port, 20)
        before = rss_bytes(worker)
        uploads(server.port, clients=16, each=4)
        peak = rss_bytes(worker)
        after = settled_rss(worker, before + 3 * MiB)
    # 16 uploads at a time hold about 16 MiB of bodies and 32 MiB of buffers.
    assert after <= before + 3 * MiB, (
        f"worker RSS {before / MiB:.1f} MiB before the uploads, {peak / MiB:.1f} at their end, "
        f"{after / MiB:.1f} MiB 8 s later")


@pytest.mark.parametrize("args, app", [
    ((), APP),
    (("--interface", "wsgi", "--threads", "4"), WSGI_APP),
    (("--interface", "asgi"), "memory_app:asgi_app"),
], ids=["native", "wsgi-4-threads", "asgi"])
def test_slow_readers_of_a_large_body_cost_no_copy(args: tuple, app: str) -> None:
    """Twelve clients that stop reading a 16 MiB body the application holds
    anyway: the worker sends it from the application's object, so its memory
    does not grow by the part each socket has not taken (it did, by about
    12 MiB a client, when that part was copied), and every byte arrives in
    order once the clients read."""
    clients = 12
    with ForkerProcess(*args, app=app) as server:
        [worker] = server.worker_pids()
        get_requests(server.port, 20)
        exchange(server.port, b"GET /big HTTP/1.0\r\n\r\n", timeout=30)  # made
        before = rss_bytes(worker)
        fds = open_fds(worker)
        socks = [connect(server.port, timeout=30, rcvbuf=65536) for _ in range(clients)]
        firsts = []
        for sock in socks:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        for sock in socks:
            firsts.append(sock.recv(65536))  # the head has left: the worker has answered
        held = rss_bytes(worker)
        for first in firsts:
            assert first.startswith(b"HTTP/1.1 200 OK\r\n"), first[:100]
        for sock in socks[:4]:
            reset(sock)  # gone in the middle of the body
        for sock, first in zip(socks[4:], firsts[4:]):
            data = bytearray(first)
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            assert b"\r\ncontent-length: %d" % len(big()) in head.lower(), head
            data = bytearray(body)
            while len(data) < len(big()):
                chunk = sock.recv(1 << 20)
                assert chunk, f"closed after {len(data)} bytes of the body"
                data += chunk
            assert data == big()
            sock.close()
        get_requests(server.port, 1)
        deadline = time.monotonic() + 10
        while open_fds(worker) > fds and time.monotonic() < deadline:
            time.sleep(0.1)  # the resets and closes reach the worker
        assert open_fds(worker) == fds
    assert held < before + 48 * MiB, (
        f"worker RSS {before / MiB:.1f} MiB before, {held / MiB:.1f} MiB with {clients} "
        f"slow readers of a 16 MiB body")
