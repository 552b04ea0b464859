"""gunicorn's statsd metrics from a real forker: a UDP (or unix datagram)
socket here receives what the master sends while the server answers requests,
and is read until the expected totals have arrived. Names, types, prefix and
tags are gunicorn's (gunicorn/instrument/statsd.py); forker sends counters
summed over each second and several metrics per datagram."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections import defaultdict
from typing import Dict, List, Tuple

import pytest

from harness import ForkerProcess, request, run_cli
from forker import _worker, shm
from forker.config import Config
from forker.statsd import parse_address, prefix_of

DEADLINE = 30.0
LINE = re.compile(r"^(?P<name>[^:|]+):(?P<value>[^|]+)\|(?P<type>c|ms|g|h)"
                  r"(?:\|@(?P<rate>[0-9.e-]+))?(?:\|#(?P<tags>.*))?$")


class Received:
    """Every metric line that reached a datagram socket, parsed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines: List[str] = []
        self.counters: Dict[str, float] = defaultdict(float)
        self.timers: List[Tuple[float, float]] = []  # (milliseconds, sample rate)
        self.gauges: Dict[str, List[float]] = defaultdict(list)
        self.types: Dict[str, str] = {}

    def read_until(self, done, what: str) -> None:
        """Takes datagrams until done(self) holds; a deadline bounds a hang."""
        deadline = time.monotonic() + DEADLINE
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not received; got:\n" + "\n".join(self.lines))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            for line in data.decode("ascii").split("\n"):
                self.add(line)

    def add(self, line: str) -> None:
        self.lines.append(line)
        match = LINE.match(line)
        assert match, f"not a statsd line: {line!r}"
        name, value, kind = match["name"], float(match["value"]), match["type"]
        assert self.types.setdefault(name, kind) == kind, line
        if kind == "c":
            assert match["rate"] == "1.0", line  # gunicorn's |@1.0 on every counter
            self.counters[name] += value
        elif kind == "ms":
            self.timers.append((value, float(match["rate"] or 1.0)))
        else:
            self.gauges[name].append(value)


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    yield sock
    sock.close()


def requests_total(got: Received, prefix: str = "") -> float:
    return got.counters.get(f"{prefix}gunicorn.requests", 0)


def test_a_servers_metrics_reach_statsd_with_gunicorns_names(udp):
    port = udp.getsockname()[1]
    with ForkerProcess("--statsd-host", f"127.0.0.1:{port}", "--statsd-prefix", "myapp",
                       "--dogstatsd-tags", "env:test,team:web", app="wsgiapps:misc_app",
                       workers=2) as server:
        for _ in range(5):
            assert request(server.port, "GET", "/head").status == 200
        assert request(server.port, "GET", "/raise").status == 500
        got = Received(udp)
        p = "myapp."
        got.read_until(lambda g: g.counters[f"{p}gunicorn.request.status.200"] >= 5
                       and g.counters[f"{p}gunicorn.request.status.500"] >= 1
                       and g.counters[f"{p}gunicorn.log.exception"] >= 1
                       and len(g.timers) >= requests_total(g, p) >= 6,
                       "the requests' counters, timers and the traceback's log counter")
        # the readiness probes of the harness (OPTIONS *) are requests too: 404 here
        statuses = {name: n for name, n in got.counters.items() if ".request.status." in name}
        assert set(statuses) <= {f"{p}gunicorn.request.status.{code}" for code in (200, 404, 500)}
        assert (statuses[f"{p}gunicorn.request.status.200"],
                statuses[f"{p}gunicorn.request.status.500"]) == (5, 1)
        assert sum(statuses.values()) == requests_total(got, p)  # each request, once
        assert len(got.timers) == requests_total(got, p)  # a timer per request, unsampled
        assert all(ms >= 0 and rate == 1.0 for ms, rate in got.timers)
        assert got.gauges[f"{p}gunicorn.workers"][-1] == 2
        assert all(line.startswith(p) and line.endswith("|#env:test,team:web")
                   for line in got.lines)

        # the master's own records: a worker killed is a warning
        os.kill(server.worker_pids()[0], signal.SIGKILL)
        got.read_until(lambda g: g.counters[f"{p}gunicorn.log.warning"] >= 1,
                       "gunicorn.log.warning of the master's 'worker died' line")
        server.wait_for(r"\[WARNING\] worker \d+ pid \d+ died")


