"""The one harness of the end-to-end tests: a real server process, and raw
HTTP clients that read what it answers.

**Processes.** `ForkerProcess(*options, app=...)` runs `python -m forker
--bind 127.0.0.1:0 --workers 1 OPTIONS APP` (or `python -c CODE`, which calls
forker's Python API) in a session of its own, on the interpreter running the
tests, with this checkout and tests/apps on its PYTHONPATH: an application of
tests/apps is named by its module, `"hardening_app:app"`; no application
serves the built-in greeting. `ServerProcess(argv)` runs any other server
command the same way (gunicorn as an oracle, forker with gunicorn's flags).
Either is a context manager and is ready once constructed:

- its address is known (given, or read from its "listening on" log line),
- each of its `workers` runs its event loop (has its epoll descriptor; a
  worker that is still importing has none), and
- the server answers a probe request (`OPTIONS *` unless told otherwise) with
  a status line, whatever the status;

each step waits for that event, with a deadline that only bounds a hang.
`stop()` (and leaving the `with` block, whether the test passed or not) sends
TERM to the master, waits for it to exit (15 s at most), then kills the whole
process group and reaps the master, so that no worker outlives its test; it
returns the master's exit status. The master is never reaped before that:
its pid, which is the group's id, cannot be reused by a stranger meanwhile.
stdout and stderr are read as they come (`.stdout`, `.stderr`); `wait_for()`
waits for a line of them.

**Clients.** `connect()`, `request()`, `get()` and `exchange()` talk to a port
on 127.0.0.1 (or an address as forker logs it) through plain sockets. Every
response is read by one parser, `Reader` (a stream, so pipelined and
kept-alive responses too) and `parse_response()` (bytes holding exactly one
response). It keeps the fields
as sent, in order, repeated names included (`Fields`: `getall(name)`, and
`get(name)` or `fields[name]`, which refuse a field sent more than once),
decodes bodies framed by Content-Length, by chunked coding (trailers kept)
or by the close of the connection, and refuses a malformed status line,
field line or framing (`MalformedResponse`); a response the server cut short
by closing is `ClosedEarly` (an EOFError and an OSError).

This module replaces tests/cli_server.py and tests/forker_proc.py. It grew
from forker_proc.py, whose process handling was the safer one (a session per
server, the group killed at the end, the master never reaped early, a worker
counted ready only in its loop); from cli_server.py it took the captured
stdout, the ready check by an answered request (which also holds for a TLS
listener, whose plain-HTTP answer is a 400), `python -c` servers and
`run_cli()`. A new name rather than either old one: code written against the
old modules (dicts of one value per field name, bodies left chunked) fails at
its import instead of reading fields differently."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple,
                    Union)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "tests", "apps")
TIMEOUT = 10.0  # seconds a client waits for the server: a bound on a hang, never a speed
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
PROBE = b"OPTIONS * HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n"
FORKER_LISTENING = r"listening on (\S+)"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def environment(env: Optional[Dict[str, str]] = None,
                pythonpath: Sequence[str] = ()) -> Dict[str, str]:
    """This process's environment with this checkout, tests/apps and
    `pythonpath` first on PYTHONPATH, then `env`."""
    environ = dict(os.environ)
    inherited = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    environ["PYTHONPATH"] = os.pathsep.join([ROOT, APPS, *pythonpath, *inherited])
    environ.update(env or {})
    return environ


def run_cli(*args: str, env: Optional[Dict[str, str]] = None, cwd: str = ROOT,
            timeout: float = 60.0) -> subprocess.CompletedProcess:
    """`python -m forker ARGS` expected to exit by itself (errors, --version,
    --check-config, a daemon's parent); text output."""
    return subprocess.run([sys.executable, "-m", "forker", *args], capture_output=True,
                          text=True, timeout=timeout, env=environment(env), cwd=cwd)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server that must be told its
    port (its log does not say it, or the test needs it in advance)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes -------------------------------------------------------------------------------

def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0,
             step: float = 0.02) -> Any:
    """predicate()'s value once it is true; an AssertionError naming what
    after timeout seconds, which only bound a hang (the test waits for the
    event, never for a time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class ServerProcess:
    """A server command in its own session: started, waited for, stopped and
    reaped as the module docstring says.

    address: where it listens, as forker logs it ("127.0.0.1:8080",
    "[::1]:8080", "unix:/path"); when not given, the first match of
    `listening` (a regex whose group 1 is the address) in its stderr.
    workers: how many workers it forks, waited for each in its loop (None:
    not a forker, or a count the test does not know). probe: the request
    whose answer says the server serves (None: no request, as for a server
    that only accepts a PROXY header). wait=False returns at once: call
    wait_ready() (or the test's own wait) later."""

    def __init__(self, argv: Sequence[str], *, cwd: str = ROOT,
                 env: Optional[Dict[str, str]] = None, pythonpath: Sequence[str] = (),
                 address: Optional[str] = None, listening: str = FORKER_LISTENING,
                 workers: Optional[int] = None, probe: Optional[bytes] = PROBE,
                 wait: bool = True, start_timeout: float = START_TIMEOUT,
                 preexec: Optional[Callable[[], None]] = None,
                 pass_fds: Sequence[int] = ()) -> None:
        self.argv = list(argv)
        self.address = address
        self.listening = listening
        self.workers = workers
        self.probe = probe
        self.start_timeout = start_timeout
        self._lines: Dict[str, List[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._stopped = False
        self.proc = subprocess.Popen(self.argv, cwd=cwd, env=environment(env, pythonpath),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=preexec, pass_fds=tuple(pass_fds))
        self.pid = self.proc.pid
        try:
            self._pidfd: Optional[int] = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None
        self._readers = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                         for stream, name in ((self.proc.stdout, "stdout"),
                                              (self.proc.stderr, "stderr"))]
        for reader in self._readers:
            reader.start()
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise

    # -- output

    def _read(self, stream, name: str) -> None:
        for raw in stream:
            with self._changed:
                self._lines[name].append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()

    def _text(self, stream: str) -> str:
        with self._changed:
            return "\n".join(self._lines[stream])

    @property
    def stdout(self) -> str:
        return self._text("stdout")

    @property
    def stderr(self) -> str:
        return self._text("stderr")

    def wait_for(self, pattern: str, timeout: float = 10.0, stream: str = "stderr") -> re.Match:
        """The first match of pattern in all the stream said so far (a pattern
        may span lines), once it is there; an AssertionError when the server
        exits or `timeout` passes first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = regex.search("\n".join(self._lines[stream]))
                if match:
                    return match
                if self.exited():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{pattern!r} not seen in the {stream} of "
                                         f"{self.argv}:\n{self._tail(stream)}")
                self._changed.wait(min(left, 0.1))  # woken by each line; 0.1 s to see an exit
        for reader in self._readers:  # the rest of what it wrote before it exited
            reader.join(5)
        match = regex.search(self._text(stream))
        if match:
            return match
        raise AssertionError(f"{self.argv} exited ({self.exit_status()}) before {pattern!r} "
                             f"in its {stream}:\n{self._tail('stderr')}")

    def _tail(self, stream: str) -> str:
        return self._text(stream)[-5000:]

    # -- readiness

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Until the address is known, every worker runs its loop and the probe
        is answered (module docstring)."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        if self.address is None:
            self.address = self.wait_for(self.listening, max(0.0, deadline - time.monotonic())
                                         ).group(1)
        if self.workers is not None:
            self._poll(self._workers_in_their_loop, deadline,
                       f"{self.workers} workers in their loop")
        if self.probe is not None:
            self._poll(self._answers_the_probe, deadline, "an answer to the probe")

    def _poll(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while not ready():
            if self.exited():
                raise AssertionError(f"{self.argv} exited ({self.exit_status()}) before "
                                     f"{what}:\n{self._tail('stderr')}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} from {self.argv}:\n{self._tail('stderr')}")
            time.sleep(0.02)

    def _workers_in_their_loop(self) -> bool:
        pids = self.worker_pids()
        return len(pids) == self.workers and all(has_epoll(pid) for pid in pids)

    def _answers_the_probe(self) -> bool:
        assert self.address is not None and self.probe is not None
        try:
            with connect(self.address, timeout=5) as sock:
                sock.sendall(self.probe)
                data = b""
                while b"\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
        except OSError:
            return False
        return data.startswith(b"HTTP/1.")

    @property
    def port(self) -> Optional[int]:
        """The TCP port of address (None for a unix socket or before it is known)."""
        if self.address is None or self.address.startswith("unix:"):
            return None
        return int(self.address.rpartition(":")[2])

    @property
    def addresses(self) -> List[str]:
        """Every address its log says it listens on, in order."""
        return re.findall(self.listening, self.stderr)

    def worker_pids(self) -> List[int]:
        """The master's children, from /proc (sorted)."""
        return children(self.pid)

    # -- the end

    def exited(self) -> bool:
        """Whether the master exited (it is not reaped: see stop())."""
        if self.proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def exit_status(self) -> Optional[int]:
        """As Popen's returncode (minus the signal that killed it), without
        reaping; None while it runs."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.proc.wait()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.exited():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._pidfd is not None:
                select.select([self._pidfd], [], [], left)  # readable once it exited
            else:
                time.sleep(min(left, 0.02))
        return True

    def wait(self, timeout: float = 10.0) -> int:
        """The master's exit status once it exited by itself; an AssertionError
        if it still runs after `timeout`."""
        if not self._wait_exit(timeout):
            raise AssertionError(f"{self.argv} still running after {timeout} s:\n"
                                 f"{self._tail('stderr')}")
        status = self.exit_status()
        assert status is not None
        return status

    def signal(self, signum: int) -> None:
        """Sends signum to the master (not to its workers)."""
        if not self.exited():
            os.kill(self.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """TERM to the master, up to `timeout` for it to exit, then SIGKILL to
        the whole process group; reaps the master, returns its exit status."""
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        if not self.exited():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._wait_exit(timeout)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the workers too, whatever happened
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ForkerProcess(ServerProcess):
    """`python -m forker --bind BIND --workers WORKERS *options APP`, or
    `python -c CODE` (CODE calls forker.serve or Forker itself, and says its
    address and workers: pass `address=` when the log will not tell, and
    `workers=` to wait for them).

    bind: an address or a list of them (None: the options, a config file or
    the environment give it; --bind in the options then). The address waited
    for is the first bind when its port or path is known, else the first one
    the log names. workers: passed with --workers and waited for (None:
    neither; --workers in the options then). app: a module:name of tests/apps
    or of any installed package (None: the built-in greeting). The rest as
    ServerProcess."""

    def __init__(self, *options: str, app: Optional[str] = None, workers: Optional[int] = 1,
                 bind: Union[str, Sequence[str], None] = "127.0.0.1:0",
                 code: Optional[str] = None, **kwargs) -> None:
        if code is not None:
            if app is not None or options:
                raise ValueError("code= runs python -c CODE: no options, no app")
            super().__init__([sys.executable, "-c", code], workers=workers, **kwargs)
            return
        binds = [bind] if isinstance(bind, str) else list(bind or [])
        for flag, given in (("--bind", binds), ("--workers", workers is not None),
                            ("-b", binds), ("-w", workers is not None)):
            if given and any(o == flag or o.startswith(flag + "=") for o in options):
                raise ValueError(f"{flag} in the options: pass bind= or workers= instead")
        argv = [sys.executable, "-m", "forker"]
        for address in binds:
            argv += ["--bind", address]
        if workers is not None:
            argv += ["--workers", str(workers)]
        argv += list(options)
        if app is not None:
            argv.append(app)
        if binds and "address" not in kwargs:
            kwargs["address"] = known_address(binds[0])
        super().__init__(argv, workers=workers, **kwargs)


def known_address(bind: str) -> Optional[str]:
    """The address a client reaches a bind address at, when it says its port
    or path: "unix:/p", "127.0.0.1:8080" (":8080" too); None for port 0 and
    inherited descriptors."""
    bind = re.sub(r"^https?://", "", bind)
    if bind.startswith("unix:"):
        return bind
    match = re.fullmatch(r"(\[[^\]]*\]|[^:/\[\]]*):(\d+)", bind)
    if not match or int(match.group(2)) == 0:
        return None
    return f"{match.group(1) or '127.0.0.1'}:{match.group(2)}"


# -- /proc --------------------------------------------------------------------------------------

def children(pid: int) -> List[int]:
    """The children of a process, from /proc (sorted; empty once it is gone)."""
    pids: List[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return sorted(pids)


def has_epoll(pid: int) -> bool:
    """Whether a process holds an epoll descriptor (a worker in its loop)."""
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


def raise_nofile(wanted: int) -> int:
    """Raises this process's descriptor limit towards wanted (capped by the hard
    limit); returns the soft limit now in force. Servers started afterwards
    inherit it."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# -- clients ----------------------------------------------------------------------------------

Address = Union[int, str]  # a port on 127.0.0.1, or an address as forker logs it


def connect(where: Address, timeout: float = TIMEOUT, rcvbuf: int = 0) -> socket.socket:
    """A connection to a port on 127.0.0.1 or to an address as forker logs it
    ("127.0.0.1:8080", "[::1]:8080", "unix:/path"). rcvbuf: a small receive
    buffer, set before connecting, for a client that reads slowly."""
    if isinstance(where, int):
        family, target = socket.AF_INET, ("127.0.0.1", where)
    elif where.startswith("unix:"):
        family, target = socket.AF_UNIX, where[len("unix:"):]
    else:
        host, _, port = where.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        target = (host, int(port))
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    return sock


def self_signed(folder: str) -> Tuple[str, str]:
    """A certificate for localhost and 127.0.0.1 and its key, made in folder
    by the openssl command: (certfile, keyfile)."""
    import shutil
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command makes the certificate"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   cwd=folder, check=True, capture_output=True)
    return os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")


def host_of(where: Address) -> str:
    """The Host field http.client would send to where."""
    if isinstance(where, int):
        return f"127.0.0.1:{where}"
    return "localhost" if where.startswith("unix:") else where


def reset(sock: socket.socket) -> None:
    """Closes with an RST (SO_LINGER 0), as a crashing client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until_close(sock: socket.socket, timeout: float = TIMEOUT) -> Tuple[bytes, bool]:
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


def exchange(where: Address, data: bytes, timeout: float = TIMEOUT) -> bytes:
    """Sends data on a new connection, returns all that comes back until the
    server closes it, which it must do within timeout, with a FIN: a reset
    there (ConnectionResetError) is a server that closed without draining
    what the client sent (a lingering close, SECURITY.md)."""
    with connect(where, timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        chunks = []
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"the server kept the connection open after "
                                     f"{b''.join(chunks)[:200]!r}") from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def request(where: Address, method: str = "GET", target: str = "/",
            body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
            timeout: float = TIMEOUT) -> Response:
    """One request on a new connection, as http.client sends it (a Host field
    unless headers give one, a Content-Length with a body or for POST, PUT and
    PATCH); its response, read by its framing; then the client closes."""
    given = {name.lower() for name in headers or {}}
    fields: List[Tuple[str, str]] = [] if "host" in given else [("Host", host_of(where))]
    if (body is not None or method in ("POST", "PUT", "PATCH")) and \
            not given & {"content-length", "transfer-encoding"}:
        fields.append(("Content-Length", str(len(body or b""))))
    fields += list((headers or {}).items())
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    with connect(where, timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + (body or b""))
        return Reader(sock).response(head_only=method == "HEAD")


def get(where: Address, target: str = "/", timeout: float = TIMEOUT) -> Response:
    """One GET asking Connection: close, on a new connection: the server
    closes its side once it answered."""
    with connect(where, timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return Reader(sock).response()


# -- responses ------------------------------------------------------------------------------------

class MalformedResponse(ValueError):
    """What the server sent is no HTTP/1.1 response (RFC 9112)."""


class ClosedEarly(EOFError, ConnectionResetError):
    """The server closed the connection before the response was whole: an
    EOFError, and an OSError as http.client's RemoteDisconnected is."""


class Fields:
    """Header or trailer fields in the order sent, repeated names kept; names
    compare without regard to case."""

    def __init__(self, pairs: Iterable[Tuple[str, str]] = ()) -> None:
        self.pairs: List[Tuple[str, str]] = list(pairs)

    def getall(self, name: str) -> List[str]:
        """Every value of the field, in order ([] when absent)."""
        name = name.lower()
        return [value for key, value in self.pairs if key.lower() == name]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of a field sent once, default when absent; a field sent
        more than once is an AssertionError: ask getall()."""
        values = self.getall(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.getall(name))

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fields) and other.pairs == self.pairs

    def __repr__(self) -> str:
        return f"Fields({self.pairs!r})"


class Response:
    """A response read whole: status (int), fields (Fields), body (bytes,
    chunked coding removed); also version ("HTTP/1.1"), reason, status_line
    and trailers (Fields). Unpacks and indexes as (status, fields, body)."""

    def __init__(self, version: str, status: int, reason: str, fields: Fields,
                 body: bytes = b"", trailers: Optional[Fields] = None) -> None:
        self.version, self.status, self.reason = version, status, reason
        self.fields, self.body = fields, body
        self.trailers = trailers if trailers is not None else Fields()

    @property
    def status_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def _tuple(self) -> Tuple[int, Fields, bytes]:
        return self.status, self.fields, self.body

    def __iter__(self) -> Iterator[object]:
        return iter(self._tuple())

    def __getitem__(self, index: Union[int, slice]) -> object:
        return self._tuple()[index]

    def __len__(self) -> int:
        return 3

    def __repr__(self) -> str:
        return f"Response({self.status_line!r}, {self.fields!r}, {self.body[:200]!r})"


STATUS_LINE = re.compile(rb"HTTP/(\d\.\d) (\d\d\d) ([\t\x20-\x7e\x80-\xff]*)")
FIELD_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")
CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(;[\t\x20-\x7e\x80-\xff]*)?")


def _field_lines(lines: Iterable[bytes], where: bytes) -> Fields:
    pairs = []
    for line in lines:
        match = FIELD_LINE.fullmatch(line)
        if not match:
            raise MalformedResponse(f"malformed field line {line!r} in {where[:300]!r}")
        pairs.append((match.group(1).decode("ascii"), match.group(2).decode("latin-1")))
    return Fields(pairs)


class Reader:
    """Reads responses one after another from a socket (or from bytes given
    whole, sock None), each whole by its framing. What follows a response
    stays in .buf for the next one."""

    def __init__(self, sock: Optional[socket.socket], data: bytes = b"") -> None:
        self.sock = sock
        self.buf = data

    def _fill(self) -> bool:
        if self.sock is None:
            return False
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ClosedEarly(f"closed inside a line: {self.buf[:200]!r}")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ClosedEarly(f"closed inside a body: {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, head_only: bool = False) -> Response:
        """The next response; head_only: one to a HEAD request, which has no
        body whatever its fields say."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ClosedEarly(f"closed before a complete head: {self.buf[:200]!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        match = STATUS_LINE.fullmatch(lines[0])
        if not match:
            raise MalformedResponse(f"malformed status line {lines[0][:200]!r}")
        version, status = "HTTP/" + match.group(1).decode(), int(match.group(2))
        reason = match.group(3).decode("latin-1")
        fields = _field_lines(lines[1:], head)
        response = Response(version, status, reason, fields)
        codings, lengths = fields.getall("transfer-encoding"), fields.getall("content-length")
        if codings and lengths:
            raise MalformedResponse(f"both Transfer-Encoding and Content-Length: {head!r}")
        if codings and [c.strip().lower() for c in codings] != ["chunked"]:
            raise MalformedResponse(f"Transfer-Encoding {codings}: {head!r}")
        if lengths and (len(lengths) > 1 or not lengths[0].isdigit()):
            raise MalformedResponse(f"Content-Length {lengths}: {head!r}")
        if head_only or status < 200 or status in (204, 304):
            return response
        if codings:
            response.body, response.trailers = self._chunked()
        elif lengths:
            response.body = self._exactly(int(lengths[0]))
        else:  # close-delimited
            while self._fill():
                pass
            response.body, self.buf = self.buf, b""
        return response

    def _chunked(self) -> Tuple[bytes, Fields]:
        parts = []
        while True:
            line = self._line()
            match = CHUNK_SIZE.fullmatch(line)
            if not match:
                raise MalformedResponse(f"malformed chunk-size line {line[:200]!r}")
            size = int(match.group(1), 16)
            if size == 0:
                trailers = []
                while True:
                    line = self._line()
                    if not line:
                        return b"".join(parts), _field_lines(trailers, b"trailers")
                    trailers.append(line)
            parts.append(self._exactly(size))
            if self._exactly(2) != b"\r\n":
                raise MalformedResponse("chunk data not followed by CRLF")


def parse_response(data: bytes, head_only: bool = False) -> Response:
    """The one response data holds, exactly: a byte after its end is a
    MalformedResponse, and a response cut short ClosedEarly."""
    reader = Reader(None, data)
    response = reader.response(head_only)
    if reader.buf:
        raise MalformedResponse(f"{len(reader.buf)} bytes after the response: "
                                f"{reader.buf[:200]!r}")
    return response
