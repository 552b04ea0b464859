"""The loop's chaos harness: random client behaviour against native, WSGI,
threaded and TLS workers, then checks that nothing broke.

Clients cut requests and responses at random bytes, reset, pipeline without
reading, half-close, send a FIN with their data, cancel uploads, keep request
streams, and call handlers that sleep, raise, exit or stream bodies that fail
midway; the slab is kept small so that slots run out and are reused all the
time. After each run: no worker died, every descriptor the workers opened is
closed again, and a normal request is answered. Under the sanitizer build
(tests/sanitize.sh, as CI runs it) any memory error is a report that fails
the run, and the loop's invariants are asserted (FK_ASSERT).

FORKER_CHAOS_SECONDS sets each mode's duration (default 4), FORKER_CHAOS_SEED
the seed (printed on failure; with several client threads a seed chooses
the behaviours, not their interleaving)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

from harness import ForkerProcess, Reader, open_fds

SECONDS = float(os.environ.get("FORKER_CHAOS_SECONDS", "4"))
SEED = int(os.environ.get("FORKER_CHAOS_SEED", str(random.randrange(1 << 32))))
CLIENTS = 12
ROUTES = ["/pid", "/echo", "/sleep", "/big", "/stream", "/raise-stream", "/raise", "/exit",
          "/file", "/keep"]


class ChaosServer(ForkerProcess):
    """Clients over TLS when the listener is (its readiness probe, plain
    HTTP, gets the loop's 400 from a TLS listener: the worker serves)."""

    def __init__(self, *args: str, tls: Optional[ssl.SSLContext], **kwargs) -> None:
        self.tls = tls
        super().__init__(*args, **kwargs)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname="localhost")
        return sock

    def answer(self, target: str):
        with self.connect() as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            return Reader(sock).response()


def head(rng: random.Random, route: str, body: bytes = b"", chunked: bool = False,
         extra: str = "") -> bytes:
    method = "POST" if body or chunked else rng.choice(["GET", "HEAD", "GET"])
    fields = "Transfer-Encoding: chunked\r\n" if chunked else (
        f"Content-Length: {len(body)}\r\n" if body else "")
    return f"{method} {route} HTTP/1.1\r\nHost: t\r\n{fields}{extra}\r\n".encode()


def chunk(data: bytes, rng: random.Random) -> bytes:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 9000)
        out.append(b"%x\r\n%s\r\n" % (len(data[i:i + n]), data[i:i + n]))
        i += n
    return b"".join(out) + b"0\r\n\r\n"


def abandon(sock: socket.socket, rng: random.Random) -> None:
    """Closes as a client that gives up would: a FIN, or a reset."""
    if rng.random() < 0.5:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    sock.close()


def drain(sock: socket.socket, limit: int) -> None:
    got = 0
    while got < limit:
        data = sock.recv(65536)
        if not data:
            return
        got += len(data)


# -- behaviours: each opens one connection, misbehaves, and lets go of it -----------------

def cut_request(srv: ChaosServer, rng: random.Random) -> None:
    body = os.urandom(rng.choice([0, 10, 5000, 200_000]))
    data = head(rng, rng.choice(ROUTES), body) + body
    sock = srv.connect()
    sock.sendall(data[:rng.randrange(1, len(data) + 1)])
    abandon(sock, rng)


def pipeline_unread(srv: ChaosServer, rng: random.Random) -> None:
    sock = srv.connect()
    sock.sendall(b"".join(head(rng, rng.choice(["/big", "/file", "/stream", "/pid"]))
                          for _ in range(rng.randint(2, 30))))
    if rng.random() < 0.5:
        drain(sock, rng.randrange(1, 3 << 20))
    abandon(sock, rng)


def keep_alive(srv: ChaosServer, rng: random.Random) -> None:
    with srv.connect() as sock:
        reader = Reader(sock)
        for _ in range(rng.randint(1, 6)):
            route = rng.choice(["/pid", "/echo", "/big", "/stream", "/file", "/sleep", "/raise"])
            body = os.urandom(rng.choice([0, 3000, 100_000])) if route == "/echo" else b""
            data = head(rng, route, body)
            sock.sendall(data + body)
            status, fields, _ = reader.response(head_only=data.startswith(b"HEAD"))
            if status >= 500 or fields.get("connection") == "close":
                return


def half_close(srv: ChaosServer, rng: random.Random) -> None:
    sock = srv.connect()
    if srv.tls is None and rng.random() < 0.5:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)  # the FIN with the data
    data = head(rng, rng.choice(ROUTES))
    sock.sendall(data[:rng.randrange(1, len(data) + 1)])
    if srv.tls is None:
        sock.shutdown(socket.SHUT_WR)
    drain(sock, 4 << 20)
    sock.close()


