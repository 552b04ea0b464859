"""gunicorn's statsd metrics, with its names, sent by the master.

    client = Statsd(config, capacity)     # the master, when statsd_host is set
    client.spawning(slot)                 # before a worker of that slot is forked
    area = client.in_worker(slot)         # in that worker: for its Engine (stats=area)
    client.worker_exited(slot)            # the master, before the slot is freed
    client.flush(slots, workers, listeners)  # each second (client.due() says when)

gunicorn sends a datagram per event from the process where it happens: three
per request from its worker. forker's workers count instead, in memory they
share with the master (forker/shm.py StatsTable, laid out in
csrc/fk_metrics.h): the C loop counts each request by status code and writes
its duration to a ring at the end of the request, without the GIL and
without a system call; with statsd off the loop is given no area and does
nothing of it. Each second the master sends what the counts gained as
counters (gunicorn.requests:57|c), each duration the rings still hold as a
timer (sampled with |@rate when a worker ended more requests in the second
than its ring holds), the workers gauge, and the records its own and the
workers' error logs counted at warning and above (gunicorn.log.*).

Datagrams hold several metrics, one a line, as statsd, DogStatsD, Telegraf
and statsd_exporter read them; the socket is non-blocking, and a statsd that
is down or slow loses metrics (said once in the error log), never a turn of
the master.
"""

from __future__ import annotations

import logging
import re
import socket
import time

from .errors import ConfigError
from .shm import LOG_LEVELS, STATS_FIRST_CODE, STATS_LOGS, StatsTable

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, MutableSequence, Optional, Tuple

log = logging.getLogger("forker.master")

DEFAULT_PORT = 8125  # gunicorn's, and statsd's
FLUSH_SECONDS = 1.0
UDP_DATAGRAM = 1432  # statsd's advice for a LAN's MTU; a unix socket takes more at once
UNIX_DATAGRAM = 8192
EXPECTED = "expected HOST:PORT, HOST (port 8125), [IPV6]:PORT or unix:PATH"


def parse_address(value: Any, option: str = "statsd_host") -> Tuple[str, Any]:
    """gunicorn's statsd_host: ("unix", path) for unix:PATH or unix://PATH, else
    ("udp", (host, port)); raises ConfigError naming option. As gunicorn,
    unix:NUMBER is the host named unix at that port, tcp:// is taken off, and
    an empty host is this one."""
    text = value.strip() if isinstance(value, str) else None
    if not text:
        raise ConfigError(f"{option}: {EXPECTED}, got {value!r}")
    number = re.fullmatch(r"unix:(\d+)", text)
    if number:
        return "udp", ("unix", _port(option, number.group(1), value))
    if text.startswith("unix:"):
        path = re.split(r"unix:(?://)?", text, maxsplit=1)[-1]
        if not path or "\0" in path:
            raise ConfigError(f"{option}: {EXPECTED}, got {value!r}")
        return "unix", path
    if text.startswith("tcp://"):
        text = text[len("tcp://"):]
    if "://" in text:  # fd:// and the like: nothing to send datagrams to
        raise ConfigError(f"{option}: {EXPECTED}, got {value!r}")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"{option}: {EXPECTED}, got {value!r}")
        port = rest[1:] if rest else str(DEFAULT_PORT)
        try:
            import ipaddress

            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{option}: {host!r} is not an IPv6 address, in {value!r}") from None
    else:
        host, colon, port = text.partition(":")
        if not colon:
            port = str(DEFAULT_PORT)
        if not re.fullmatch(r"[A-Za-z0-9._-]*", host):
            raise ConfigError(f"{option}: {EXPECTED}, got {value!r}")
    return "udp", (host.lower() or "127.0.0.1", _port(option, port, value))


def _port(option: str, text: str, value: Any) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{option}: {text!r} is not a port number (1 to 65535), in {value!r}")
    return int(text)


def prefix_of(text: str) -> str:
    """gunicorn's statsd_prefix rule: a dot ends a prefix that lacks one, and
    trailing dots count as one. (gunicorn's expression leaves a one-character
    prefix without its dot, "a" making "agunicorn.requests"; forker adds it.)"""
    text = text.rstrip(".")
    return text + "." if text else ""


# -- the error log's records, counted where they are logged ------------------------------

