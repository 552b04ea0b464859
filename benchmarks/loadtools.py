"""The load generators: how each one is invoked for a scenario, and how its
output is read back into one LoadResult.

    oha     when on PATH: the reference command `oha -c 500 -n 200000
            --latency-correction --disable-keepalive URL`, read from its JSON
    wrk     keep-alive by default, pipelining and connection-per-request
            through benchmarks/wrk/bench.lua, read from the line its done()
            prints
    h2load  --h1; pipelining with -m, connection-per-request with a
            "Connection: close" header and a request count (its -D duration
            mode never finishes once the server closes connections)
    ab      connection-per-request or -k; single-threaded, so the weakest

Every run has a hard timeout: a tool that overruns is killed and the run is
reported as failed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(HERE, "wrk", "bench.lua")
TOOLS = ("oha", "wrk", "h2load", "ab")


@dataclass
class Scenario:
    name: str
    title: str
    path: str
    keepalive: bool = True
    pipeline: int = 1
    post_bytes: int = 0
    connections: int | None = None  # None: the tool's default (100)
    requests: int | None = None  # for the count-based tools, None: from the duration
    app: str | None = None  # the WSGI servers' app, when not benchmarks.apps.wsgi_app
    rate: int | None = None  # total req/s to send at (h2load --rps), None: saturate
    wsgi_only: bool = False  # served by the WSGI servers only
    asgi_only: bool = False  # served by the ASGI servers only (app: their app)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("keepalive", "keep-alive, GET /", "/"),
        Scenario("nokeepalive", "connection per request, GET /", "/", keepalive=False),
        Scenario("pipelined", "pipelined x16, GET /", "/", pipeline=16),
        Scenario("100k", "keep-alive, 100 KB response", "/100k"),
        Scenario("upload", "keep-alive, 1 MB POST", "/upload", post_bytes=1 << 20),
        Scenario("sleep1ms", "keep-alive, handler sleeps 1 ms", "/sleep1ms"),
        # The issue's own command, `oha -c 500 -n 200000 --latency-correction
        # --disable-keepalive URL`. Without oha: wrk -c 500 with "Connection:
        # close" for the duration (wrk has no request count), or h2load --h1
        # -c 500 -n 200000 with "Connection: close" (--tool h2load).
        Scenario(
            "seed",
            "the seed's command: 500 connections, a new one per request, GET /",
            "/",
            keepalive=False,
            connections=500,
            requests=200000,
        ),
        # Real applications, WSGI servers only: a JSON object from a plain
        # WSGI function, from Flask (jsonify) and from Django (JsonResponse).
        Scenario("json", "keep-alive, JSON from a plain WSGI app", "/json", wsgi_only=True),
        Scenario(
            "flask",
            "keep-alive, JSON from a Flask view",
            "/json",
            app="benchmarks.apps.flask_app:app",
            wsgi_only=True,
        ),
        Scenario(
            "django",
            "keep-alive, JSON from a Django view",
            "/json",
            app="benchmarks.apps.django_app:app",
            wsgi_only=True,
        ),
        # ASGI servers only: a plain Starlette endpoint (the same app for all).
        Scenario(
            "starlette",
            "keep-alive, text from a Starlette endpoint",
            "/",
            app="benchmarks.apps.starlette_app:app",
            asgi_only=True,
        ),
        # Latency at a fixed rate below saturation rather than at saturation:
        # h2load --rps per connection, percentiles from its per-request log.
        Scenario(
            "rate20k",
            "keep-alive, GET / at a fixed 20,000 req/s",
            "/",
            rate=20000,
        ),
        # 20 MiB through wsgi.file_wrapper, 10 connections.
        Scenario(
            "file20m",
            "keep-alive, 20 MB file (wsgi.file_wrapper)",
            "/file20m",
            wsgi_only=True,
            connections=10,
        ),
    ]
}


@dataclass
class LoadResult:
    tool: str
    command: list[str]
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None  # where the tool's output gives it
    errors: int = 0
    error_detail: dict[str, int] = field(default_factory=dict)
    failed: str | None = None  # why the run produced no figure

    def as_dict(self) -> dict:
        return asdict(self)


def available(tool: str) -> bool:
    return shutil.which(tool) is not None


def pick_tool(scenario: Scenario, wanted: str = "auto") -> str | None:
    """The tool for a scenario: the wanted one if it can run it, else oha,
    then wrk, then h2load, then ab."""

    def can(tool: str) -> bool:
        if not available(tool):
            return False
        if scenario.pipeline > 1:
            return tool in ("wrk", "h2load")
        if scenario.rate:  # wrk has no -R here (that is wrk2), ab and oha's -q untried
            return tool == "h2load"
        return True

    if wanted != "auto":
        return wanted if can(wanted) else None
    for tool in TOOLS:
        if can(tool):
            return tool
    return None


# --- command lines -------------------------------------------------------------------------


@dataclass
class LoadSpec:
    url: str  # the server's base, "http://127.0.0.1:PORT"
    scenario: Scenario
    duration: float
    connections: int | None = None  # None: the tool's reference default
    threads: int = 2
    requests: int | None = None  # for count-based runs
    taskset: str | None = None  # CPU list for the load tool


def _connections(spec: LoadSpec, default: int = 100) -> int:
    """--connections, else the scenario's own count, else the default."""
    return spec.connections or spec.scenario.connections or default