def test_a_unix_datagram_socket(tmp_path):
    path = str(tmp_path / "statsd.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    try:
        with ForkerProcess("--statsd-host", f"unix:{path}", "--enable-backlog-metric") as server:
            assert request(server.port, "GET", "/").status == 200  # the built-in greeting
            got = Received(sock)
            got.read_until(lambda g: g.counters["gunicorn.request.status.200"] >= 1
                           and g.gauges["gunicorn.workers"] and g.gauges["gunicorn.backlog"],
                           "the greeting's counters, the workers and the backlog")
            assert got.types["gunicorn.backlog"] == "h"
            assert got.timers  # answered by the loop itself: duration 0
    finally:
        sock.close()


def test_a_down_statsd_costs_one_warning_and_no_request(tmp_path):
    """Nothing listens at the unix path: the server serves on, and says so once."""
    with ForkerProcess("--statsd-host", f"unix:{tmp_path / 'nobody.sock'}") as server:
        for _ in range(3):
            assert request(server.port, "GET", "/").status == 200
        server.wait_for(r"statsd: cannot send to unix:.*nobody\.sock")
        assert request(server.port, "GET", "/").status == 200
    assert server.stderr.count("statsd: cannot send") == 1


@pytest.mark.parametrize("argv, fragment", [
    (["--statsd-host", "localhost:notaport"],
     "argument --statsd-host: 'notaport' is not a port number (1 to 65535), in "
     "'localhost:notaport'"),
    (["--statsd-host", "localhost:0"], "argument --statsd-host: '0' is not a port number"),
    (["--statsd-host", "[::1"], "argument --statsd-host: expected HOST:PORT, HOST (port "
                                "8125), [IPV6]:PORT or unix:PATH, got '[::1'"),
    (["--statsd-host", "unix:"], "argument --statsd-host: expected HOST:PORT"),
    (["--statsd-host", "fd://3"], "argument --statsd-host: expected HOST:PORT"),
    (["--statsd-host", "a b:1"], "argument --statsd-host: expected HOST:PORT"),
    (["--statsd-prefix", "my app"], "argument --statsd-prefix: ' ' cannot be sent in a "
                                    "statsd line, got 'my app'"),
    (["--statsd-prefix", "a:b"], "argument --statsd-prefix: ':' cannot be sent"),
    (["--dogstatsd-tags", "env:x|y"], "argument --dogstatsd-tags: '|' cannot be sent"),
])
def test_a_bad_value_is_exit_2_naming_the_option(tmp_path, argv, fragment):
    out = run_cli(*argv, cwd=str(tmp_path))
    assert out.returncode == 2
    last = out.stderr.splitlines()[-1]
    assert last.startswith("forker: error: ") and fragment in last, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["localhost:8125", "localhost", "10.0.0.1:9125",
                                   "[::1]:8125", "[::1]", "unix:/run/statsd.sock",
                                   "unix:///run/statsd.sock", "unix:8125",
                                   "tcp://host:1"])
def test_addresses_as_gunicorn_reads_them(value):
    from gunicorn.config import validate_statsd_address

    theirs = validate_statsd_address(value)
    kind, ours = parse_address(value)
    assert kind == ("unix" if isinstance(theirs, str) else "udp")
    assert ours == (theirs if kind == "unix" else tuple(theirs))


@pytest.mark.parametrize("prefix", ["", "app", "app.", "app...", "my.app", "my.app."])
def test_the_prefix_takes_gunicorns_trailing_dot(prefix):
    expected = re.sub(r"^(.+[^.]+)\.*$", "\\g<1>.", prefix)  # gunicorn's Statsd.__init__
    assert prefix_of(prefix) == expected


def test_gunicorn_settings_set_the_options():
    from forker import compat

    compat.take_warnings()
    config = Config(statsd_host="localhost:9125", statsd_prefix="p", dogstatsd_tags="a:b",
                    enable_backlog_metric=True)
    assert (config.statsd_host, config.statsd_prefix, config.dogstatsd_tags,
            config.enable_backlog_metric) == ("localhost:9125", "p", "a:b", True)
    for name in ("statsd_host", "statsd_prefix", "dogstatsd_tags", "enable_backlog_metric"):
        assert compat.SETTINGS[name].to == name
    assert compat.take_warnings() == []


def test_the_area_layout_matches_the_loop():
    """forker/shm.py reads the statsd area as csrc/fk_metrics.h lays it out."""
    stats = _worker.slot_layout()["stats"]
    fields = stats["fields"]
    assert stats["size"] == shm.STATS_SIZE
    assert fields["timed"] == (shm.STATS_TIMED, 8)
    assert fields["logs"] == (shm.STATS_LOGS, 8 * len(shm.LOG_LEVELS))
    assert fields["codes"] == (shm.STATS_CODES, 8 * shm.STATS_CODES_COUNT)
    assert fields["durations"] == (shm.STATS_DURATIONS, 8 * shm.STATS_RING)
    assert (stats["ring"], stats["first_code"]) == (shm.STATS_RING, shm.STATS_FIRST_CODE)
    spans = sorted(fields.values())
    assert all(a + n <= b for (a, n), (b, _) in zip(spans, spans[1:]))
    assert spans[-1][0] + spans[-1][1] <= stats["size"]


def test_the_loop_gets_the_area_only_when_given():
    engine = _worker.Engine(lambda request: b"", Config(), [], stats=bytearray(shm.STATS_SIZE))
    assert engine.loop_config()["stats"] != 0
    with pytest.raises(ValueError, match="stats must hold at least 8192 bytes"):
        _worker.Engine(lambda request: b"", Config(), [], stats=bytearray(512))


def test_a_lapped_ring_gives_the_latest_durations():
    """More requests than the ring holds between two reads: the latest
    STATS_RING, from which the rate follows."""
    table = shm.StatsTable(1)
    table.reset(0)
    words = table.view(0).cast("Q")
    ended = shm.STATS_RING + 100
    for n in range(ended):
        words[shm.STATS_DURATIONS // 8 + n % shm.STATS_RING] = n
    words[shm.STATS_TIMED // 8] = ended
    timed, durations = table.durations(0, since=0)
    # the oldest entry left is the one the loop writes over next: it may be at it
    assert timed == ended and durations == list(range(101, ended))
    timed, durations = table.durations(0, since=ended - 3)
    assert durations == [ended - 3, ended - 2, ended - 1]
    del words
    table.close()