class _LogCounter(logging.Handler):
    """On the `forker` logger: counts its records by gunicorn's names, into a
    worker's statsd area (LOGS words) or the master's own list. gunicorn counts
    a call of its logger's exception() apart from error(); logging cannot tell
    them apart, so an error with a traceback counts as an exception."""

    def __init__(self, counts: MutableSequence[int]) -> None:
        super().__init__(logging.WARNING)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.CRITICAL:
            index = 0
        elif record.levelno >= logging.ERROR:
            index = 3 if record.exc_info else 1
        else:
            index = 2
        self.counts[index] += 1  # under the handler's lock: threads count one at a time


def count_logs(counts: Any) -> None:
    """From now on, this process's error log records at warning and above are
    counted into counts: a worker's statsd area (the view of StatsTable), or
    a list of LOG_LEVELS. Replaces the counter this process inherited. Records
    below --log-level are never made, so not counted (gunicorn counts them)."""
    if isinstance(counts, memoryview):
        counts = counts[STATS_LOGS:STATS_LOGS + 8 * len(LOG_LEVELS)].cast("Q")
    logger = logging.getLogger("forker")
    for handler in list(logger.handlers):
        if isinstance(handler, _LogCounter):
            logger.removeHandler(handler)
    logger.addHandler(_LogCounter(counts))


# -- the master's client -----------------------------------------------------------------

class _Seen:
    """What the master has sent of one worker's area."""

    __slots__ = ("timed", "logs", "codes")

    def __init__(self) -> None:
        self.timed = 0
        self.logs: Tuple[int, ...] = (0,) * len(LOG_LEVELS)
        self.codes: Tuple[int, ...] = ()