def _count(spec: LoadSpec, rate_guess: int = 20000) -> int:
    """A request count for tools that need one: --requests, the scenario's own
    count, else enough for about the duration at a plausible rate, at least
    ten per connection."""
    if spec.requests or spec.scenario.requests:
        return spec.requests or spec.scenario.requests
    return max(_connections(spec) * 10, int(spec.duration * rate_guess))


def _oha_json_flags() -> list[str]:
    try:
        text = subprocess.run(
            ["oha", "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    return ["--output-format", "json"] if "--output-format" in text else ["-j"]


def build_command(
    tool: str, spec: LoadSpec, body_file: str | None = None, log_file: str | None = None
) -> list[str]:
    sc = spec.scenario
    url = spec.url + sc.path
    if tool == "wrk":
        cmd = [
            "wrk",
            "-t",
            str(spec.threads),
            "-c",
            str(max(_connections(spec), spec.threads)),
            "-d",
            f"{max(1, round(spec.duration))}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            WRK_SCRIPT,
            url,
            "--",
        ]
        if not sc.keepalive:
            cmd.append("close")
        if sc.pipeline > 1:
            cmd.append(f"pipeline={sc.pipeline}")
        if sc.post_bytes:
            cmd.append(f"post={sc.post_bytes}")
    elif tool == "oha":
        # The reference command for GET / only: 200,000 requests of a slow
        # endpoint would outlast any sensible bound.
        reference = (
            spec.connections is None and spec.requests is None and sc.path == "/"
        )
        cmd = ["oha", "--no-tui", *_oha_json_flags(), "--latency-correction"]
        if reference:
            cmd += ["-c", "500", "-n", "200000"]
        else:
            cmd += ["-c", str(_connections(spec))]
            cmd += (
                ["-n", str(spec.requests)]
                if spec.requests
                else ["-z", f"{spec.duration:g}s"]
            )
        if not sc.keepalive:
            cmd.append("--disable-keepalive")
        if sc.post_bytes:
            cmd += [
                "-m",
                "POST",
                "-D",
                body_file or "",
                "-T",
                "application/octet-stream",
            ]
        cmd.append(url)
    elif tool == "h2load":
        cmd = ["h2load", "--h1", "-t", str(spec.threads), "-c", str(_connections(spec))]
        if sc.keepalive:
            cmd += ["-D", f"{max(1, round(spec.duration))}"]
        else:
            cmd += ["-n", str(_count(spec)), "-H", "Connection: close"]
        if sc.rate:
            cmd += [f"--rps={max(1, round(sc.rate / _connections(spec)))}"]
            cmd += [f"--log-file={log_file or 'LOG_FILE'}"]
        if sc.pipeline > 1:
            cmd += ["-m", str(sc.pipeline)]
        if sc.post_bytes:
            cmd += [
                "-d",
                body_file or "",
                "-H",
                "Content-Type: application/octet-stream",
            ]
        cmd.append(url)
    elif tool == "ab":
        cmd = [
            "ab",
            "-q",
            "-r",
            "-s",
            "10",
            "-n",
            str(_count(spec, 10000)),
            "-c",
            str(_connections(spec)),
        ]
        if sc.keepalive:
            cmd.append("-k")
        if sc.post_bytes:
            cmd += ["-p", body_file or "", "-T", "application/octet-stream"]
        cmd.append(url)
    else:
        raise ValueError(f"unknown load tool {tool!r}")
    if spec.taskset:
        cmd = ["taskset", "-c", spec.taskset, *cmd]
    return cmd


# --- parsers -------------------------------------------------------------------------------

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    """wrk's output: the WRKJSON line of bench.lua's done() when present, else
    wrk's own summary (p50/p99 from --latency)."""
    result = LoadResult("wrk", [])
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[len("WRKJSON ") :])
            result.requests = data["requests"]
            result.seconds = data["duration_us"] / 1e6
            result.rps = result.requests / result.seconds if result.seconds else 0.0
            lat = data["latency_us"]
            # With pipelining wrk times a whole batch and its percentiles
            # come out as 0: report none rather than a wrong figure.
            if lat["p99"] > 0:
                result.p50_ms = lat["p50"] / 1000
                result.p99_ms = lat["p99"] / 1000
            result.error_detail = {k: v for k, v in data["errors"].items() if v}
            result.errors = sum(data["errors"].values())
            return result
    match = re.search(r"(\d+) requests in ([\d.]+\w+),", output)
    if not match:
        raise ValueError("no wrk summary in the output")
    result.requests = int(match.group(1))
    result.seconds = _seconds(match.group(2))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    result.rps = float(rps.group(1)) if rps else result.requests / result.seconds
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        found = re.search(rf"^\s+{pct}%\s+([\d.]+\w+)\s*$", output, re.MULTILINE)
        if found:
            value = _seconds(found.group(1)) * 1000
            setattr(result, attr, value if value > 0 else None)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket:
        for name, value in zip(
            ("connect", "read", "write", "timeout"), socket.groups()
        ):
            if int(value):
                result.error_detail[name] = int(value)
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if status:
        result.error_detail["status"] = int(status.group(1))
    result.errors = sum(result.error_detail.values())
    return result


def parse_h2load(output: str) -> LoadResult:
    """h2load's summary. It prints no percentiles, only min/max/mean."""
    result = LoadResult("h2load", [])
    finished = re.search(r"finished in ([\d.]+\w+), ([\d.]+) req/s", output)
    counts = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        output,
    )
    if not finished or not counts:
        raise ValueError("no h2load summary in the output")
    result.seconds = _seconds(finished.group(1))
    result.rps = float(finished.group(2))
    _total, _started, done, ok, failed, errored, timeout = map(int, counts.groups())
    result.requests = done
    status = re.search(
        r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output
    )
    bad_status = int(status.group(3)) + int(status.group(4)) if status else 0
    detail = {
        "failed": failed,
        "errored": errored,
        "timeout": timeout,
        "status": bad_status,
    }
    result.error_detail = {k: v for k, v in detail.items() if v}
    result.errors = max(failed, done - ok)
    return result


