"""Server CPU time per request, the figure a shared 2-core machine measures
best: the load tool's own CPU and the other tenants change req/s a lot, and
the CPU the server's processes spend per answered request much less.

    python -m benchmarks.cpu_per_request [--servers forker-wsgi,bjoern] [--rounds 3]

Each server runs with one worker (one process serving), started as the
harness starts it; wrk (1 thread, --connections keep-alive connections) loads
GET / for --duration seconds (keep-alive, or with --close a connection per
request), interleaved over the rounds. The CPU is user
plus system time of every process in the server's process group, from /proc,
before and after the load; the user time alone is given beside it."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks import servers

CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User plus system CPU seconds of the live processes of a process group."""
    return servers.group_cpu_ticks(pgid) / CLK_TCK


def load(port: int, seconds: float, connections: int, close: bool = False,
         taskset: str | None = None) -> int:
    """Requests wrk completed against GET / on port (with close, each on a
    connection of its own; with taskset, wrk pinned to those CPUs)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    if taskset:
        argv[:0] = ["taskset", "-c", taskset]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == "requests" and parts[2] == "in":
            return int(parts[0])
    raise RuntimeError(f"no request count in wrk's output:\n{out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpu_per_request",
                                description=__doc__)
    p.add_argument("--servers", default="forker-wsgi,bjoern")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--close", action="store_true",
                   help="a connection per request (Connection: close) instead of keep-alive")
    args = p.parse_args(argv)
    names = servers.choose(args.servers, servers.SERVERS, "server")
    opts = servers.Options(workers=1, threads=1)
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in names}
    users: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="forker-cpu-") as tmp:
        running = {}
        try:
            for name in names:
                running[name] = servers.start(servers.SERVERS[name], opts, tmp)
            for _ in range(args.rounds):
                for name in names:
                    run = running[name]
                    before = group_cpu_seconds(run.proc.pid)
                    user_before = servers.group_user_ticks(run.proc.pid)
                    count = load(run.port, args.duration, args.connections, args.close)
                    spent = group_cpu_seconds(run.proc.pid) - before
                    user = (servers.group_user_ticks(run.proc.pid) - user_before) / CLK_TCK
                    results[name].append((spent / count * 1e6, count))
                    users[name].append(user / count * 1e6)
                    print(f"{name:14} {count / args.duration:>10,.0f} req/s "
                          f"{spent / count * 1e6:6.2f} µs CPU per request "
                          f"({user / count * 1e6:4.2f} in user space)", flush=True)
        finally:
            for run in running.values():
                servers.stop(run)
    mode = "a connection per request" if args.close else "keep-alive"
    print(f"\nmedian of {args.rounds} rounds, one worker each, wrk -t1 -c{args.connections}, "
          f"{mode}")
    first = statistics.median(us for us, _ in results[names[0]])
    for name in names:
        us = statistics.median(u for u, _ in results[name])
        print(f"  {name:14} {us:6.2f} µs CPU per request   {us / first:5.2f}x {names[0]}   "
              f"user space {statistics.median(users[name]):4.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
