"""Run `python -m forker ...` as a subprocess on 127.0.0.1 and talk to it
through real sockets. The server binds port 0; its port is read from the
"listening on" line of its error log."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "tests", "apps")
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m forker ARGS` until stop(); collects stdout and stderr lines."""

    def __init__(self, *args: str, env: Optional[Dict[str, str]] = None, cwd: str = ROOT,
                 port: Optional[int] = None, wait: bool = True,
                 code: Optional[str] = None) -> None:
        """code: run `python -c code` (which calls forker.serve) instead of the CLI."""
        argv = list(args)
        if code is None and "--workers" not in argv:
            argv[:0] = ["--workers", "1"]
        if (code is None and port is None and "--bind" not in argv
                and not any(a.startswith("--bind=") for a in argv)):
            argv[:0] = ["--bind", "127.0.0.1:0"]
        self.port = port
        environ = dict(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join(
            [ROOT, APPS] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        environ.update(env or {})
        self.argv = ([sys.executable, "-c", code] if code is not None
                     else [sys.executable, "-m", "forker"] + argv)
        self.proc = subprocess.Popen(self.argv, cwd=cwd, env=environ, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: List[str] = []
        self.err: List[str] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        if wait:
            self.wait_ready()

    def _read(self, stream, lines: List[str]) -> None:
        for raw in stream:
            with self._lock:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def stderr(self) -> str:
        with self._lock:
            return "\n".join(self.err)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "\n".join(self.out)

    def wait_for(self, pattern: str, timeout: float = 10.0, stream: str = "stderr") -> re.Match:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            text = self.stderr if stream == "stderr" else self.stdout
            match = regex.search(text)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen in {stream} of {self.argv}:\n{text}")
            if self.proc.poll() is not None and not match:
                time.sleep(0.2)  # let the readers catch up once more
                text = self.stderr if stream == "stderr" else self.stdout
                if regex.search(text):
                    return regex.search(text)  # type: ignore[return-value]
                raise AssertionError(f"server exited ({self.proc.returncode}) before {pattern!r}:"
                                     f"\n{self.stderr}")
            time.sleep(0.02)

    def wait_ready(self) -> None:
        if self.port is None:
            match = self.wait_for(r"listening on 127\.0\.0\.1:(\d+)", START_TIMEOUT)
            self.port = int(match.group(1))
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # the socket is bound before the workers run: wait for an answer
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
                    if sock.recv(1):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}):\n{self.stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not answering:\n{self.stderr}")
            time.sleep(0.05)

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str = "GET", target: str = "/", body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None) -> Tuple[int, http.client.HTTPMessage, bytes]:
        conn = self.connection()
        try:
            conn.request(method, target, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def raw(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send bytes, read until the server closes the connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_cli(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 60.0,
            cwd: str = ROOT) -> subprocess.CompletedProcess:
    """`python -m forker ARGS` expected to exit by itself (errors, --version)."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join([ROOT, APPS])
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "forker", *args], capture_output=True,
                          text=True, timeout=timeout, env=environ, cwd=cwd)


def split_response(data: bytes) -> Tuple[str, Dict[str, str], bytes]:
    """A raw HTTP/1.x response -> (status line, lower-cased headers, body as sent)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def dechunk(body: bytes) -> bytes:
    out = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[:size])
        body = body[size + 2:]


def argv_pairs(pairs: Sequence[Tuple[str, str]]) -> List[str]:
    return [item for pair in pairs for item in pair]
