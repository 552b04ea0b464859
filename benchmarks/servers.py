"""How to start, check and stop each server under test.

Every server runs the apps in benchmarks/apps (nginx: its own config, written
to a temporary directory) on 127.0.0.1 with the same number of worker
processes, in its own process group, so that stopping it by its pid stops its
workers too and nothing else."""

from __future__ import annotations

import http.client
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GREETING = b"greeting!!!"
WSGI_APP = "benchmarks.apps.wsgi_app:app"
ASGI_APP = "benchmarks.apps.asgi_app:app"


@dataclass
class Options:
    workers: int = 2
    threads: int = 4  # for the servers that run a blocking app in threads
    wsgi_app: str = WSGI_APP  # the WSGI servers' app: a scenario may name another
    asgi_app: str = ASGI_APP  # the ASGI servers' app, as wsgi_app


@dataclass
class Server:
    name: str
    group: (
        str  # "native" servers are compared with forker, "wsgi" ones with forker-wsgi
    )
    needs: tuple[str, ...]  # modules to import or executables on PATH
    command: Callable[[int, Options, str], list[str]]  # (port, options, tmpdir) -> argv
    package: str | None = None  # distribution whose version is reported
    unsupported: tuple[str, ...] = ()  # scenarios it cannot serve
    counts_per_worker: bool = (
        False  # logs "worker ID pid PID served N requests" at exit
    )
    note: str = ""
    # A known difference of its response head from HEAD_FIELDS, and why: the
    # server still runs, marked in the tables. An undeclared one is refused.
    head_differs: str = ""

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        for need in self.needs:
            if need.startswith("bin:"):
                if not shutil.which(need[4:]):
                    return f"{need[4:]} not on PATH"
            else:
                try:
                    importlib.import_module(need)
                except Exception as exc:  # noqa: BLE001  (a broken install fails in many ways)
                    return f"cannot import {need}: {type(exc).__name__}: {exc}"
        return None

    def version(self) -> str:
        if self.name.startswith("nginx"):
            out = subprocess.run(
                ["nginx", "-v"], capture_output=True, text=True, check=False
            ).stderr
            return out.strip().split("/")[-1]
        if self.name.startswith("forker"):
            return _forker_version()
        if self.name.startswith("floor"):
            return "-"
        try:
            return importlib.metadata.version(self.package or self.name)
        except importlib.metadata.PackageNotFoundError:
            return "?"


def _forker_version() -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import forker; print(forker.__version__)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return out.stdout.strip() or "?"


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _forker(extra: list[str], app: str | None = None):
    def command(port: int, opts: Options, tmp: str) -> list[str]:
        argv = _python(
            "-m",
            "forker",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(opts.workers),
            "--graceful-timeout",
            "5",
            *extra,
        )
        if "--threads" in extra:
            argv[argv.index("--threads") + 1] = str(opts.threads)
        chosen = {WSGI_APP: opts.wsgi_app, ASGI_APP: opts.asgi_app}.get(app, app)
        return argv + ([chosen] if chosen else [])

    return command


NGINX_CONF = """\
worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    default_type text/plain;
    sendfile on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        location = / {{ return 200 "greeting!!!"; }}
        location = /100k {{ root {tmp}; }}
        location = /upload {{
            client_max_body_size 4m;
            client_body_buffer_size 2m;
            return 200 "$content_length";
        }}
    }}
}}
"""


def _nginx(pinned: bool):
    def command(port: int, opts: Options, tmp: str) -> list[str]:
        os.chmod(tmp, 0o755)  # run as root, nginx serves files as an unprivileged user
        with open(os.path.join(tmp, "100k"), "wb") as f:
            f.write(b"x" * 102400)
        conf = os.path.join(tmp, "nginx.conf")
        text = NGINX_CONF.format(workers=opts.workers, tmp=tmp, port=port)
        if pinned:  # what forker does by default with a worker per CPU
            text = text.replace("daemon off;", "daemon off;\nworker_cpu_affinity auto;")
        with open(conf, "w") as f:
            f.write(text)
        return ["nginx", "-c", conf, "-p", tmp, "-e", "stderr"]

    return command