class Statsd:
    """The master's statsd client and the workers' areas it reads."""

    def __init__(self, config: Any, capacity: int) -> None:
        self.table = StatsTable(capacity)
        self.sock: Optional[socket.socket] = None
        self.address: Any = None
        self.kind = ""
        self.prefix = ""
        self.tags = ""
        self.backlog = False
        self.seen: Dict[int, _Seen] = {}
        self.pending_requests = 0
        self.pending_codes: Dict[int, int] = {}
        self.pending_timers: List[str] = []
        self.master_logs = [0] * len(LOG_LEVELS)
        self.sent_logs = [0] * len(LOG_LEVELS)
        self.workers_sent: Optional[int] = None
        self.next_flush = time.monotonic() + FLUSH_SECONDS
        self.failing = False
        self.configure(config)
        count_logs(self.master_logs)

    def configure(self, config: Any) -> None:
        """(Re)opens the socket for config's statsd_host (at start and on HUP);
        one that cannot be resolved is said, and nothing is sent until a HUP."""
        self.prefix = prefix_of(config.statsd_prefix)
        self.tags = config.dogstatsd_tags
        self.backlog = bool(config.enable_backlog_metric)
        target = parse_address(config.statsd_host)
        if target == (self.kind, self.address) and self.sock is not None:
            return
        self._close_socket()
        self.kind, self.address = target
        if self.kind == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        else:
            host, port = self.address
            # IPv4 unless the host is an IPv6 address, as gunicorn; looked up once,
            # here: a lookup in the master's loop could hold it for seconds
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                _, _, _, _, sockaddr = socket.getaddrinfo(host, port, family,
                                                          socket.SOCK_DGRAM)[0]
            except OSError as exc:
                log.error("statsd_host %s: cannot resolve %s: %s; no statsd metrics are "
                          "sent until a reload (HUP)", config.statsd_host, host, exc)
                return
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.address = sockaddr
        self.sock.setblocking(False)
        self.failing = False
        log.info("statsd: sending gunicorn's metrics to %s%s every %g s", config.statsd_host,
                 f" (prefix {self.prefix!r})" if self.prefix else "", FLUSH_SECONDS)

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self._close_socket()
        logger = logging.getLogger("forker")
        for handler in list(logger.handlers):
            if isinstance(handler, _LogCounter) and handler.counts is self.master_logs:
                logger.removeHandler(handler)
        self.table.close()

    # -- the workers' areas -----------------------------------------------------------

    def spawning(self, slot: int) -> None:
        """A worker of slot is about to be forked: its area starts at zero."""
        self.table.reset(slot)
        self.seen[slot] = _Seen()

    def in_worker(self, slot: int) -> memoryview:
        """In the worker of slot, after fork: its area, for its Engine, into which
        its error log's records are counted from now on (the master's socket is
        the master's)."""
        self._close_socket()
        area = self.table.view(slot)
        count_logs(area)
        return area

    def worker_exited(self, slot: int) -> None:
        """The worker of slot is gone: what it counted since the last flush."""
        if slot in self.seen:
            self._collect(slot)
            del self.seen[slot]

    def _collect(self, slot: int) -> None:
        # The words are read one after the other while the worker serves on: a
        # request that ends meanwhile may be in the codes and not yet in timed;
        # the next read counts it, so the totals stay exact.
        seen = self.seen[slot]
        timed, durations = self.table.durations(slot, seen.timed)
        counts = self.table.counts(slot)
        ended = timed - seen.timed
        self.pending_requests += ended
        if durations:
            # more requests than the ring held: the latest ones, each standing for
            # ended / len(durations) requests, as statsd reads a sample rate
            rate = "" if len(durations) == ended else f"|@{len(durations) / ended:.6g}"
            self.pending_timers.extend(f"gunicorn.request.duration:{us / 1000}|ms{rate}"
                                       for us in durations)
        old = seen.codes or (0,) * len(counts.codes)
        if counts.codes != old:
            for index, (now, before) in enumerate(zip(counts.codes, old)):
                if now != before:
                    code = STATS_FIRST_CODE + index
                    self.pending_codes[code] = self.pending_codes.get(code, 0) + now - before
        for index, (now, before) in enumerate(zip(counts.logs, seen.logs)):
            self.master_logs[index] += now - before  # sent with the master's own
        seen.timed, seen.codes, seen.logs = timed, counts.codes, counts.logs

    # -- sending ---------------------------------------------------------------------

    def due(self) -> float:
        """When flush() is next due (time.monotonic())."""
        return self.next_flush

    def flush(self, slots: Iterable[int], workers: int, listeners: Iterable[Any] = (),
              force: bool = False) -> None:
        """Every FLUSH_SECONDS (or now, with force): what the workers of slots
        counted, sent with the gauge of workers (the live ones not retiring)."""
        now = time.monotonic()
        if not force and now < self.next_flush:
            return
        self.next_flush = now + FLUSH_SECONDS
        for slot in slots:
            if slot in self.seen:
                self._collect(slot)
        lines = []
        if self.pending_requests:
            lines.append(f"gunicorn.requests:{self.pending_requests}|c|@1.0")
        lines += [f"gunicorn.request.status.{code}:{count}|c|@1.0"
                  for code, count in sorted(self.pending_codes.items())]
        for level, now_count, sent in zip(LOG_LEVELS, self.master_logs, self.sent_logs):
            if now_count != sent:
                lines.append(f"gunicorn.log.{level}:{now_count - sent}|c|@1.0")
        if self.backlog:
            lines.append(f"gunicorn.backlog:{_backlog(listeners)}|h")
        if lines or self.pending_timers or workers != self.workers_sent:
            lines.append(f"gunicorn.workers:{workers}|g")  # gunicorn: when it changes
            self.workers_sent = workers
        lines += self.pending_timers
        self.pending_requests = 0
        self.pending_codes.clear()
        self.pending_timers = []
        self.sent_logs = list(self.master_logs)
        if lines:
            self._send(lines)

    def _send(self, lines: List[str]) -> None:
        if self.sock is None:
            return
        tags = f"|#{self.tags}" if self.tags else ""
        most = UNIX_DATAGRAM if self.kind == "unix" else UDP_DATAGRAM
        datagrams: List[str] = []
        current: List[str] = []
        size = 0
        for line in lines:
            item = f"{self.prefix}{line}{tags}"
            if current and size + 1 + len(item) > most:
                datagrams.append("\n".join(current))
                current, size = [], 0
            current.append(item)
            size += len(item) + (1 if size else 0)
        if current:
            datagrams.append("\n".join(current))
        for datagram in datagrams:
            try:
                self.sock.sendto(datagram.encode("ascii"), self.address)
            except OSError as exc:  # down, full, or refused (ICMP): these are dropped
                if not self.failing:
                    self.failing = True
                    log.warning("statsd: cannot send to %s: %s; metrics are dropped until "
                                "it takes them again", self._where(), exc)
                return
        self.failing = False

    def _where(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.address}"
        return f"{self.address[0]}:{self.address[1]}"


def _backlog(listeners: Iterable[Any]) -> int:
    """Connections waiting in the TCP listeners' accept queues: Linux reports a
    listening socket's queue length as tcpi_unacked (gunicorn's gunicorn.backlog)."""
    import struct

    total = 0
    for sock in listeners:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        except OSError:
            continue
        total += struct.unpack_from("=8B24I", info)[12]  # tcpi_unacked
    return total
