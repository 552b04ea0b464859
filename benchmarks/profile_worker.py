"""Profile one server's worker processes under one scenario of the harness.

    python -m benchmarks.profile_worker [--server forker] [--scenario 100k] [--seconds 2]

Starts the server as the harness does, runs wrk on the scenario, and while it
runs takes `perf stat` (CPU time, page faults, context switches and the
syscalls of the hot path) over all workers and `perf record -g` of one, then
prints the counters per request and the top symbols. Needs perf and wrk; run
as root or with perf_event_paranoid <= 1."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import loadtools, servers

EVENTS = [
    "task-clock",
    "page-faults",
    "context-switches",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_sendmsg",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_accept4",
    "syscalls:sys_enter_brk",
    "syscalls:sys_enter_mmap",
    "syscalls:sys_enter_munmap",
]


def parse_stat(text: str) -> dict[str, float]:
    """perf stat's counters by event name ('<not counted>' ones left out)."""
    counters = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,.]+)\s+(?:msec\s+)?([\w:-]+)", line)
        if match and match.group(2) != "seconds":
            counters[match.group(2)] = float(match.group(1).replace(",", ""))
    return counters


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_worker", description=__doc__
    )
    p.add_argument("--server", default="forker", choices=list(servers.SERVERS))
    p.add_argument("--scenario", default="keepalive", choices=list(loadtools.SCENARIOS))
    p.add_argument("--seconds", type=float, default=2.0, help="how long perf samples")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, default=None)
    p.add_argument(
        "--out", default=None, help="directory for perf.data and the reports"
    )
    args = p.parse_args(argv)
    for tool in ("perf", "wrk"):
        if not shutil.which(tool):
            print(f"{tool} is not on PATH", file=sys.stderr)
            return 2
    out = args.out or tempfile.mkdtemp(prefix="bench-profile-")
    os.makedirs(out, exist_ok=True)
    scenario = loadtools.SCENARIOS[args.scenario]
    with tempfile.TemporaryDirectory(prefix="bench-profile-server-") as tmp:
        running = servers.start(
            servers.SERVERS[args.server], servers.Options(args.workers), tmp
        )
        try:
            leader = running.proc.pid
            workers = sorted(
                pid for pid in servers.group_rss_kb(leader) if pid != leader
            )
            if not workers:  # a server that serves from its only process
                workers = [leader]
            spec = loadtools.LoadSpec(
                f"http://127.0.0.1:{running.port}",
                scenario,
                args.seconds * 2 + 2,
                args.connections,
            )
            load = subprocess.Popen(
                loadtools.build_command("wrk", spec), stdout=subprocess.PIPE, text=True
            )
            time.sleep(1.0)  # past the connection ramp-up
            pids = ",".join(map(str, workers))
            stat_path = os.path.join(out, "stat.txt")
            subprocess.run(
                ["perf", "stat", "-e", ",".join(EVENTS), "-p", pids, "-o", stat_path,
                 "--", "sleep", str(args.seconds)],
                check=False, capture_output=True,
            )  # fmt: skip
            data = os.path.join(out, "perf.data")
            subprocess.run(
                ["perf", "record", "-F", "499", "-g", "-p", str(workers[0]), "-o", data,
                 "--", "sleep", str(args.seconds)],
                check=False, capture_output=True,
            )  # fmt: skip
            output, _ = load.communicate(timeout=spec.duration + 30)
        finally:
            servers.stop(running)
    result = loadtools.parse_wrk(output)
    with open(stat_path) as f:
        counters = parse_stat(f.read())
    # Requests in the perf stat window, estimated from the load's mean rate:
    # the per-request figures are estimates within the rate's variation.
    requests = result.rps * args.seconds
    print(f"{args.server} {args.scenario}: {result.rps:,.0f} req/s over the load")
    print(f"{'counter':<32} {'total':>12} {'per request (at the mean rate)':>12}")
    for name, value in counters.items():
        per = value / requests if requests else 0.0
        unit = " ms" if name == "task-clock" else ""
        print(f"{name:<32} {value:>12,.0f} {per:>12.3f}{unit}")
    report = subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
         "-g", "none", "--percent-limit", "1.5"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    with open(os.path.join(out, "report.txt"), "w") as f:
        f.write(report)
    print(f"\ntop symbols of worker {workers[0]} (perf record -g, {out}/report.txt):")
    print(
        "\n".join(
            line for line in report.splitlines() if line.strip() and line[0] != "#"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
