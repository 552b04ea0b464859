"""HTTPS: forker against nginx with the same certificate, keep-alive and a new
connection (a full TLS handshake) per request, with wrk and h2load.

    python -m benchmarks.tls_bench [--seconds 5] [--rounds 3] [--key ec|rsa]
                                   [--markdown benchmarks/TLS_RESULTS.md]

Both servers run GET / answering "greeting!!!" with the same number of worker
processes and the same self-signed certificate, made here with the openssl
command; TLS 1.2 and 1.3 are enabled on both, and both clients negotiate TLS
1.3. wrk and h2load keep the session of a closed connection for the next one,
so a new connection is a resumed handshake (a session ticket, then a fresh
X25519 exchange), on nginx as on forker, whose workers share their ticket
keys as nginx's do. Rounds are interleaved (every round runs every case on both servers, in
alternating order) and the median of the rounds is reported, so a slow
moment of a shared machine does not land on one server only. The load tools
come from benchmarks/loadtools.py: wrk through benchmarks/wrk/bench.lua
("close" adds Connection: close, so wrk reconnects for every request), h2load
with --h1 (a request count and Connection: close for the per-request case)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from benchmarks.loadtools import PARSERS, SCENARIOS, LoadSpec, build_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:{port} ssl backlog=2048;
        location = / {{ return 200 "greeting!!!"; }}
    }}
}}
"""

CASES = [  # (scenario of benchmarks/loadtools.py, connections)
    ("keepalive", 50),
    ("nokeepalive", 16),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificate(tmp: str, key: str) -> Tuple[str, str]:
    cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if key == "ec"
              else ["-newkey", "rsa:2048"])
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key_path,
                    "-out", cert_path, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert_path, key_path


class Running:
    """A server in its own process group."""

    def __init__(self, name: str, argv: List[str], port: int, log: str) -> None:
        self.name, self.port = name, port
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        context = ssl._create_unverified_context()
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                    with context.wrap_socket(raw) as sock:
                        sock.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                        if sock.recv(100).startswith(b"HTTP/1.1 200"):
                            return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{name} did not start; see {log}")
            time.sleep(0.1)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.log.close()


def start(tmp: str, workers: int, cert: str, key: str) -> List[Running]:
    nginx_port, forker_port = free_port(), free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(workers=workers, tmp=tmp, port=nginx_port, cert=cert, key=key))
    os.chmod(tmp, 0o755)
    servers = [Running("nginx", ["nginx", "-c", conf, "-p", tmp, "-e", "stderr"], nginx_port,
                       os.path.join(tmp, "nginx.log"))]
    try:
        servers.append(Running(
            "forker", [sys.executable, "-m", "forker", "--bind", f"127.0.0.1:{forker_port}",
                       "--workers", str(workers), "--graceful-timeout", "5",
                       "--certfile", cert, "--keyfile", key],
            forker_port, os.path.join(tmp, "forker.log")))
    except BaseException:
        servers[0].stop()
        raise
    return servers


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of pid and its descendants so far."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(cpu_seconds(int(child)) for child in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def run_once(tool: str, scenario: str, connections: int, server: Running,
             seconds: float) -> Tuple[float, Optional[float], Optional[float], int, float,
                                      List[str]]:
    """(requests/s, p50 ms, p99 ms, errors, requests per CPU second of the
    server, command) of one load run."""
    port = server.port
    spec = LoadSpec(f"https://127.0.0.1:{port}", SCENARIOS[scenario], seconds,
                    connections=connections, threads=1, requests=None)
    if tool == "h2load" and scenario == "nokeepalive":
        spec.requests = int(seconds * 1500)  # about the duration at a full-handshake rate
    command = build_command(tool, spec)
    cpu_before = cpu_seconds(server.proc.pid)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 6 + 60)
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    result = PARSERS[tool](done.stdout)
    per_cpu = result.requests / cpu if cpu > 0 else 0.0
    return result.rps, result.p50_ms, result.p99_ms, result.errors, per_cpu, command


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--key", choices=("ec", "rsa"), default="ec",
                        help="certificate key: ECDSA P-256 or RSA 2048")
    parser.add_argument("--tools", default="wrk,h2load")
    parser.add_argument("--markdown", metavar="FILE", help="append the results to FILE")
    args = parser.parse_args(argv)
    tools = [tool for tool in args.tools.split(",") if shutil.which(tool)]
    for need in ("nginx", "openssl"):
        if not shutil.which(need):
            raise SystemExit(f"{need} is not on PATH")
    results: Dict[Tuple[str, str, str], List[Tuple[float, Optional[float], Optional[float], int,
                                                   float]]] = {}
    load_before = os.getloadavg()[0]
    commands: Dict[Tuple[str, str], List[str]] = {}
    with tempfile.TemporaryDirectory(prefix="tls-bench-") as tmp:
        cert, key = make_certificate(tmp, args.key)
        servers = start(tmp, args.workers, cert, key)
        try:
            for round_ in range(args.rounds):
                for scenario, connections in CASES:
                    for tool in tools:
                        order = servers if round_ % 2 == 0 else servers[::-1]
                        for server in order:
                            *figures, command = run_once(tool, scenario, connections,
                                                         server, args.seconds)
                            results.setdefault((scenario, tool, server.name), []).append(
                                tuple(figures))  # type: ignore[arg-type]
                            commands[(scenario, tool)] = command
                            print(f"round {round_ + 1} {scenario:<11} {tool:<6} "
                                  f"{server.name:<6} {figures[0]:>9.0f} req/s "
                                  f"errors {figures[3]}", flush=True)
        finally:
            for server in servers:
                server.stop()
    text = report(results, commands, args, tools, (load_before, os.getloadavg()[0]))
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(text)
    return 0