def _gunicorn(worker_class: str):
    def command(port: int, opts: Options, tmp: str) -> list[str]:
        argv = _python(
            "-m",
            "gunicorn",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(opts.workers),
            "-k",
            worker_class,
            "--log-level",
            "warning",
            "--backlog",
            "2048",
        )
        if worker_class == "gthread":
            argv += ["--threads", str(opts.threads)]
        return argv + [opts.wsgi_app]

    return command


def _granian(interface: str, app: str):
    def command(port: int, opts: Options, tmp: str) -> list[str]:
        argv = _python(
            "-m",
            "granian",
            "--interface",
            interface,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(opts.workers),
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
            # Its fastest options for this load: HTTP/1 only (no protocol
            # sniffing), a single-threaded runtime per worker.
            "--http",
            "1",
            "--runtime-mode",
            "st",
        )
        if interface == "wsgi":
            argv += ["--blocking-threads", str(opts.threads)]
        elif _has("uvloop"):
            argv += ["--loop", "uvloop"]
        return argv + [{WSGI_APP: opts.wsgi_app, ASGI_APP: opts.asgi_app}.get(app, app)]

    return command


def _has(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _uvicorn(port: int, opts: Options, tmp: str) -> list[str]:
    argv = _python(
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(opts.workers),
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--backlog",
        "2048",
    )
    if _has("uvloop"):
        argv += ["--loop", "uvloop"]
    return argv + [opts.asgi_app]


def _prefork(kind: str, pinned: bool = False):
    def command(port: int, opts: Options, tmp: str) -> list[str]:
        return _python(
            "-m",
            "benchmarks.apps.prefork",
            kind,
            "127.0.0.1",
            str(port),
            str(opts.workers),
            *(["--pin"] if pinned else []),
            *(["--app", opts.wsgi_app] if opts.wsgi_app != WSGI_APP else []),
        )

    return command


FLOOR_SOURCE = os.path.join(ROOT, "benchmarks", "floor", "floor.c")


def _floor(pinned: bool):
    """benchmarks/floor/floor.c, built into the run's temporary directory."""

    def command(port: int, opts: Options, tmp: str) -> list[str]:
        binary = os.path.join(tmp, "floor")
        if not os.path.exists(binary):
            subprocess.run(
                ["cc", "-O2", "-Wall", "-Wextra", "-o", binary, FLOOR_SOURCE], check=True
            )
        return [binary, "127.0.0.1", str(port), str(opts.workers), *(["--pin"] if pinned else [])]

    return command


def _socketify(port: int, opts: Options, tmp: str) -> list[str]:
    return _python(
        "-m",
        "socketify",
        "benchmarks.apps.socketify_app:run",
        "--interface",
        "socketify",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(opts.workers),
        "--disable-listen-log",
        "true",
    )


SERVERS: dict[str, Server] = {
    s.name: s
    for s in [
        Server(
            "forker",
            "native",
            ("forker",),
            _forker([], "benchmarks.apps.native_app:app"),
            counts_per_worker=True,
            note="native handler, one shared listening socket",
        ),
        Server(
            "forker-unpinned",
            "native",
            ("forker",),
            _forker(["--no-cpu-affinity"], "benchmarks.apps.native_app:app"),
            counts_per_worker=True,
            note="native handler, workers free to move between CPUs (--no-cpu-affinity)",
        ),
        Server(
            "forker-steered",
            "native",
            ("forker",),
            _forker(["--reuse-port", "--cpu-affinity"], "benchmarks.apps.native_app:app"),
            counts_per_worker=True,
            note="native handler, a SO_REUSEPORT socket per pinned worker, connections "
            "steered to the worker on the CPU that received them",
        ),
        Server(
            "forker-greeting",
            "native",
            ("forker",),
            _forker([]),
            counts_per_worker=True,
            unsupported=("100k", "upload", "sleep1ms"),
            note="python -m forker without an application: the built-in greeting, "
            "answered by the loop without a Python call (as nginx's return)",
            head_differs="no Content-Type: the built-in greeting's head is fixed in C "
            "(26 bytes fewer than the others)",
        ),
        Server(
            "forker-reuseport",
            "native",
            ("forker",),
            _forker(["--reuse-port"], "benchmarks.apps.native_app:app"),
            counts_per_worker=True,
            note="native handler, a SO_REUSEPORT socket per worker",
        ),
        Server(
            "forker-wsgi",
            "wsgi",
            ("forker",),
            _forker(["--interface", "wsgi", "--threads", "0"], WSGI_APP),
            counts_per_worker=True,
            note="WSGI app, --threads",
        ),
        Server(
            "forker-wsgi-unpinned",
            "wsgi",
            ("forker",),
            _forker(["--interface", "wsgi", "--threads", "0", "--no-cpu-affinity"], WSGI_APP),
            counts_per_worker=True,
            note="WSGI app, --threads, workers free to move between CPUs (--no-cpu-affinity)",
        ),
        Server(
            "nginx",
            "native",
            ("bin:nginx",),
            _nginx(pinned=False),
            unsupported=("sleep1ms",),
            note="return 200 from the config; static file for /100k; "
            "/upload reads and discards the body",
        ),
        Server(
            "nginx-pinned",
            "native",
            ("bin:nginx",),
            _nginx(pinned=True),
            unsupported=("sleep1ms",),
            note="nginx with worker_cpu_affinity auto (forker pins a worker per CPU by default)",
        ),
        Server(
            "floor-pinned",
            "native",
            ("bin:cc",),
            _floor(pinned=True),
            unsupported=("100k", "upload", "sleep1ms"),
            note="benchmarks/floor/floor.c: not a server, the least any server can do per "
            "request (one recv, one send, forker's exact 129 bytes); workers pinned",
        ),
        Server(
            "gunicorn-sync",
            "wsgi",
            ("gunicorn",),
            _gunicorn("sync"),
            package="gunicorn",
            note="sync workers close every connection",
            head_differs="Connection: close on a keep-alive request (sync workers "
            "close every connection)",
        ),
        Server(
            "gunicorn-gthread",
            "wsgi",
            ("gunicorn",),
            _gunicorn("gthread"),
            package="gunicorn",
        ),
        Server(
            "granian-wsgi",
            "wsgi",
            ("granian",),
            _granian("wsgi", WSGI_APP),
            package="granian",
        ),
        Server(
            "granian-rsgi",
            "native",
            ("granian",),
            _granian("rsgi", "benchmarks.apps.rsgi_app:app"),
            package="granian",
        ),
        Server(
            "uvicorn",
            "native",
            ("uvicorn", "httptools"),
            _uvicorn,
            note="ASGI, httptools parser",
        ),
        Server(
            "forker-asgi",
            "asgi",
            ("forker",),
            _forker(["--interface", "asgi"], ASGI_APP),
            counts_per_worker=True,
            note="ASGI app (uvloop when installed)",
        ),
        Server(
            "forker-asgi-unpinned",
            "asgi",
            ("forker",),
            _forker(["--interface", "asgi", "--no-cpu-affinity"], ASGI_APP),
            counts_per_worker=True,
            note="ASGI app, workers free to move between CPUs (--no-cpu-affinity), "
            "as uvicorn's and granian's are",
        ),
        Server(
            "uvicorn-asgi",
            "asgi",
            ("uvicorn", "httptools"),
            _uvicorn,
            package="uvicorn",
            note="httptools parser, uvloop when installed",
        ),
        Server(
            "granian-asgi",
            "asgi",
            ("granian",),
            _granian("asgi", ASGI_APP),
            package="granian",
            note="HTTP/1 only, single-threaded runtime, uvloop when installed",
        ),
        Server(
            "bjoern",
            "wsgi",
            ("bjoern",),
            _prefork("bjoern"),
            note="pre-forked by benchmarks/apps/prefork.py; one thread per worker",
        ),
        Server(
            "bjoern-pinned",
            "wsgi",
            ("bjoern",),
            _prefork("bjoern", pinned=True),
            package="bjoern",
            note="as bjoern, each worker pinned to its own CPU (os.sched_setaffinity)",
        ),
        Server(
            "meinheld",
            "wsgi",
            ("meinheld", "greenlet"),
            _prefork("meinheld"),
            note="pre-forked by benchmarks/apps/prefork.py",
        ),
        Server(
            "meinheld-pinned",
            "wsgi",
            ("meinheld", "greenlet"),
            _prefork("meinheld", pinned=True),
            package="meinheld",
            note="as meinheld, each worker pinned to its own CPU (os.sched_setaffinity)",
        ),
        Server(
            "socketify",
            "native",
            ("socketify",),
            _socketify,
            note="its own handler interface",
        ),
    ]
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(
    port: int, path: str = "/", body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = (
            {"Content-Type": "application/octet-stream"} if body is not None else {}
        )
        conn.request(
            "POST" if body is not None else "GET", path, body=body, headers=headers
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


EXPECTED = {"/": GREETING, "/100k": b"x" * 102400, "/sleep1ms": GREETING}


JSON_BODY = {"message": "Hello, World!"}
FILE_SIZE = 20 << 20


def check(port: int, path: str) -> str | None:
    """None when the endpoint answers what every server must answer."""
    try:
        if path == "/upload":
            status, body = fetch(port, path, b"x" * (1 << 20))
            want = b"1048576"
        else:
            status, body = fetch(port, path, timeout=30.0)
            want = EXPECTED.get(path)
    except (OSError, http.client.HTTPException) as exc:
        return f"{path}: {type(exc).__name__}: {exc}"
    if path == "/json":  # Flask, Django and json.dumps space it differently
        try:
            ok = status == 200 and json.loads(body) == JSON_BODY
        except ValueError:
            ok = False
        if not ok:
            return f"{path}: status {status}, body {body[:60]!r}"
        return None
    if path == "/file20m":
        if status != 200 or len(body) != FILE_SIZE or body[:4] != b"yyyy":
            return f"{path}: status {status}, {len(body)} bytes"
        return None
    if status != 200 or body != want:
        return f"{path}: status {status}, body {body[:40]!r} ({len(body)} bytes)"
    return None


# The fields every server's answer to GET / must carry, with their values, so
# that the bytes on the wire compare: a Content-Type on every side. Server,
# Date and Connection vary (bjoern sends neither Server nor Date; nginx,
# gunicorn and bjoern add "Connection: keep-alive") and are only reported, by
# the head's size.
HEAD_FIELDS = {"content-type": "text/plain", "content-length": str(len(GREETING))}


def raw_head(port: int, path: str = "/", timeout: float = 5.0) -> bytes:
    """The response head to a plain HTTP/1.1 GET, as sent: status line and
    fields up to and including the blank line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise OSError(f"no complete response head in {data[:80]!r}")
    return data[: end + 4]


def head_fields(head: bytes) -> dict[str, str]:
    """The head's fields, names lower-cased (the last of repeated ones)."""
    fields = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
    return fields


def head_differences(head: bytes) -> list[str]:
    """How the head departs from HEAD_FIELDS; empty when it does not."""
    fields = head_fields(head)
    out = []
    for name, want in HEAD_FIELDS.items():
        got = fields.get(name)
        if got is None:
            out.append(f"no {name.title()}")
        elif got.lower() != want:
            out.append(f"{name.title()}: {got} (not {want})")
    # The request asked for nothing: an HTTP/1.1 server that closes here
    # closes every keep-alive connection, and its keep-alive figures are
    # a connection per request.
    if fields.get("connection", "").lower() == "close":
        out.append("Connection: close on a keep-alive request")
    return out


def check_head(server: Server, port: int) -> tuple[int, str | None, str | None]:
    """(head bytes, a refusal, a declared difference) for GET /. A difference
    the server does not declare in head_differs is a refusal."""
    try:
        head = raw_head(port)
    except OSError as exc:
        return 0, f"head of /: {type(exc).__name__}: {exc}", None
    differences = head_differences(head)
    if not differences:
        return len(head), None, None
    text = ", ".join(differences)
    if server.head_differs:
        return len(head), None, text
    return len(head), f"response head differs from the others: {text}", None


_WORKER_LINE = re.compile(r"worker (\d+) pid (\d+) served (\d+) requests")


def parse_worker_counts(log: str) -> dict[str, int]:
    """forker's exit lines, "worker <id> pid <pid> served <n> requests", as
    {"<id>/<pid>": n}. A respawned worker keeps its id with a new pid."""
    return {f"{wid}/{pid}": int(n) for wid, pid, n in _WORKER_LINE.findall(log)}


def group_rss_kb(pgid: int) -> dict[int, int]:
    """VmRSS in KiB of every live process in the process group."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out[int(entry)] = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def choose(spec: str, known: dict, what: str) -> list[str]:
    """The names a comma-separated option lists ("all": every known one); an
    unknown one stops the run, naming the known ones."""
    if spec == "all":
        return list(known)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return names


def group_cpu_ticks(pgid: int) -> int:
    """User and system time of the live processes of a process group, in ticks."""
    user, system, _ = _group_stats(pgid)
    return user + system


def group_user_ticks(pgid: int) -> int:
    """User time alone of the live processes of a process group, in ticks."""
    return _group_stats(pgid)[0]


def _group_stats(pgid: int) -> tuple[int, int, str]:
    """User ticks, system ticks and the run states of the live processes of a
    process group."""
    user, system, states = 0, 0, ""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            user += int(fields[11])
            system += int(fields[12])
            states += fields[0]
    return user, system, states


def wait_settled(pgid: int, window: float = 0.1, timeout: float = 5.0) -> bool:
    """Wait until no process of the group runs and their CPU time has not
    grown for `window` seconds: every worker has finished starting (importing
    the app) and waits for connections. The first answer to GET / only says
    that one worker is ready; a load that starts while another still imports
    puts all of its keep-alive connections on the ready one (a balance of
    2.00). False when the group never settled within the timeout."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        user, system, states = _group_stats(pgid)
        ticks = user + system
        now = time.monotonic()
        if "R" in states or ticks != last:
            last, since = ticks, now
        elif now - since >= window:
            return True
        time.sleep(0.01)
    return False


def group_memory_kb(pgid: int) -> dict[int, tuple[int, int]]:
    """(RSS, PSS) in KiB of every live process in the process group. RSS counts
    the pages a worker shares with the master (copy-on-write) in both; PSS
    divides each page among the processes that map it."""
    out: dict[int, tuple[int, int]] = {}
    for pid, rss in group_rss_kb(pgid).items():
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                pss = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError, IndexError):
            continue
        out[pid] = (rss, pss)
    return out


@dataclass
class Running:
    server: Server
    port: int
    proc: subprocess.Popen
    log_path: str
    command: list[str]
    startup_s: float = 0.0
    settled: bool = False  # every process idle before the load (wait_settled)
    log: str = ""
    rss_kb: dict[int, int] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.proc.poll() is None


def start(
    server: Server, opts: Options, tmp: str, ready_timeout: float = 20.0
) -> Running:
    """Start the server in its own session and wait until GET / answers the
    greeting. Raises RuntimeError (with the log's tail) when it does not."""
    port = free_port()
    argv = server.command(port, opts, tmp)
    log_path = os.path.join(tmp, f"{server.name}.log")
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
    running = Running(server, port, proc, log_path, argv)
    began = time.monotonic()
    deadline = began + ready_timeout
    problem = "no answer"
    while time.monotonic() < deadline:
        if not running.alive():
            problem = f"exited with status {proc.returncode}"
            break
        try:
            status, body = fetch(port, "/", timeout=2.0)
            if status == 200 and body == GREETING:
                running.startup_s = time.monotonic() - began
                running.settled = wait_settled(proc.pid)
                return running
            problem = f"GET / gave status {status}, body {body[:40]!r}"
            break
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
    stop(running)
    tail = " | ".join(running.log.strip().splitlines()[-5:])
    raise RuntimeError(f"{server.name} did not start: {problem}; log: {tail}")


def stop(running: Running, timeout: float = 10.0) -> None:
    """SIGTERM the server's own pid (its master stops its workers), then
    SIGTERM and at last SIGKILL whatever is left of its process group, and
    read its log."""
    pgid = running.proc.pid
    if running.alive():
        running.rss_kb = group_rss_kb(pgid)
        running.proc.send_signal(signal.SIGTERM)
        try:
            running.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        if not group_rss_kb(pgid) and running.proc.poll() is not None:
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (
            group_rss_kb(pgid) or running.proc.poll() is None
        ):
            time.sleep(0.05)
    running.proc.wait()
    with open(running.log_path, "rb") as f:
        running.log = f.read().decode("utf-8", "replace")
