"""The reuse_port trade-off, measured (numbers go to benchmarks/RELIABILITY.md).

    python benchmarks/reuseport_tradeoff.py [--rounds 3] [--seconds 5] [--workers 2] [--close]

1. The kernel alone: N connections queued on one SO_REUSEPORT socket of a group
   of two, then that socket is closed, as a per-worker socket closes with its
   worker. How many are reset, with net.ipv4.tcp_migrate_req off and on (the
   sysctl is restored afterwards; needs root to switch it).
2. forker: load spread over the workers (from the master's "served" lines) and
   requests per second under wrk, for shared, reuse_port and reuse_port with
   cpu_affinity, interleaved over rounds; --close makes wrk send one request per
   connection (Connection: close) instead of keeping 50 connections alive.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def queued_then_closed(count: int) -> tuple:
    """(reset, served by the other socket) of `count` connections queued on a
    socket that is closed before accepting them."""
    first = socket.socket()
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    first.bind(("127.0.0.1", 0))
    first.listen(4096)
    port = first.getsockname()[1]
    second = socket.socket()
    second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    second.bind(("127.0.0.1", port))
    second.listen(4096)
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        clients.append(client)
    time.sleep(0.2)
    first.close()  # the dying worker's socket, never accepted from again
    time.sleep(0.2)
    second.setblocking(False)
    migrated = 0
    while True:
        try:
            conn, _ = second.accept()
        except BlockingIOError:
            break
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        conn.close()
        migrated += 1
    reset = 0
    for client in clients:
        client.settimeout(0.5)
        try:
            client.recv(100)
        except ConnectionResetError:
            reset += 1
        except socket.timeout:
            pass
        client.close()
    second.close()
    return reset, migrated


def kernel_part(count: int = 200) -> None:
    try:
        with open(SYSCTL) as sysctl:
            saved = sysctl.read().strip()
    except OSError:
        print("tcp_migrate_req: not available on this kernel")
        return
    try:
        for value in ("0", "1"):
            try:
                with open(SYSCTL, "w") as sysctl:
                    sysctl.write(value)
            except OSError as exc:
                print(f"cannot set tcp_migrate_req={value}: {exc.strerror}")
                continue
            reset, migrated = queued_then_closed(count)
            print(f"tcp_migrate_req={value}: {count} connections queued on the closed socket: "
                  f"{reset} reset, {migrated} accepted by the other socket of the group")
    finally:
        with open(SYSCTL, "w") as sysctl:
            sysctl.write(saved)


def serve(flags: list, port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "forker", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        + flags, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.5)  # every worker booted
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def forker_round(name: str, flags: list, workers: int, seconds: int, connections: int,
                 close: bool) -> dict:
    port = free_port()
    server = serve(flags, port, workers)
    try:
        wait_listening(port)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
            + (["-H", "Connection: close"] if close else []),
            capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
        errors = re.search(r"Socket errors: (.*)", out)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    served = [int(n) for n in re.findall(r"worker \d+ pid \d+ served (\d+) requests", err)]
    total = sum(served) or 1
    shares = sorted(round(100.0 * n / total, 1) for n in served)
    return {"mode": name, "rps": rps, "shares": shares,
            "errors": errors.group(1) if errors else "none"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--close", action="store_true", help="one request per connection")
    parser.add_argument("--skip-kernel", action="store_true")
    args = parser.parse_args()
    if not args.skip_kernel:
        kernel_part()
    modes = [("shared", []), ("reuse_port", ["--reuse-port"]),
             ("reuse_port+cpu_affinity", ["--reuse-port", "--cpu-affinity"])]
    results: dict = {name: [] for name, _ in modes}
    for round_number in range(args.rounds):
        for name, flags in modes:
            result = forker_round(name, flags, args.workers, args.seconds, args.connections,
                                  args.close)
            results[name].append(result)
            print(f"round {round_number + 1} {name:24s} {result['rps']:9.0f} req/s  "
                  f"worker shares % {result['shares']}  socket errors: {result['errors']}")
    for name, rounds in results.items():
        spread = [r["shares"][-1] - r["shares"][0] for r in rounds]
        print(f"{name:24s} median {statistics.median(r['rps'] for r in rounds):9.0f} req/s, "
              f"median max-min worker share {statistics.median(spread):.1f} points")


if __name__ == "__main__":
    main()
