"""System calls per request, by call, for one worker of each server.

    python -m benchmarks.syscalls_per_request [--servers forker,nginx-pinned] [--duration 3]

Each server runs with one worker, started as the harness starts it (so a
pinned worker sits on the first CPU); wrk (1 thread, --connections keep-alive
connections) is pinned to the last CPU and loads GET / for --duration
seconds. `perf stat` counts every system call entry (the syscalls:sys_enter_*
tracepoints) of every process of the server's process group from just before
the load to just after it, and a few failing returns (recvfrom, read and
accept4 that return -1, usually EAGAIN). The counts over the requests wrk
completed are the calls per request; the few hundred calls of connection
set-up are spread over the whole run. Needs perf with tracepoint access
(root, or perf_event_paranoid <= 1)."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from benchmarks import servers
from benchmarks.cpu_per_request import load

# Failing returns counted alongside (perf's tracepoint filter on ret).
FAILS = ["recvfrom", "read", "accept4", "recvmsg"]


def group_pids(pgid: int) -> list[int]:
    return sorted(servers.group_rss_kb(pgid))


def count(running: servers.Running, seconds: float, connections: int,
          out_dir: str) -> tuple[int, dict[str, float]]:
    """(requests, {call: count}) over one load of the running server."""
    pids = ",".join(map(str, group_pids(running.proc.pid)))
    path = os.path.join(out_dir, f"{running.server.name}.stat")
    events = ["-e", "syscalls:sys_enter_*"]
    for name in FAILS:
        events += ["-e", f"syscalls:sys_exit_{name}", "--filter", "ret < 0"]
    perf = subprocess.Popen(
        ["perf", "stat", "-x", ",", "-o", path, *events, "-p", pids],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)  # perf attached
    try:
        requests = load(running.port, seconds, connections, taskset=str(os.cpu_count() - 1))
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(30)
    counts: dict[str, float] = {}
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) < 3 or not fields[0].replace(".", "").isdigit():
                continue
            value, event = float(fields[0]), fields[2]
            if value == 0:
                continue
            m = re.match(r"syscalls:sys_(enter|exit)_(\w+)", event)
            if not m:
                continue
            name = m.group(2) if m.group(1) == "enter" else f"{m.group(2)} = -1"
            counts[name] = counts.get(name, 0.0) + value
    return requests, counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.syscalls_per_request",
                                description=__doc__)
    p.add_argument("--servers", default="forker,nginx-pinned,forker-wsgi,bjoern-pinned")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=50)
    args = p.parse_args(argv)
    names = servers.choose(args.servers, servers.SERVERS, "server")
    opts = servers.Options(workers=1, threads=1)
    table: dict[str, tuple[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="forker-sys-") as tmp:
        for name in names:
            run = servers.start(servers.SERVERS[name], opts, tmp)
            try:
                table[name] = count(run, args.duration, args.connections, tmp)
            finally:
                servers.stop(run)
            requests, counts = table[name]
            print(f"{name}: {requests / args.duration:,.0f} req/s under perf, "
                  f"{sum(v for k, v in counts.items() if '=' not in k) / requests:.3f} "
                  "calls per request", flush=True)
    calls = sorted({k for _, c in table.values() for k in c},
                   key=lambda k: -max(c.get(k, 0) / r for r, c in table.values()))
    print("\n| call per request | " + " | ".join(names) + " |")
    print("|---|" + "--:|" * len(names))
    for call in calls:
        cells = [table[n][1].get(call, 0) / table[n][0] for n in names]
        if max(cells) < 0.0005:
            continue
        print(f"| {call} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    totals = [sum(v for k, v in table[n][1].items() if "=" not in k) / table[n][0]
              for n in names]
    print("| **all calls** | " + " | ".join(f"**{v:.3f}**" for v in totals) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
