"""`python -m forker` in its own process group, and raw-socket clients, for the
hardening tests (limits, smuggling, robustness).

The server binds 127.0.0.1:0 and its port is read from the master's "listening
on" log line. stop() always ends with SIGKILL to the whole process group, so no
worker outlives a test even if the master is wedged."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "tests.apps.hardening_app:app"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ForkerProcess:
    """The master and its workers; use as a context manager."""

    def __init__(self, *args: str, workers: int = 1, app: Optional[str] = APP,
                 preexec: Optional[Callable[[], None]] = None,
                 env: Optional[Dict[str, str]] = None, start_timeout: float = 30.0) -> None:
        argv = [sys.executable, "-m", "forker", "--bind", "127.0.0.1:0",
                "--workers", str(workers), *args]
        if app:
            argv.append(app)
        environ = dict(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        environ.update(env or {})
        self.argv = argv
        self.workers = workers
        self.lines: List[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=environ, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True, preexec_fn=preexec)
        self.pgid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.port = self._wait_port(start_timeout)
            self._wait_workers(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def _wait_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        regex = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            match = regex.search(self.log)
            if match:
                return int(match.group(1))
            if self._exited():
                break
            time.sleep(0.02)
        raise AssertionError(f"no port from {self.argv}:\n{self.log}")

    def _wait_workers(self, timeout: float) -> None:
        """Until every worker runs its loop (has its epoll descriptor, so that
        descriptor counts taken now are stable) and the server answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._exited():
                raise AssertionError(f"server exited:\n{self.log}")
            pids = self.worker_pids()
            if len(pids) == self.workers and all(_has_epoll(pid) for pid in pids):
                try:
                    if exchange(self.port, b"GET /pid HTTP/1.1\r\nHost: t\r\n"
                                b"Connection: close\r\n\r\n", timeout=5).startswith(b"HTTP/1.1 200"):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"workers not ready:\n{self.log}")

    def worker_pids(self) -> List[int]:
        """The master's children, from /proc (sorted)."""
        pids: List[int] = []
        task_dir = f"/proc/{self.proc.pid}/task"
        try:
            tasks = os.listdir(task_dir)
        except FileNotFoundError:
            return []
        for task in tasks:
            try:
                with open(f"{task_dir}/{task}/children") as f:
                    pids.extend(int(p) for p in f.read().split())
            except FileNotFoundError:
                continue
        return sorted(pids)

    def _exited(self) -> bool:
        """Whether the master exited, without reaping it: until stop() reaps it,
        its pid, which is the process group's id, cannot be reused, so killing
        the group never reaches a stranger."""
        if self.proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def stop(self) -> None:
        if not self._exited():
            os.kill(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.02)
        try:
            os.killpg(self.pgid, signal.SIGKILL)  # workers included, whatever happened
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._reader.join(5)

    def __enter__(self) -> "ForkerProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- /proc ---------------------------------------------------------------------------

def _has_epoll(pid: int) -> bool:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[eventpoll]":
                    return True
            except OSError:
                continue
    except OSError:
        pass
    return False


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- clients ---------------------------------------------------------------------------

def connect(port: int, timeout: float = 5.0, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def reset(sock: socket.socket) -> None:
    """Closes with an RST (SO_LINGER 0), as a crashing client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until_close(sock: socket.socket, timeout: float = 5.0) -> Tuple[bytes, bool]:
    """Everything the server sends until it closes: (data, closed). closed is
    False when the timeout ran out first; a reset counts as closed."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Sends data, returns what comes back until the server closes."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        out, closed = read_until_close(sock, timeout)
    assert closed, f"server kept the connection open after {out[:200]!r}"
    return out


class Reader:
    """Reads whole responses (Content-Length, chunked or until close) from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("closed inside a line")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("closed inside a body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, head_only: bool = False) -> Tuple[int, Dict[str, str], bytes]:
        """(status, lower-cased fields, decoded body)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"closed before a complete head: {self.buf[:200]!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields: Dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if head_only or status in (204, 304) or 100 <= status < 200:
            return status, fields, b""
        if "content-length" in fields:
            return status, fields, self._exactly(int(fields["content-length"]))
        if fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, fields, b"".join(parts)
                parts.append(self._exactly(size))
                self._line()
        while self._fill():
            pass
        body, self.buf = self.buf, b""
        return status, fields, body


def get(port: int, target: str = "/", timeout: float = 5.0) -> Tuple[int, Dict[str, str], bytes]:
    """One GET on a fresh connection (Connection: close)."""
    with connect(port, timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return Reader(sock).response()


def raise_nofile(wanted: int) -> int:
    """Raises this process's descriptor limit towards wanted (capped by the hard
    limit); returns the soft limit now in force."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
