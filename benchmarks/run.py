"""Loopback load test of forker against its peers.

    python -m benchmarks [--servers forker,nginx,...] [--scenarios keepalive,...]
                         [--duration S] [--rounds N] [--workers N] [--connections C]
                         [--taskset CPUS] [--quick] [--json PATH] [--chart PATH]

For every round, every scenario and every server (in an order rotated each
round, so that no server always runs first or right after the heaviest one),
the server is started fresh on a free port of 127.0.0.1, checked, loaded for
the duration, and stopped by its pid. The table reports per server and
scenario the median requests per second over the rounds with their spread,
latency percentiles of the median round, errors, and the ratio to forker; and,
for forker, how the requests spread over the worker processes."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import loadtools, servers
from benchmarks.loadtools import SCENARIOS, LoadSpec
from benchmarks.servers import SERVERS, choose

QUICK_SCENARIOS = ["keepalive", "nokeepalive", "pipelined"]
# The reference each group of servers is compared with.
REFERENCE = {"native": "forker", "wsgi": "forker-wsgi", "asgi": "forker-asgi"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--servers",
        default="all",
        help=f"comma-separated servers, or 'all' (the installed ones): {', '.join(SERVERS)}",
    )
    p.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated scenarios, or 'all' (default): {', '.join(SCENARIOS)}",
    )
    p.add_argument(
        "--duration", type=float, default=None, help="seconds per load run (default 5)"
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="rounds over all servers (default 3)"
    )
    p.add_argument(
        "--workers", type=int, default=2, help="worker processes per server (default 2)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=4,
        help="handler threads of forker-wsgi, gunicorn-gthread, granian-wsgi (default 4)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=None,
        help="concurrent connections (default 100; oha's reference command uses 500)",
    )
    p.add_argument(
        "--load-threads",
        type=int,
        default=2,
        help="threads of wrk and h2load (default 2)",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=None,
        help="request count for the count-based tools (oha, ab, h2load without keep-alive)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=2.5,
        metavar="SECONDS",
        help="forker servers: read the processes' memory at the end of the load and again "
        "after this many idle seconds (default 2.5; 0: at the end only)",
    )
    p.add_argument(
        "--tool",
        default="auto",
        choices=["auto", *loadtools.TOOLS],
        help="load tool: auto picks oha when on PATH, else wrk",
    )
    p.add_argument(
        "--taskset",
        metavar="CPUS",
        default=None,
        help="pin the load tool to this CPU list (taskset -c CPUS)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"one 1-second round of {', '.join(QUICK_SCENARIOS)}: under two minutes",
    )
    p.add_argument(
        "--from-json",
        metavar="PATH",
        default=None,
        help="tabulate and chart the runs of an earlier --json file instead of running",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="only start each server, check every scenario's endpoint, and stop it",
    )
    p.add_argument(
        "--compare",
        metavar="A:B,...",
        default=None,
        help="also print A's req/s over B's, per round and per scenario "
        "(e.g. forker-unpinned:nginx for unpinned against unpinned)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write every run and the summary as JSON",
    )
    p.add_argument(
        "--chart",
        metavar="PATH",
        default=None,
        help="write a PNG bar chart (matplotlib)",
    )
    p.add_argument(
        "--markdown", metavar="PATH", default=None, help="write the tables as Markdown"
    )
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 1.0 if args.quick else 5.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.scenarios is None:
        args.scenarios = ",".join(QUICK_SCENARIOS) if args.quick else "all"
    if not 0 < args.duration <= 120:
        p.error("--duration must be between 0 and 120 seconds")
    if not 1 <= args.rounds <= 20:
        p.error("--rounds must be between 1 and 20")
    return args


def _cmd_version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (proc.stdout + proc.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info() -> dict[str, object]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": load,
    }


def _commit() -> str | None:
    """The checkout's commit, with "+changes" when its tracked files differ."""
    root = servers.ROOT
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def tool_versions() -> dict[str, str]:
    versions = {}
    for tool, argv in (
        ("wrk", ["wrk", "-v"]),
        ("h2load", ["h2load", "--version"]),
        ("ab", ["ab", "-V"]),
        ("oha", ["oha", "--version"]),
    ):
        if loadtools.available(tool):
            versions[tool] = _cmd_version(argv)
    return versions