def parse_ab(output: str) -> LoadResult:
    """ab's report; its percentiles are whole milliseconds."""
    result = LoadResult("ab", [])
    rps = re.search(r"Requests per second:\s+([\d.]+)", output)
    done = re.search(r"Complete requests:\s+(\d+)", output)
    taken = re.search(r"Time taken for tests:\s+([\d.]+) seconds", output)
    if not rps or not done or not taken:
        raise ValueError("no ab report in the output")
    result.rps = float(rps.group(1))
    result.requests = int(done.group(1))
    result.seconds = float(taken.group(1))
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        found = re.search(rf"^\s+{pct}%\s+(\d+)", output, re.MULTILINE)
        if found:
            setattr(result, attr, float(found.group(1)))
    failed = re.search(r"Failed requests:\s+(\d+)", output)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", output)
    detail = {
        "failed": int(failed.group(1)) if failed else 0,
        "status": int(non2xx.group(1)) if non2xx else 0,
    }
    result.error_detail = {k: v for k, v in detail.items() if v}
    result.errors = sum(detail.values())
    return result


def parse_oha(output: str) -> LoadResult:
    """oha's JSON (-j / --output-format json): times are in seconds."""
    start = output.find("{")
    if start < 0:
        raise ValueError("no oha JSON in the output")
    data = json.loads(output[start:])
    summary = data["summary"]
    result = LoadResult("oha", [])
    result.rps = float(summary["requestsPerSec"])
    result.seconds = float(summary["total"])
    statuses = {
        str(k): int(v) for k, v in data.get("statusCodeDistribution", {}).items()
    }
    errors = {str(k): int(v) for k, v in data.get("errorDistribution", {}).items()}
    result.requests = sum(statuses.values())
    percentiles = data.get("latencyPercentiles") or {}
    for key, attr in (("p50", "p50_ms"), ("p99", "p99_ms")):
        if percentiles.get(key) is not None:
            setattr(result, attr, float(percentiles[key]) * 1000)
    bad = sum(v for k, v in statuses.items() if not k.startswith(("2", "3")))
    result.error_detail = dict(errors)
    if bad:
        result.error_detail["status"] = bad
    result.errors = sum(errors.values()) + bad
    return result