def _commit() -> str:
    """The commit measured, marked when the tree has changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout
    head = git("rev-parse", "--short", "HEAD").strip()
    if not head:
        return "(not a git checkout)"
    return head + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no")
                   else "")


def _median(values: List[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def report(results: Dict[Tuple[str, str, str], List[Tuple[float, Optional[float], Optional[float],
                                                          int, float]]],
           commands: Dict[Tuple[str, str], List[str]], args: argparse.Namespace,
           tools: List[str], load: Tuple[float, float]) -> str:
    version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    lines = [
        f"\n### {time.strftime('%Y-%m-%d')}, forker {_commit()}: {args.workers} workers, "
        f"{'ECDSA P-256' if args.key == 'ec' else 'RSA 2048'} certificate, "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s, {os.cpu_count()} CPUs\n",
        f"{version.replace('nginx version: ', '')}, {ssl.OPENSSL_VERSION}; medians of the "
        f"rounds. 1-minute load average {load[0]:.1f} before, {load[1]:.1f} after. "
        "Requests per CPU second: requests served over the CPU time the server's processes "
        "used during the run, a figure less sensitive than req/s to the rest of a shared "
        "machine.\n",
        "| case | tool | forker req/s | nginx req/s | forker / nginx | req per CPU s, forker "
        "/ nginx | forker p50 / p99 ms | nginx p50 / p99 ms | errors (forker, nginx) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, connections in CASES:
        for tool in tools:
            row = {}
            for name in ("forker", "nginx"):
                runs = results.get((scenario, tool, name), [])
                row[name] = (_median([r[0] for r in runs]), _median([r[1] for r in runs]),
                             _median([r[2] for r in runs]), sum(r[3] for r in runs),
                             _median([r[4] for r in runs]))
            f, n = row["forker"], row["nginx"]
            ratio = f"{f[0] / n[0]:.2f}" if f[0] and n[0] else "-"
            lat = {name: (f"{v[1]:.2f} / {v[2]:.2f}" if v[1] is not None and v[2] is not None
                          else "-") for name, v in row.items()}
            title = {"keepalive": f"keep-alive, {connections} connections",
                     "nokeepalive": f"new connection per request, {connections} connections"}
            lines.append(f"| {title[scenario]} | {tool} | {f[0] or 0:,.0f} | {n[0] or 0:,.0f} "
                         f"| {ratio} | {f[4] or 0:,.0f} / {n[4] or 0:,.0f} | {lat['forker']} "
                         f"| {lat['nginx']} | {f[3]}, {n[3]} |")
    lines.append("\nCommands (PORT is each server's):\n")
    for (scenario, tool), command in commands.items():
        shown = " ".join("https://127.0.0.1:PORT/" if "://" in part
                         else os.path.relpath(part, ROOT) if part.startswith(ROOT)
                         else part for part in command)
        lines.append(f"    {shown}")
    lines.append(f"\n    python -m benchmarks.tls_bench --seconds {args.seconds:g} "
                 f"--rounds {args.rounds} --workers {args.workers} --key {args.key}\n")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