def upload(srv: ChaosServer, rng: random.Random) -> None:
    body = os.urandom(rng.choice([2000, 70_000, 600_000]))
    route = rng.choice(["/echo", "/keep", "/drain", "/pid", "/raise"])
    is_chunked = rng.random() < 0.5
    data = head(rng, route, b"" if is_chunked else body, chunked=is_chunked,
                extra=rng.choice(["", "Expect: 100-continue\r\n"]))
    data += chunk(body, rng) if is_chunked else body
    sock = srv.connect()
    cut = len(data) if rng.random() < 0.5 else rng.randrange(1, len(data))
    step = rng.choice([len(data), 1000, 30_000])
    for i in range(0, cut, step):
        sock.sendall(data[i:min(cut, i + step)])
    if cut == len(data) and rng.random() < 0.7:
        drain(sock, 1 << 20)
    abandon(sock, rng)


def read_part(srv: ChaosServer, rng: random.Random) -> None:
    sock = srv.connect()
    sock.sendall(head(rng, rng.choice(["/big", "/file", "/stream", "/raise-stream"])))
    drain(sock, rng.randrange(1, 1 << 20))
    abandon(sock, rng)


def handler_then_leave(srv: ChaosServer, rng: random.Random) -> None:
    sock = srv.connect()
    sock.sendall(head(rng, rng.choice(["/sleep", "/exit", "/raise", "/stream", "/file"])))
    abandon(sock, rng)


def garbage(srv: ChaosServer, rng: random.Random) -> None:
    sock = srv.connect()
    sock.sendall(bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000))))
    drain(sock, 1 << 16)
    abandon(sock, rng)


BEHAVIOURS: List[Callable[[ChaosServer, random.Random], None]] = [
    cut_request, pipeline_unread, keep_alive, half_close, upload, read_part,
    handler_then_leave, garbage]

MODES = {
    "native": ("chaos_app:app", ["--threads", "1", "--body-buffer-size", "1024"], False),
    "native-threads": ("chaos_app:app",
                       ["--threads", "4", "--body-buffer-size", "1024"], False),
    "wsgi": ("chaos_app:wsgi_app", ["--threads", "1", "--body-buffer-size", "1024"],
             False),
    "wsgi-threads": ("chaos_app:wsgi_app",
                     ["--threads", "4", "--body-buffer-size", "1024"], False),
    "tls-native": ("chaos_app:app", ["--threads", "1", "--body-buffer-size", "1024"],
                   True),
    "tls-wsgi-threads": ("chaos_app:wsgi_app", ["--threads", "4"], True),
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command makes the test certificate (.ci/run installs it)"
    directory = tmp_path_factory.mktemp("chaos-certs")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"],
                   cwd=directory, check=True, capture_output=True)
    return directory


@pytest.mark.parametrize("mode", list(MODES))
def test_chaos(mode: str, tmp_path: Path, certs: Path) -> None:
    app, args, tls = MODES[mode]
    (tmp_path / "chaos.bin").write_bytes(os.urandom(2 << 20))
    context = None
    extra: List[str] = []
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        extra = ["--certfile", str(certs / "cert.pem"), "--keyfile", str(certs / "key.pem")]
    seed = SEED + sorted(MODES).index(mode)
    with ChaosServer(*args, *extra, "--max-connections", "16", "--header-timeout", "2",
                     "--keep-alive", "2", "--write-timeout", "2", "--request-timeout", "5",
                     "--timeout", "30", app=app, tls=context,
                     env={"FORKER_TEST_DIR": str(tmp_path)}) as srv:
        pids = srv.worker_pids()
        assert srv.answer("/pid")[0] == 200
        baseline = {pid: open_fds(pid) for pid in pids}
        deadline = time.monotonic() + SECONDS
        runs = [0]

        def client(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            while time.monotonic() < deadline:
                behaviour = rng.choice(BEHAVIOURS)
                try:
                    behaviour(srv, rng)
                except (OSError, EOFError, ValueError):
                    pass  # what a misbehaving client gets is not the question here
                runs[0] += 1

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 60)
        assert not any(t.is_alive() for t in threads), f"a client hung (seed {seed})"
        where = f"mode {mode}, seed {seed}, {runs[0]} behaviours:\n{srv.stderr[-3000:]}"
        assert srv.worker_pids() == pids, f"a worker died; {where}"
        limit = time.monotonic() + 30  # the server's timeouts are 2 s; this bounds a leak
        while any(open_fds(pid) > baseline[pid] for pid in pids):
            assert time.monotonic() < limit, (
                f"descriptors left open: {[(open_fds(p), baseline[p]) for p in pids]}; {where}")
            time.sleep(0.05)
        assert srv.answer("/pid")[0] == 200, where
        assert srv.worker_pids() == pids, f"a worker died; {where}"
