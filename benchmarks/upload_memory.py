"""The memory of one forker ASGI worker while clients upload large bodies,
over plain HTTP and over TLS: its peak resident size (VmHWM) against the
bytes in flight. A server that receives each body whole before calling the
application holds them all; one that hands the body to the application as
it comes holds a read's worth per upload.

    python benchmarks/upload_memory.py                       # 3 x 95 MB, plain and TLS
    python benchmarks/upload_memory.py --clients 3 --mb 95 --tls-only
    python benchmarks/upload_memory.py --wsgi --clients 4 --mb 90

--wsgi measures a WSGI worker with --threads 1 instead, which receives each
body whole: once without a bound on their sum (--max-input-buffer 0, as
before that option) and once with the default bound, past which the
connection holding most is answered 503 (not counted as answered).

Loopback only; each upload is one request to the app's /upload
(benchmarks/apps/asgi_app.py or wsgi_app.py), which counts the bytes it
receives. Bounded: the clients finish
their bodies, or the run gives up after --timeout seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.harness import ForkerProcess, children, self_signed  # noqa: E402

PIECE = 1 << 20


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def upload(port: int, size: int, context, answers: list) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    answer = b""
    with sock:
        try:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n"
                         % size)
            piece = b"x" * PIECE
            left = size
            while left:
                n = min(left, PIECE)
                sock.sendall(piece[:n])
                left -= n
            while not answer.endswith(str(size).encode()):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass  # refused (a 503) while sending: not answered
        answers.append(answer)


def run(tls: bool, clients: int, mb: int, timeout: float, bound: int = -1) -> None:
    """One measure; bound >= 0: a WSGI worker with --threads 1 and that
    --max-input-buffer, instead of an ASGI worker."""
    folder = tempfile.mkdtemp()
    try:
        options = ["--interface", "asgi"]
        app = "benchmarks.apps.asgi_app:app"
        label = "TLS" if tls else "plain"
        if bound >= 0:
            options = ["--interface", "wsgi", "--threads", "1", "--max-input-buffer", str(bound)]
            app = "benchmarks.apps.wsgi_app:app"
            label = f"WSGI, --threads 1, --max-input-buffer {bound}"
        context = None
        if tls:
            certfile, keyfile = self_signed(folder)
            options += ["--certfile", certfile, "--keyfile", keyfile]
            context = ssl.create_default_context(cafile=certfile)
        with ForkerProcess(*options, app=app, pythonpath=[ROOT]) as server:
            worker = children(server.pid)[0]
            before = peak_rss_mib(worker)
            answers: list = []
            size = mb * 1000 * 1000
            threads = [threading.Thread(target=upload,
                                        args=(server.port, size, context, answers))
                       for _ in range(clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(max(0.1, timeout - (time.monotonic() - started)))
            took = time.monotonic() - started
            peak = peak_rss_mib(worker)
            complete = sum(1 for a in answers
                           if a.startswith(b"HTTP/1.1 200") and a.endswith(b"\r\n\r\n%d" % size))
        print(f"{label}: {clients} x {mb} MB uploads, {complete} answered "
              f"in {took:.1f} s; worker peak RSS {before:.1f} MiB before, {peak:.1f} MiB after")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--mb", type=int, default=95, help="MB per upload")
    parser.add_argument("--tls-only", action="store_true")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--wsgi", action="store_true",
                        help="a WSGI worker with --threads 1, without and with the input bound")
    args = parser.parse_args()
    if args.wsgi:
        for bound in (0, 256 << 20):
            run(False, args.clients, args.mb, args.timeout, bound)
        return
    if not shutil.which("openssl"):
        sys.exit("upload_memory.py: the openssl command makes the certificate")
    for tls in ((True,) if args.tls_only else (False, True)):
        run(tls, args.clients, args.mb, args.timeout)


if __name__ == "__main__":
    main()