def _busy_ticks() -> int:
    """User, nice and system time of all CPUs so far, in clock ticks."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[1]) + int(fields[2]) + int(fields[3])


class CpuShare:
    """Where the CPU time went while one load ran: the server's processes, the
    load tool (reaped children of this process), and everything else on the
    machine, which other work sharing the cores shows up as. Kernel time spent
    in softirq (loopback packet processing) is left out of all three."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.wall = time.monotonic()
        self.busy = _busy_ticks()
        self.server = servers.group_cpu_ticks(pgid)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.tool = usage.ru_utime + usage.ru_stime

    def finish(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        busy = (_busy_ticks() - self.busy) / self.tick
        server = (servers.group_cpu_ticks(self.pgid) - self.server) / self.tick
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        tool = usage.ru_utime + usage.ru_stime - self.tool
        capacity = wall * (os.cpu_count() or 1) / 100
        return {
            "server_s": round(server, 3),
            "server_pct": round(server / capacity, 1),
            "tool_pct": round(tool / capacity, 1),
            "other_pct": round(max(0.0, busy - server - tool) / capacity, 1),
        }


def _memory(running: servers.Running, settle: float) -> dict:
    """RSS and PSS of the master and the workers at the end of the load and,
    with settle > 0, after that many idle seconds (a worker gives its spare
    buffers and free heap pages back after a quiet second)."""

    def sample() -> dict:
        mem = servers.group_memory_kb(running.proc.pid)
        leader = mem.get(running.proc.pid)
        return {
            "leader": list(leader) if leader else None,
            "others": sorted(list(v) for k, v in mem.items() if k != running.proc.pid),
        }

    out = {"end": sample()}
    if settle > 0:
        time.sleep(settle)
        out["settled"] = sample()
        out["settle_s"] = settle
    return out


def _mib_pair(kb) -> str:
    """[rss, pss] in KiB as "RSS / PSS" in MiB."""
    if not kb:
        return "-"
    return f"{kb[0] / 1024:.1f} / {kb[1] / 1024:.1f}"


def serves(name: str, scenario: str) -> bool:
    """Whether the server runs the scenario: not one it cannot serve, the
    WSGI applications only on the WSGI servers, the ASGI ones only on the ASGI
    servers, which serve nothing else."""
    server, sc = SERVERS[name], SCENARIOS[scenario]
    if scenario in server.unsupported:
        return False
    if server.group == "asgi":
        return sc.asgi_only or not sc.wsgi_only
    return not sc.wsgi_only and not sc.asgi_only or server.group == "wsgi" and sc.wsgi_only


def options(args: argparse.Namespace, scenario: str | None = None) -> servers.Options:
    sc = SCENARIOS[scenario] if scenario else None
    app = sc.app if sc is not None else None
    asgi = sc is not None and sc.asgi_only
    return servers.Options(
        workers=args.workers, threads=args.threads,
        wsgi_app=servers.WSGI_APP if asgi or not app else app,
        asgi_app=app if asgi and app else servers.ASGI_APP,
    )


def run_one(
    name: str, scenario: str, args: argparse.Namespace, tool: str, round_no: int
) -> dict:
    server = SERVERS[name]
    record = {"round": round_no, "server": name, "scenario": scenario, "tool": tool}
    opts = options(args, scenario)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        try:
            running = servers.start(server, opts, tmp)
        except RuntimeError as exc:
            record["failed"] = str(exc)
            return record
        record["server_command"] = running.command
        record["startup_s"] = round(running.startup_s, 3)
        record["settled"] = running.settled
        try:
            problem = servers.check(running.port, SCENARIOS[scenario].path)
            head_bytes, refused, declared = servers.check_head(server, running.port)
            record["head_bytes"] = head_bytes
            if declared:
                record["head_differs"] = declared
            problem = problem or refused
            if problem:
                record["failed"] = f"wrong answer: {problem}"
            else:
                spec = LoadSpec(
                    f"http://127.0.0.1:{running.port}",
                    SCENARIOS[scenario],
                    args.duration,
                    args.connections,
                    args.load_threads,
                    args.requests,
                    args.taskset,
                )
                share = CpuShare(running.proc.pid)
                result = loadtools.run(tool, spec)
                record["cpu"] = share.finish()
                record.update(result.as_dict())
                if result.failed is None:
                    record.pop("failed")
                if not running.alive():
                    record["failed"] = (
                        f"server exited with status {running.proc.returncode} under load"
                    )
                elif server.counts_per_worker:
                    record["memory_kb"] = _memory(running, args.settle)
        finally:
            servers.stop(running)
        if running.rss_kb:
            leader = running.proc.pid
            record["rss_kb"] = {
                "leader": running.rss_kb.get(leader),
                "others": sorted(v for k, v in running.rss_kb.items() if k != leader),
            }
        if server.counts_per_worker:
            record["per_worker"] = servers.parse_worker_counts(running.log)
    return record


def check_servers(
    names: list[str], scenarios: list[str], args: argparse.Namespace
) -> int:
    """Start each server once per app, check the endpoint of every scenario it
    serves."""
    bad = 0
    for name, app in [(n, a) for n in names for a in
                      dict.fromkeys(SCENARIOS[s].app for s in scenarios
                                    if serves(n, s))]:  # fmt: skip
        server = SERVERS[name]
        asgi = any(SCENARIOS[s].asgi_only and SCENARIOS[s].app == app for s in scenarios)
        opts = servers.Options(workers=args.workers, threads=args.threads,
                               wsgi_app=servers.WSGI_APP if asgi or not app else app,
                               asgi_app=app if asgi and app else servers.ASGI_APP)  # fmt: skip
        label = name + (f" ({app.split('.')[-1].split(':')[0]})" if app else "")
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            try:
                running = servers.start(server, opts, tmp)
            except RuntimeError as exc:
                print(f"{label:<30} FAILED: {exc}")
                bad += 1
                continue
            try:
                paths = sorted(
                    {
                        SCENARIOS[s].path
                        for s in scenarios
                        if serves(name, s) and SCENARIOS[s].app == app
                    }
                )
                problems = [
                    p
                    for p in (servers.check(running.port, path) for path in paths)
                    if p
                ]
                head_bytes, refused, declared = servers.check_head(server, running.port)
                if refused:
                    problems.append(refused)
            finally:
                servers.stop(running)
        bad += bool(problems)
        state = "; ".join(problems) if problems else f"ok ({', '.join(paths)})"
        head = f"head of / {head_bytes} B" + (f" ({declared})" if declared else "")
        print(
            f"{label:<30} {server.version():<10} started in {running.startup_s:.2f} s"
            f"{'' if running.settled else ' (never idle)'}, "
            f"{head}, {state}"
        )
    return 1 if bad else 0


def summarize(records: list[dict]) -> dict[str, dict[str, dict]]:
    """{scenario: {server: summary}} over the rounds of each pair."""
    out: dict[str, dict[str, dict]] = {}
    pairs: dict[tuple, list[dict]] = {}
    for rec in records:
        pairs.setdefault((rec["scenario"], rec["server"]), []).append(rec)
    for (scenario, name), recs in pairs.items():
        good = [r for r in recs if not r.get("failed")]
        summary = {
            "server": name,
            "rounds": len(recs),
            "ok_rounds": len(good),
            "tool": recs[0]["tool"],
            "failures": [r["failed"] for r in recs if r.get("failed")],
        }
        heads = [r for r in recs if r.get("head_bytes")]
        if heads:
            summary["head_bytes"] = heads[-1]["head_bytes"]
        declared = [r["head_differs"] for r in recs if r.get("head_differs")]
        if declared:
            summary["head_differs"] = declared[-1]
        if good:
            rps = sorted(r["rps"] for r in good)
            median = statistics.median(rps)
            middle = min(good, key=lambda r: abs(r["rps"] - median))
            summary.update(
                {
                    "rps_median": median,
                    "rps_min": rps[0],
                    "rps_max": rps[-1],
                    "rps_all": [round(r["rps"], 1) for r in good],
                    # None from one round: it has no range.
                    "spread_pct": 100 * (rps[-1] - rps[0]) / median
                    if median and len(rps) > 1
                    else None,
                    "p50_ms": middle.get("p50_ms"),
                    "p99_ms": middle.get("p99_ms"),
                    "p999_ms": middle.get("p999_ms"),
                    "errors": sum(r.get("errors", 0) for r in good),
                    "requests": sum(r.get("requests", 0) for r in good),
                    "command": middle.get("command"),
                }
            )
            workers = [r["per_worker"] for r in good if r.get("per_worker")]
            if workers:
                summary["per_worker"] = [
                    sorted(w.values(), reverse=True) for w in workers
                ]
            per_request = [r["cpu"]["server_s"] / r["requests"] * 1e6 for r in good
                           if r.get("cpu", {}).get("server_s") and r.get("requests")]
            if per_request:
                summary["server_us"] = statistics.median(per_request)
            others = [r["cpu"]["other_pct"] for r in good if r.get("cpu")]
            if others:
                summary["other_cpu_pct"] = statistics.median(others)
            rss = [r["rss_kb"] for r in good if r.get("rss_kb")]
            if rss:
                summary["rss_kb"] = rss[-1]
            memory = [r["memory_kb"] for r in good if r.get("memory_kb")]
            if memory:
                summary["memory_kb"] = memory[-1]
        out.setdefault(scenario, {})[name] = summary
    for scenario, by_server in out.items():
        for name, summary in by_server.items():
            ref = REFERENCE[SERVERS[name].group]
            base = by_server.get(ref, {}).get("rps_median")
            if base and summary.get("rps_median") is not None:
                summary["reference"] = ref
                summary["ratio"] = summary["rps_median"] / base
                paired = round_ratios(pairs.get((scenario, name), []),
                                      pairs.get((scenario, ref), []))
                if paired and name != ref:
                    summary["round_ratios"] = [round(r, 3) for r in paired]
    return out


def round_ratios(recs: list[dict], refs: list[dict]) -> list[float]:
    """A server's req/s over the reference's in each round both completed:
    the two ran minutes apart at most, so a slow spell of the host weighs on
    both, where the ratio of the medians may pair a fast round with a slow one."""
    ref_rps = {r["round"]: r["rps"] for r in refs if not r.get("failed") and r.get("rps")}
    return sorted(
        r["rps"] / ref_rps[r["round"]]
        for r in recs
        if not r.get("failed") and r.get("rps") is not None and r["round"] in ref_rps
    )


def parse_pairs(spec: str | None) -> list[tuple[str, str]]:
    if not spec:
        return []
    pairs = []
    for item in spec.split(","):
        a, sep, b = item.strip().partition(":")
        if not sep or not a or not b:
            raise SystemExit(f"--compare wants A:B pairs, not {item!r}")
        for name in (a, b):
            if name not in SERVERS:
                raise SystemExit(f"--compare: unknown server {name!r}")
        pairs.append((a, b))
    return pairs


def comparisons(records: list[dict], pairs: list[tuple[str, str]],
                scenarios: list[str], markdown: bool) -> str:
    """For each pair A:B and scenario, the median of A's req/s over B's in
    the same round, and the range of those per-round ratios."""
    rows = []
    for a, b in pairs:
        for scenario in scenarios:
            mine = [r for r in records if r["server"] == a and r["scenario"] == scenario]
            theirs = [r for r in records if r["server"] == b and r["scenario"] == scenario]
            ratios = round_ratios(mine, theirs)
            if not ratios:
                continue
            rows.append([
                f"{a} / {b}", scenario, f"{statistics.median(ratios):.2f}",
                f"{ratios[0]:.2f}-{ratios[-1]:.2f}" if len(ratios) > 1 else "n/a",
                str(len(ratios)),
            ])  # fmt: skip
    if not rows:
        return ""
    return _table("paired ratios (req/s of A over B in the same round)",
                  ["A / B", "scenario", "median", "range", "rounds"], rows, markdown)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def spread(summary: dict) -> str:
    """± half the range of the rounds, in % of the median; n/a from one
    round, which has no range to show."""
    if summary.get("spread_pct") is None:
        return "n/a"
    return f"±{summary['spread_pct'] / 2:.1f}%"


def worker_spread(counts: list[int]) -> str:
    if not counts or not sum(counts):
        return "-"
    mean = sum(counts) / len(counts)
    text = f"max/mean {max(counts) / mean:.2f}"
    # A worker that served (next to) nothing: with forker-steered on the
    # loopback, every connection of a client thread goes to the worker on
    # that thread's CPU, so wrk's threads starting on one CPU load one worker;
    # and a pinned worker whose CPU another program holds when wrk's burst of
    # connects arrives misses all of them (see RESULTS.md).
    idle = sum(1 for c in counts if c < 0.01 * mean)
    if idle:
        text += f", {idle} of {len(counts)} workers idle"
    return text


def tables(
    summary: dict[str, dict[str, dict]], scenarios: list[str], markdown: bool
) -> str:
    lines: list[str] = []
    columns = [
        "server",
        "tool",
        "req/s (median)",
        "spread",
        "p50 ms",
        "p99 ms",
        "errors",
        "ratio",
        "server µs/req",
        "other CPU",
    ]
    differing: dict[str, str] = {}
    for scenario in scenarios:
        header = columns
        rows = sorted(
            summary.get(scenario, {}).values(),
            key=lambda s: -(s.get("rps_median") or -1),
        )
        if not rows:
            continue
        title = f"{scenario}: {SCENARIOS[scenario].title}"
        body = []
        for s in rows:
            label = s["server"] + (" *" if s.get("head_differs") else "")
            if s.get("head_differs"):
                differing[s["server"]] = s["head_differs"]
            if s.get("rps_median") is None:
                body.append([label, s["tool"], "failed", *[""] * 7])
                continue
            ratio = f"{s['ratio']:.2f}x {s['reference']}" if "ratio" in s else "-"
            paired = s.get("round_ratios")
            if paired and len(paired) > 1:
                ratio += f" (rounds {paired[0]:.2f}-{paired[-1]:.2f})"
            body.append(
                [
                    label,
                    s["tool"],
                    f"{s['rps_median']:,.0f}",
                    spread(s),
                    _fmt(s["p50_ms"]),
                    _fmt(s["p99_ms"]),
                    str(s["errors"]),
                    ratio,
                    _fmt(s.get("server_us"), ".1f"),
                    _fmt(s.get("other_cpu_pct"), ".0f")
                    + ("%" if "other_cpu_pct" in s else ""),
                ]
            )
        # Runs recorded before the CPU share was measured have no such column.
        if not any("other_cpu_pct" in r for r in rows):
            header, body = header[:-1], [row[:-1] for row in body]
        # p99.9 where the tool gave it (h2load's log at a fixed rate).
        if any(r.get("p999_ms") is not None for r in rows):
            header = header[:6] + ["p99.9 ms"] + header[6:]
            body = [row[:6] + [_fmt(r.get("p999_ms")) if len(row) > 3 and row[2] != "failed"
                               else ""] + row[6:] for row, r in zip(body, rows)]  # fmt: skip
        lines.append(_table(title, header, body, markdown))
    for name, text in sorted(differing.items()):
        lines.append(f"* {name}: its response head differs from the others': {text}\n")
    spread_rows = []
    for scenario in scenarios:
        for name, s in summary.get(scenario, {}).items():
            for counts in s.get("per_worker", [])[:1]:
                spread_rows.append(
                    [
                        name,
                        scenario,
                        " / ".join(str(c) for c in counts),
                        worker_spread(counts),
                    ]
                )
    if spread_rows:
        lines.append(
            _table(
                "requests served per worker (first good round)",
                ["server", "scenario", "per worker", "balance"],
                spread_rows,
                markdown,
            )
        )
    memory_rows = []
    settle = None
    for scenario in scenarios:
        for name, s in sorted(summary.get(scenario, {}).items()):
            memory = s.get("memory_kb")
            if not memory:
                continue
            settle = memory.get("settle_s", settle)
            row = [name, scenario]
            for when in ("end", "settled"):
                sample = memory.get(when) or {"leader": None, "others": []}
                leader, others = sample["leader"], sample["others"]
                worker = max(others) if others else None  # the largest RSS
                row += [
                    _mib_pair(leader),
                    _mib_pair(worker),
                ]
            memory_rows.append(row)
    if memory_rows:
        lines.append(
            _table(
                "memory after the load, RSS / PSS in MiB"
                + (f" (settled: after {settle:g} idle seconds)" if settle else ""),
                ["server", "scenario", "master", "largest worker", "master settled",
                 "largest worker settled"],
                memory_rows,
                markdown,
            )
        )
    rss_rows = []
    for scenario in scenarios:
        for name, s in sorted(summary.get(scenario, {}).items()):
            rss = s.get("rss_kb")
            if rss and name.startswith("forker") and not s.get("memory_kb"):
                others = rss["others"]
                rss_rows.append(
                    [
                        name,
                        scenario,
                        _fmt((rss["leader"] or 0) / 1024, ".1f"),
                        _fmt(max(others) / 1024 if others else None, ".1f"),
                    ]
                )
    if rss_rows:
        lines.append(
            _table(
                "resident memory after the load (MiB)",
                ["server", "scenario", "master", "largest worker"],
                rss_rows,
                markdown,
            )
        )
    return "\n".join(lines)


def _table(title: str, header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = [
            f"#### {title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" if i < 2 else "--:" for i in range(len(header))) + "|",
        ]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out) + "\n"
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    out = [title]
    for row in [header, *rows]:
        out.append(
            "  "
            + "  ".join(
                str(x).ljust(w) if i < 2 else str(x).rjust(w)
                for i, (x, w) in enumerate(zip(row, widths))
            )
        )
    return "\n".join(out) + "\n"


