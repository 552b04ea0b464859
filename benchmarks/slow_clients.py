"""Slow attackers against forker and nginx, one after the other on loopback:
how long a normal client waits while the attack runs, and the workers' memory.

    python benchmarks/slow_clients.py                      # every attack, both servers
    python benchmarks/slow_clients.py --attack slowloris --servers forker

Attacks (bounded in connections and time; each stops by itself):
  slowloris   slowhttptest -H: 3,000 connections trickling header lines
  slow-body   slowhttptest -B: 3,000 connections sending a body a few bytes at a time
  half-close  part of a head and the FIN in one segment, 400 connections a second,
              the attacker letting go of each socket at once
  slow-read   slowhttptest -X: 1,500 connections asking for 1 MiB and reading it
              slowly (a 1 KiB window, 32 bytes every second)
While an attack runs, a probe sends GET / on a new connection every 0.1 s (10 s
timeout) and records how long each took. Both servers run with their defaults
(forker: max_connections 1000 per worker; nginx: worker_connections 1024, its
default header and body timeouts of 60 s), 2 workers each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import servers  # noqa: E402

NGINX_CONF = """\
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr crit;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        location / {{ return 200 "greeting!!!"; }}
        location = /big {{ root {tmp}; }}
    }}
}}
"""


def start_nginx(tmp: str, port: int) -> subprocess.Popen:
    os.chmod(tmp, 0o755)
    with open(os.path.join(tmp, "big"), "wb") as f:
        f.write(b"x" * (1 << 20))
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port))
    return subprocess.Popen(["nginx", "-c", conf, "-p", tmp], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_forker(port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=servers.ROOT)
    # tests/apps/hardening_app: GET / answers "path=/", GET /big 1 MiB in one body
    return subprocess.Popen([sys.executable, "-m", "forker", "--bind", f"127.0.0.1:{port}",
                             "--workers", "2", "tests.apps.hardening_app:app"],
                            start_new_session=True, env=env, cwd=servers.ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if probe(port, 2.0) is not None:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no server on port {port}")


def probe(port: int, timeout: float) -> Optional[float]:
    """Seconds a GET / took, None when it failed."""
    began = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(max(0.1, timeout - (time.monotonic() - began)))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    return time.monotonic() - began if data.startswith(b"HTTP/1.1 200") else None


def children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def half_close_flood(port: int, seconds: float, rate: int, stop: threading.Event) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.is_set():
        tick = time.monotonic()
        for _ in range(rate // 10):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                sock.sendall(b"GET / HTTP/1.1\r\nHost")
                sock.shutdown(socket.SHUT_WR)
                sock.close()
            except OSError:
                pass
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))


def attack(name: str, port: int, seconds: int, stop: threading.Event) -> Optional[subprocess.Popen]:
    url = f"http://127.0.0.1:{port}/"
    common = ["-c", "3000", "-r", "500", "-l", str(seconds), "-u", url, "-p", "3"]
    if name == "slowloris":
        return subprocess.Popen(["slowhttptest", "-H", "-i", "5", "-x", "24", *common],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if name == "slow-body":
        return subprocess.Popen(["slowhttptest", "-B", "-i", "5", "-s", "100000", "-x", "2",
                                 *common], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if name == "slow-read":
        return subprocess.Popen(["slowhttptest", "-X", "-c", "1500", "-r", "500", "-l",
                                 str(seconds), "-u", url + "big", "-p", "3", "-w", "512",
                                 "-y", "1024", "-n", "1", "-z", "32", "-k", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threading.Thread(target=half_close_flood, args=(port, seconds, 400, stop), daemon=True).start()
    return None


def close_wait(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "08":
                    count += 1
    return count


def run(server: str, name: str, seconds: int) -> Dict[str, object]:
    port = servers.free_port()
    with tempfile.TemporaryDirectory(prefix="forker-slow-") as tmp:
        proc = start_nginx(tmp, port) if server == "nginx" else start_forker(port)
        try:
            wait_ready(port)
            stop = threading.Event()
            attacker = attack(name, port, seconds, stop)
            time.sleep(2.0)  # let the attack fill the slots
            times: List[float] = []
            failed = 0
            peak_rss = 0.0
            peak_close_wait = 0
            end = time.monotonic() + seconds - 4
            while time.monotonic() < end:
                took = probe(port, 10.0)
                if took is None:
                    failed += 1
                else:
                    times.append(took)
                for pid in children(proc.pid):
                    peak_rss = max(peak_rss, rss_mib(pid))
                peak_close_wait = max(peak_close_wait, close_wait(port))
                time.sleep(0.1)
            stop.set()
            if attacker is not None:
                attacker.wait(seconds + 30)
            times.sort()
            return {
                "server": server, "attack": name, "probes": len(times) + failed,
                "failed": failed,
                "p50_ms": 1000 * times[len(times) // 2] if times else None,
                "max_ms": 1000 * times[-1] if times else None,
                "worker_rss_mib": round(peak_rss, 1),
                "close_wait": peak_close_wait,
            }
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attack", action="append",
                        choices=["slowloris", "slow-body", "half-close", "slow-read"])
    parser.add_argument("--servers", default="forker,nginx")
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    if shutil.which("slowhttptest") is None:
        print("slowhttptest is not installed (apt-get install slowhttptest)", file=sys.stderr)
        return 2
    print("| attack | server | probes | failed | median wait | worst wait | worker RSS | "
          "CLOSE-WAIT |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.attack or ["slowloris", "slow-body", "half-close", "slow-read"]:
        for server in args.servers.split(","):
            r = run(server, name, args.seconds)
            fmt = (lambda v: "-" if v is None else f"{v:.1f} ms")
            print(f"| {name} | {server} | {r['probes']} | {r['failed']} | {fmt(r['p50_ms'])} | "
                  f"{fmt(r['max_ms'])} | {r['worker_rss_mib']} MiB | {r['close_wait']} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
