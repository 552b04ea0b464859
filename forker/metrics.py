"""The workers' counters as Prometheus metrics, served by the master.

    server = MetricsServer.open(arbiter)  # the master, once its slots exist
    server.watch()                        # [(fd, poll events)] for the master's poll
    server.handle(ready)                  # answers whatever is ready; never blocks
    server.worker_exited(worker_id, counters)  # an exited worker's final counts
    render(totals, live)                  # the text exposition format, version 0.0.4
    main(["--pid", PIDFILE])              # `forker stats`: the same, as a table

Each worker's C loop counts in its slot of the memory it shares with the master
(forker/shm.py, csrc/fk_metrics.h). The master adds the slots up by worker id,
plus what the earlier workers of that id counted before they exited, so that a
counter of worker="3" only goes down when the master restarts.

The master answers on metrics_bind (off by default), and always on an abstract
unix socket named after its pid and start time, for `forker stats`. The
abstract name needs no file (nothing is left behind by a killed master) and
only the master's user or root may read it (SO_PEERCRED).

Served from the master's own loop, not a thread or a forked process: a thread
holding a lock when the master forks a worker could deadlock the child, and a
separate process would need the pid -> worker map that only the master holds
(a reload runs two workers of one id). The sockets are non-blocking and share
the master's poll with its signal pipe; each connection gets a bounded head and
a deadline, and each listening socket at most MAX_CLIENTS at once, so a slow or
hostile scraper costs the master a few microseconds per turn, never a blocked
supervision loop. When a listener's clients are all taken, the one that has
waited longest without a whole request gives way to the new one, and the
local stats socket has a budget of its own: idle connections to the metrics
port cannot lock out a scraper or `forker stats`.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time

from ._worker import standard_reason  # the engine's reason phrases (csrc/fk_write.c)
from .shm import HIST_BOUNDS_US, HIST_BUCKETS, SlotCounters

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_CLIENTS = 32  # per listening socket
MAX_HEAD = 8192
CLIENT_SECONDS = 5.0  # for the whole exchange
IDLE_SECONDS = 1.0  # for the first byte: a scraper sends its request at once
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_ZERO_HIST = (0,) * (HIST_BUCKETS + 1)
ZERO = SlotCounters(0, 0, 0, (0,) * 5, 0, 0, 0, _ZERO_HIST, _ZERO_HIST, 0, 0, 0)


def _pairwise(a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b))


def add(a: SlotCounters, b: SlotCounters) -> SlotCounters:
    return SlotCounters(
        a.requests + b.requests, a.bytes_in + b.bytes_in, a.bytes_out + b.bytes_out,
        _pairwise(a.responses, b.responses), a.connections_open + b.connections_open,
        a.connections_total + b.connections_total, a.parse_errors + b.parse_errors,
        _pairwise(a.handler, b.handler), _pairwise(a.queue, b.queue), a.evicted + b.evicted,
        a.refused + b.refused, a.shed + b.shed)


# -- rendering ------------------------------------------------------------------------

def _seconds(us: float) -> str:
    return repr(us / 1e6)


_BOUNDS = [_seconds(bound) for bound in HIST_BOUNDS_US] + ["+Inf"]

# name, type, help, value of one worker's counters
_SIMPLE: Tuple[Tuple[str, str, str, Callable[[SlotCounters], int]], ...] = (
    ("forker_requests_total", "counter", "Requests answered.", lambda c: c.requests),
    ("forker_bytes_received_total", "counter", "Bytes received from clients.",
     lambda c: c.bytes_in),
    ("forker_bytes_sent_total", "counter", "Bytes sent to clients (heads, bodies, files).",
     lambda c: c.bytes_out),
    ("forker_connections_open", "gauge", "Client connections open now.",
     lambda c: c.connections_open),
    ("forker_connections_total", "counter", "Client connections accepted.",
     lambda c: c.connections_total),
    ("forker_parse_errors_total", "counter",
     "Requests refused by the parser or a limit (answered 4xx, then closed).",
     lambda c: c.parse_errors),
    ("forker_connections_evicted_total", "counter",
     "Connections closed, having made least progress, to give their slot to a new one.",
     lambda c: c.evicted),
    ("forker_connections_refused_total", "counter",
     "Connections closed at accept: their client address held max_connections_per_address.",
     lambda c: c.refused),
    ("forker_connections_shed_total", "counter",
     "Connections closed to bring the output buffered for slow readers under "
     "max_output_buffer.", lambda c: c.shed),
)
_HISTOGRAMS: Tuple[Tuple[str, str, Callable[[SlotCounters], Tuple[int, ...]]], ...] = (
    ("forker_handler_seconds", "Time in the application handler.", lambda c: c.handler),
    ("forker_queue_seconds", ("Time from accept (or the request's arrival on a kept-alive "
                              "connection) to the handler call."), lambda c: c.queue),
)


def render(totals: Mapping[int, SlotCounters], live: int) -> str:
    """The Prometheus text format of the counters by worker id; live is the
    number of worker processes running."""
    workers = sorted(totals)
    out = ["# HELP forker_workers Worker processes running.", "# TYPE forker_workers gauge",
           f"forker_workers {live}"]
    for name, kind, text, value in _SIMPLE:
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        out += [f'{name}{{worker="{w}"}} {value(totals[w])}' for w in workers]
    out += ["# HELP forker_responses_total Responses by status class.",
            "# TYPE forker_responses_total counter"]
    for w in workers:
        out += [f'forker_responses_total{{worker="{w}",class="{cls}"}} {n}'
                for cls, n in zip(CLASSES, totals[w].responses)]
    for name, text, histogram in _HISTOGRAMS:
        out += [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
        for w in workers:
            hist = histogram(totals[w])
            count = 0
            for bound, n in zip(_BOUNDS, hist[:HIST_BUCKETS]):
                count += n
                out.append(f'{name}_bucket{{worker="{w}",le="{bound}"}} {count}')
            out += [f'{name}_sum{{worker="{w}"}} {_seconds(hist[HIST_BUCKETS])}',
                    f'{name}_count{{worker="{w}"}} {count}']
    return "\n".join(out) + "\n"


# -- serving --------------------------------------------------------------------------

def stats_address(pid: int) -> str:
    """The abstract unix socket of master pid (its start time tells a reused pid,
    or another pid namespace's master, apart)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "0"
    return f"\0forker-{pid}-{started}.metrics"


class _Client:
    __slots__ = ("born", "deadline", "head", "listener", "out", "sock")

    def __init__(self, sock: socket.socket, listener: int) -> None:
        self.sock = sock
        self.listener = listener
        self.head = b""
        self.out = b""
        self.born = time.monotonic()
        self.deadline = self.born + IDLE_SECONDS


class MetricsServer:
    """/metrics on the master's listening sockets, one short exchange per connection."""

    def __init__(self, arbiter: Any, listeners: List[socket.socket]) -> None:
        self.arbiter = arbiter  # reads .workers (pid -> Worker) and .slots
        self.listeners = {sock.fileno(): sock for sock in listeners}
        self.clients: Dict[int, _Client] = {}
        self.carried: Dict[int, SlotCounters] = {}  # by worker id, from exited workers

    @classmethod
    def open(cls, arbiter: Any, log: Any) -> "MetricsServer":
        """Listen on config.metrics_bind and on the stats socket. A failure is
        logged, not raised: metrics are not worth refusing to serve for.
        SO_REUSEPORT lets the new master of an upgrade (USR2) bind the address
        its predecessor still holds; the predecessor's socket goes with it."""
        from .sockets import create_listener, parse_address

        listeners = []
        bind = arbiter.config.metrics_bind
        if bind:
            try:
                listeners.append(create_listener(parse_address(bind, option="metrics_bind"), 64,
                                                 reuse_port=True))
                log.info("metrics at /metrics on %s", _describe(listeners[-1]))
            except OSError as exc:
                log.error("metrics_bind: %s; serving without /metrics", exc)
        stats = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            stats.bind(stats_address(os.getpid()))
            stats.listen(16)
            stats.setblocking(False)
            listeners.append(stats)
        except OSError as exc:
            stats.close()
            log.warning("forker stats will not reach this master: %s", exc)
        return cls(arbiter, listeners)

    def watch(self) -> List[Tuple[int, int]]:
        """The descriptors to poll, with the events wanted."""
        wanted = [(fd, select.POLLIN) for fd in self.listeners if self._room(fd)]
        wanted += [(fd, select.POLLOUT if c.out else select.POLLIN)
                   for fd, c in self.clients.items()]
        return wanted

    def handle(self, ready: Iterable[Tuple[int, int]]) -> None:
        """Accept, read and write what poll reported ready; drop late clients."""
        for fd, _ in ready:
            if fd in self.listeners:
                self._accept(self.listeners[fd])
            elif fd in self.clients:
                client = self.clients[fd]
                if client.out:
                    self._write(client)
                else:
                    self._read(client)
        now = time.monotonic()
        for client in [c for c in self.clients.values() if now > c.deadline]:
            self._drop(client)

    def worker_exited(self, worker_id: int, counters: SlotCounters) -> None:
        """Keep an exited worker's counts under its id (its open connections are gone)."""
        counters = counters._replace(connections_open=0)
        self.carried[worker_id] = add(self.carried.get(worker_id, ZERO), counters)

    def totals(self) -> Dict[int, SlotCounters]:
        slots = self.arbiter.slots
        totals = dict(self.carried)
        for worker in list(self.arbiter.workers.values()):
            totals[worker.id] = add(totals.get(worker.id, ZERO), slots.counters(worker.slot))
        return totals

    def text(self) -> str:
        return render(self.totals(), len(self.arbiter.workers))

    def close(self) -> None:
        """Close every socket (the master's when it stops; a worker's copies after fork)."""
        for sock in list(self.listeners.values()) + [c.sock for c in self.clients.values()]:
            sock.close()
        self.listeners, self.clients = {}, {}

    def _room(self, listener: int) -> bool:
        """Whether a new client of listener can be taken: a free place, or one
        whose client is still reading (it gives way)."""
        mine = [c for c in self.clients.values() if c.listener == listener]
        return len(mine) < MAX_CLIENTS or any(not c.out for c in mine)

    def _make_room(self, listener: int) -> None:
        """At MAX_CLIENTS, drops listener's oldest client still reading (_room
        said there is one)."""
        mine = [c for c in self.clients.values() if c.listener == listener]
        if len(mine) >= MAX_CLIENTS:
            self._drop(min((c for c in mine if not c.out), key=lambda c: c.born))

    def _accept(self, listener: socket.socket) -> None:
        fd = listener.fileno()
        while self._room(fd):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ECONNABORTED, EMFILE: the next turn tries again
            sock.setblocking(False)
            if sock.family == socket.AF_UNIX and not _trusted_peer(sock):
                sock.close()
                continue
            self._make_room(fd)
            self.clients[sock.fileno()] = _Client(sock, fd)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.head += data
        client.deadline = client.born + CLIENT_SECONDS
        if b"\r\n\r\n" in client.head or b"\n\n" in client.head:
            client.out = self._answer(client.head)
            self._write(client)
        elif len(client.head) > MAX_HEAD:
            client.out = self._response(431, "Request Header Fields Too Large\n")
            self._write(client)

    def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return self._response(400, "Bad Request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/metrics":
            return self._response(404, "Not Found: the metrics are at /metrics\n")
        if method not in (b"GET", b"HEAD"):
            return self._response(405, "Method Not Allowed\n", ("Allow", "GET, HEAD"))
        return self._response(200, self.text(), ("Content-Type", CONTENT_TYPE), head_only=method == b"HEAD")

    def _response(self, status: int, body: str, *headers: Tuple[str, str],
                  head_only: bool = False) -> bytes:
        return _response(status, body, *headers, head_only=head_only,
                         server=getattr(self.arbiter.config, "server_header", None))

    def _write(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        client.out = client.out[sent:]
        if not client.out:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        client.sock.close()


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _http_date(now: Optional[float] = None) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7), whatever the locale."""
    t = time.gmtime(now)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def _response(status: int, body: str, *headers: Tuple[str, str], head_only: bool = False,
              server: Optional[str] = None) -> bytes:
    """A whole response with the fields every forker response carries: Date,
    Server (server_header; none when empty) and its length."""
    data = body.encode("utf-8")
    fields = [("Date", _http_date())] + ([("Server", server)] if server else [])
    fields += [("Content-Type", "text/plain; charset=utf-8")] if not headers else []
    fields += [*headers, ("Content-Length", str(len(data))), ("Connection", "close")]
    head = (f"HTTP/1.1 {status} {standard_reason(status)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in fields))
    return (head + "\r\n").encode("latin-1") + (b"" if head_only else data)


def _trusted_peer(sock: socket.socket) -> bool:
    """The stats socket answers the master's own user and root only."""
    try:
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
    except OSError:
        return False
    return uid in (0, os.geteuid())


def _describe(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


# -- forker stats ---------------------------------------------------------------------

def parse(text: str) -> Dict[str, Dict[str, float]]:
    """Samples of the text format by worker: {"0": {"forker_requests_total": 12.0,
    'forker_responses_total{class="2xx"}': 10.0, ...}}; unlabelled ones under ""."""
    workers: Dict[str, Dict[str, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        worker, rest = "", []
        for label in labels.rstrip("}").split(",") if labels else []:
            key, _, quoted = label.partition("=")
            if key == "worker":
                worker = quoted.strip('"')
            else:
                rest.append(label)
        key = name + ("{" + ",".join(rest) + "}" if rest else "")
        workers.setdefault(worker, {})[key] = float(value)
    return workers


def _quantile(samples: Mapping[str, float], name: str, q: float) -> Optional[float]:
    """The bucket bound (seconds) below which a fraction q of the observations fall."""
    count = samples.get(f"{name}_count", 0.0)
    if not count:
        return None
    for bound in _BOUNDS:
        if samples.get(f'{name}_bucket{{le="{bound}"}}', 0.0) >= q * count:
            return float("inf") if bound == "+Inf" else float(bound)
    return float("inf")


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds == float("inf"):
        return f">{_seconds(HIST_BOUNDS_US[-1])}s"
    if seconds < 1.0:
        return f"{seconds * 1000:.3g}ms"
    return f"{seconds:.3g}s"


def _size(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if n < 1000 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000.0
    return str(n)


_RESPONSES = 'forker_responses_total{class="%s"}'
COLUMNS = ("WORKER", "REQUESTS", "2XX", "3XX", "4XX", "5XX", "OPEN", "CONNS", "IN", "OUT",
           "ERRORS", "HANDLER AVG/P99", "QUEUE AVG/P99")


def _row(worker: str, s: Mapping[str, float]) -> List[str]:
    def times(name: str) -> str:
        count = s.get(f"{name}_count", 0.0)
        average = s.get(f"{name}_sum", 0.0) / count if count else None
        return f"{_duration(average)}/{_duration(_quantile(s, name, 0.99))}"

    return [worker, f"{s.get('forker_requests_total', 0):.0f}",
            *(f"{s.get(_RESPONSES % cls, 0):.0f}" for cls in CLASSES[1:]),
            f"{s.get('forker_connections_open', 0):.0f}",
            f"{s.get('forker_connections_total', 0):.0f}",
            _size(s.get("forker_bytes_received_total", 0)), _size(s.get("forker_bytes_sent_total", 0)),
            f"{s.get('forker_parse_errors_total', 0):.0f}",
            times("forker_handler_seconds"), times("forker_queue_seconds")]


def table(text: str) -> str:
    """The metrics text as a table: one row per worker, then their total."""
    by_worker = parse(text)
    general = by_worker.pop("", {})
    ids = sorted(by_worker, key=lambda w: (len(w), w))
    total: Dict[str, float] = {}
    for samples in by_worker.values():
        for key, value in samples.items():
            total[key] = total.get(key, 0.0) + value
    rows = [list(COLUMNS)] + [_row(w, by_worker[w]) for w in ids] + [_row("total", total)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    live = general.get("forker_workers")
    header = f"{live:.0f} workers running" if live is not None else ""
    return "\n".join(([header] if header else []) + lines) + "\n"


def fetch_stats(pid: int, timeout: float = 5.0) -> str:
    """GET /metrics from master pid's stats socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(stats_address(pid))
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return _body(b"".join(chunks))


def fetch_url(url: str, timeout: float = 5.0) -> str:
    from urllib.request import urlopen

    with urlopen(url, timeout=timeout) as response:  # the operator's own URL
        return str(response.read().decode("utf-8"))


def _body(raw: bytes) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        raise OSError(f"unexpected answer: {head[:80]!r}")
    return body.decode("utf-8")


def _read_pid(value: str) -> int:
    if value.isdigit() and not os.path.exists(value):
        return int(value)
    try:
        with open(value) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        raise SystemExit(f"forker stats: no pidfile {value} (was the server started with "
                         f"--pid {value}?)") from None
    except ValueError:
        raise SystemExit(f"forker stats: {value} holds no process id") from None


def main(argv: Optional[List[str]] = None) -> int:
    """forker stats --pid PIDFILE | --url URL [--raw]"""
    import argparse

    parser = argparse.ArgumentParser(
        prog="forker stats",
        description="Print a running server's per-worker counters as a table.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pid", metavar="PIDFILE",
                       help="the master's pidfile (its --pid option) or process id; read through "
                            "the master's local stats socket, as its user or root")
    where.add_argument("--url", help="a metrics_bind address instead: http://HOST:PORT/metrics")
    parser.add_argument("--raw", action="store_true",
                        help="print the Prometheus text as served instead of the table")
    args = parser.parse_args(argv)
    pid = 0 if args.url else _read_pid(args.pid)
    try:
        text = fetch_url(args.url) if args.url else fetch_stats(pid)
    except (OSError, ValueError) as exc:
        source = args.url or f"master pid {pid}"
        sys.stderr.write(f"forker stats: cannot read the metrics of {source}: {exc}\n")
        return 1
    sys.stdout.write(text if args.raw else table(text))
    return 0