def h2load_log_latency(text: str) -> tuple[float | None, float | None, float | None]:
    """p50, p99 and p99.9 in ms from h2load's --log-file: one line per
    request, start time (µs since the epoch), status, µs to the response's
    end, tab-separated."""
    times = sorted(int(line.split("\t")[2]) for line in text.splitlines()
                   if line.count("\t") >= 2)  # fmt: skip
    if not times:
        return None, None, None

    def pct(p: float) -> float:
        return times[min(len(times) - 1, int(p / 100 * len(times)))] / 1000

    return pct(50), pct(99), pct(99.9)


PARSERS = {"wrk": parse_wrk, "h2load": parse_h2load, "ab": parse_ab, "oha": parse_oha}


# --- running -------------------------------------------------------------------------------


def run(tool: str, spec: LoadSpec, timeout: float | None = None) -> LoadResult:
    """Run one load and parse it. Never raises for a failed run: the result
    carries `failed` instead."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        body_file = None
        if spec.scenario.post_bytes:
            body_file = os.path.join(tmp, "body")
            with open(body_file, "wb") as f:
                f.write(b"x" * spec.scenario.post_bytes)
        log_file = os.path.join(tmp, "h2load.log") if spec.scenario.rate else None
        cmd = build_command(tool, spec, body_file, log_file)
        if timeout is None:
            timeout = spec.duration * 3 + 30
            if "-n" in cmd:  # count-based: as long as the server takes, within reason
                timeout = max(timeout, 300.0)
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return LoadResult(
                tool, cmd, failed=f"{tool} ran over its {timeout:.0f} s bound"
            )
        log_text = ""
        if log_file and os.path.exists(log_file):
            with open(log_file) as f:
                log_text = f.read()
    shown = [part if part != body_file else "BODY_FILE" for part in cmd]
    try:
        result = PARSERS[tool](output)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        tail = " | ".join(output.strip().splitlines()[-3:])
        return LoadResult(tool, shown, failed=f"{exc} (exit {proc.returncode}): {tail}")
    result.command = [part if part != f"--log-file={log_file}" else "--log-file=LOG"
                      for part in shown]  # fmt: skip
    if log_file:
        result.p50_ms, result.p99_ms, result.p999_ms = h2load_log_latency(log_text)
    if spec.scenario.pipeline > 1:
        # The tools time a whole batch of pipelined requests, not one.
        result.p50_ms = result.p99_ms = None
    return result