def chart(
    summary: dict[str, dict[str, dict]], scenarios: list[str], path: str, subtitle: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in scenarios if summary.get(s)]
    cols = 2 if len(shown) > 1 else 1
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(7 * cols, 0.5 + 3.2 * rows), squeeze=False
    )
    for ax, scenario in zip(axes.flat, shown):
        items = sorted(
            (s for s in summary[scenario].values() if s.get("rps_median")),
            key=lambda s: s["rps_median"],
        )
        names = [s["server"] for s in items]
        med = [s["rps_median"] for s in items]
        err = [
            [s["rps_median"] - s["rps_min"] for s in items],
            [s["rps_max"] - s["rps_median"] for s in items],
        ]
        colors = ["#d62728" if n.startswith("forker") else "#7f7f7f" for n in names]
        ax.barh(names, med, xerr=err, color=colors, capsize=3)
        for y, value in enumerate(med):
            ax.text(value, y, f" {value:,.0f}", va="center", fontsize=7)
        tools = sorted({s["tool"] for s in items})
        ax.set_title(f"{SCENARIOS[scenario].title} ({', '.join(tools)})", fontsize=9)
        ax.set_xlabel("requests per second (median, min-max bars)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, max([s["rps_max"] for s in items] + [1]) * 1.2)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(subtitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _subtitle(meta: dict) -> str:
    opts = meta["options"]
    return (
        f"{opts['workers']} workers per server, {meta['machine']['cpus']} CPUs "
        f"({meta['machine']['cpu']}), {opts['rounds']} rounds of {opts['duration']:g} s; "
        f"forker in red"
    )


def report(data: dict, args: argparse.Namespace) -> None:
    """Print the tables, and write what --json, --markdown and --chart ask for."""
    scenarios = [s for s in SCENARIOS if s in data["summary"]]
    pairs = parse_pairs(args.compare)
    print(tables(data["summary"], scenarios, markdown=False))
    print(comparisons(data["runs"], pairs, scenarios, markdown=False))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(tables(data["summary"], scenarios, markdown=True))
            f.write(comparisons(data["runs"], pairs, scenarios, markdown=True))
    if args.json and not args.from_json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    if args.chart:
        chart(data["summary"], scenarios, args.chart, _subtitle(data["meta"]))


def chart_unavailable() -> str | None:
    """Why --chart cannot be drawn here, or None: asked before the run, so
    that minutes of load are not lost to a missing matplotlib at the end."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return (
            f"--chart needs matplotlib ({exc}): pip install matplotlib, "
            'or pip install -e ".[bench]"'
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parse_pairs(args.compare)  # a typo fails now, not after the run
    if args.chart and not args.check:
        problem = chart_unavailable()
        if problem:
            print(problem, file=sys.stderr)
            return 2
    if args.from_json:
        with open(args.from_json) as f:
            data = json.load(f)
        data["summary"] = summarize(data["runs"])
        report(data, args)
        return 0
    scenarios = choose(args.scenarios, SCENARIOS, "scenario")
    wanted = choose(args.servers, SERVERS, "server")
    names, skipped = [], {}
    for name in wanted:
        reason = SERVERS[name].missing()
        if reason:
            skipped[name] = reason
        else:
            names.append(name)
    for name, reason in skipped.items():
        print(f"skip {name}: {reason}", file=sys.stderr)
    if not names:
        print("no server to run", file=sys.stderr)
        return 2
    if args.check:
        return check_servers(names, scenarios, args)
    tools = {s: loadtools.pick_tool(SCENARIOS[s], args.tool) for s in scenarios}
    for s, tool in list(tools.items()):
        if tool is None:
            print(
                f"skip scenario {s}: no load tool for it ({args.tool})", file=sys.stderr
            )
            scenarios.remove(s)
    pairs = [
        (s, n) for s in scenarios for n in names if serves(n, s)
    ]
    estimate = len(pairs) * args.rounds * (args.duration + 1.5)
    print(
        f"{len(pairs)} server/scenario pairs x {args.rounds} rounds x {args.duration:g} s: "
        f"about {estimate / 60:.1f} min",
        file=sys.stderr,
    )

    started = time.time()
    machine = machine_info()
    records: list[dict] = []
    for round_no in range(args.rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for scenario in scenarios:
            for name in order:
                if not serves(name, scenario):
                    continue
                rec = run_one(name, scenario, args, tools[scenario], round_no + 1)
                records.append(rec)
                shown = (
                    f"{rec['rps']:>10,.0f} req/s  errors {rec.get('errors', 0)}"
                    if not rec.get("failed")
                    else f"FAILED: {rec['failed']}"
                )
                print(
                    f"round {round_no + 1} {scenario:<11} {name:<21} {shown}",
                    file=sys.stderr,
                )

    summary = summarize(records)
    meta = {
        "command": "python -m benchmarks "
        + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
        ),
        "started": datetime.datetime.fromtimestamp(
            started, datetime.timezone.utc
        ).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started, 1),
        "machine": machine,
        "commit": _commit(),
        "loadavg_at_end": os.getloadavg(),
        "tools": tool_versions(),
        "servers": {
            n: {"version": SERVERS[n].version(), "note": SERVERS[n].note} for n in names
        },
        "skipped": skipped,
        "options": {
            k: v
            for k, v in vars(args).items()
            if k not in ("json", "chart", "markdown")
        },
        "scenario_tools": tools,
    }
    print()
    report({"meta": meta, "summary": summary, "runs": records}, args)
    failed = sum(1 for r in records if r.get("failed"))
    print(
        f"{len(records)} runs, {failed} failed, {meta['elapsed_s']:.0f} s",
        file=sys.stderr,
    )
    return 0 if records and failed < len(records) else 1
