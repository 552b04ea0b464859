"""Metrics: the loop's per-worker counters in the Prometheus text format,
served by the master on metrics_bind and printed by `forker stats`; the queue
time in the access log."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List

import pytest

from forker import metrics
from forker.shm import HIST_BUCKETS, SlotCounters, SlotTable
from harness import ForkerProcess, connect, get, read_until_close, run_cli

APP = "hardening_app:app"
SAMPLE = re.compile(r'^(forker_[a-z_]+)(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? '
                    r'(\d+(\.\d+)?([eE]-?\d+)?)$')


def counters(requests: int = 0, handler: List[int] = (), **fields: object) -> SlotCounters:
    hist = list(handler) + [0] * (HIST_BUCKETS + 1 - len(handler))
    base = metrics.ZERO._replace(requests=requests, handler=tuple(hist), **fields)
    return base


def families(text: str) -> Dict[str, str]:
    """name -> TYPE, checking that every sample follows the HELP and TYPE of its family."""
    types: Dict[str, str] = {}
    helped = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in helped and name not in types, line
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match.group(1)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, f"{name} before its TYPE"
    return types


def samples(text: str) -> Dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


# -- rendering ------------------------------------------------------------------------


def test_slot_layout_matches_the_loop():
    """forker/shm.py reads what csrc/fk_metrics.h lays out (FK_SLOT_FIELDS, as
    the compiled engine exports it)."""
    from forker import shm
    from forker._worker import slot_layout

    layout = slot_layout()
    fields = layout["fields"]
    words = {name.upper(): offset // 8 for name, (offset, _) in fields.items()}
    words["WORDS"] = layout["size"] // 8
    assert layout["size"] == shm.SLOT_SIZE
    assert (fields["heartbeat"][0], fields["requests"][0], fields["busy_since"][0]) == (
        shm.HEARTBEAT, shm.REQUESTS, shm.BUSY_SINCE)
    assert fields["text"] == (shm.REQUEST_TEXT, shm.REQUEST_TEXT_SIZE) \
        and layout["text_size"] == shm.REQUEST_TEXT_SIZE
    assert fields["bytes_in"][0] == shm.METRICS
    assert layout["hist_buckets"] == shm.HIST_BUCKETS
    assert fields["handler"][1] == fields["queue"][1] == (shm.HIST_BUCKETS + 1) * 8
    assert layout["hist_bounds_us"] == shm.HIST_BOUNDS_US
    # the fields tile the slot's counters without overlap, in order
    spans = sorted(fields.values())
    assert all(a + n <= b for (a, n), (b, _) in zip(spans, spans[1:]))
    assert spans[-1][0] + spans[-1][1] <= layout["size"]
    table = SlotTable(1)
    slot = table.allocate()
    view = table.view(slot)
    for word in range(words["WORDS"]):
        view[word * 8:word * 8 + 8] = word.to_bytes(8, sys.byteorder)
    c = table.counters(slot)
    assert (c.requests, c.bytes_in, c.bytes_out, c.responses[0], c.connections_open,
            c.connections_total, c.parse_errors, c.handler[0], c.queue[0], c.evicted,
            c.refused) == (
        words["REQUESTS"], words["BYTES_IN"], words["BYTES_OUT"], words["STATUS"],
        words["CONN_OPEN"], words["CONN_TOTAL"], words["PARSE_ERRORS"], words["HANDLER"],
        words["QUEUE"], words["EVICTED"], words["ADDR_REFUSED"])
    assert len(c.handler) == len(c.queue) == HIST_BUCKETS + 1
    del view


def test_render_names_types_and_histograms():
    totals = {
        0: counters(requests=7, bytes_in=700, bytes_out=1400, responses=(0, 6, 0, 1, 0),
                    connections_open=2, connections_total=3, parse_errors=1,
                    handler=[1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 12_345_678]),
        1: counters(),
    }
    text = metrics.render(totals, live=2)
    assert families(text) == {
        "forker_workers": "gauge",
        "forker_requests_total": "counter",
        "forker_bytes_received_total": "counter",
        "forker_bytes_sent_total": "counter",
        "forker_connections_open": "gauge",
        "forker_connections_total": "counter",
        "forker_parse_errors_total": "counter",
        "forker_connections_evicted_total": "counter",
        "forker_connections_refused_total": "counter",
        "forker_connections_shed_total": "counter",
        "forker_responses_total": "counter",
        "forker_handler_seconds": "histogram",
        "forker_queue_seconds": "histogram",
    }
    s = samples(text)
    assert s["forker_workers"] == 2
    assert s['forker_requests_total{worker="0"}'] == 7
    assert s['forker_bytes_sent_total{worker="0"}'] == 1400
    assert s['forker_responses_total{worker="0",class="2xx"}'] == 6
    assert s['forker_responses_total{worker="0",class="4xx"}'] == 1
    assert s['forker_connections_open{worker="0"}'] == 2
    assert s['forker_parse_errors_total{worker="1"}'] == 0
    # cumulative buckets, +Inf equal to the count, the sum in seconds
    assert s['forker_handler_seconds_bucket{worker="0",le="0.0001"}'] == 1
    assert s['forker_handler_seconds_bucket{worker="0",le="0.00025"}'] == 1
    assert s['forker_handler_seconds_bucket{worker="0",le="0.0005"}'] == 3
    assert s['forker_handler_seconds_bucket{worker="0",le="2.5"}'] == 3
    assert s['forker_handler_seconds_bucket{worker="0",le="+Inf"}'] == 7
    assert s['forker_handler_seconds_count{worker="0"}'] == 7
    assert s['forker_handler_seconds_sum{worker="0"}'] == pytest.approx(12.345678)
    assert s['forker_queue_seconds_count{worker="1"}'] == 0


def test_table_has_a_row_per_worker_and_a_total():
    totals = {0: counters(requests=5, responses=(0, 5, 0, 0, 0), handler=[0, 0, 0, 5, 0, 0, 0, 0,
                                                                            0, 0, 0, 0, 0, 0, 0, 4000]),
              1: counters(requests=3, responses=(0, 2, 0, 0, 1))}
    lines = metrics.table(metrics.render(totals, live=2)).splitlines()
    assert lines[0] == "2 workers running"
    assert lines[1].split()[:6] == ["WORKER", "REQUESTS", "2XX", "3XX", "4XX", "5XX"]
    assert lines[2].split()[:6] == ["0", "5", "5", "0", "0", "0"]
    assert "0.8ms/1ms" in lines[2]  # average 4000 us / 5, p99 at the 1 ms bound
    assert lines[3].split()[:6] == ["1", "3", "2", "0", "0", "1"]
    assert lines[4].split()[:6] == ["total", "8", "7", "0", "0", "1"]


def test_counts_of_exited_workers_stay_with_their_worker_id():
    class Worker:
        def __init__(self, worker_id: int, slot: int) -> None:
            self.id, self.slot = worker_id, slot

    class Arbiter:
        slots = SlotTable(4)
        workers: Dict[int, Worker] = {}

    arbiter = Arbiter()
    server = metrics.MetricsServer(arbiter, [])
    slot = arbiter.slots.allocate()
    view = arbiter.slots.view(slot)
    view[8:16] = (5).to_bytes(8, sys.byteorder)  # requests
    view[15 * 8:16 * 8] = (2).to_bytes(8, sys.byteorder)  # connections open
    arbiter.workers[100] = Worker(0, slot)
    assert server.totals()[0].requests == 5
    # the worker exits; its successor under the same id starts from zero
    server.worker_exited(0, arbiter.slots.counters(slot))
    del arbiter.workers[100]
    del view
    arbiter.slots.free(slot)
    arbiter.workers[101] = Worker(0, arbiter.slots.allocate())
    total = server.totals()[0]
    assert total.requests == 5 and total.connections_open == 0


# -- served by the master -------------------------------------------------------------


def metrics_port(server: ForkerProcess) -> int:
    match = re.search(r"metrics at /metrics on 127\.0\.0\.1:(\d+)", server.stderr)
    assert match, server.stderr
    return int(match.group(1))


def scrape(port: int) -> Dict[str, float]:
    status, headers, body = get(port, "/metrics")
    assert status == 200
    assert headers["content-type"] == metrics.CONTENT_TYPE
    families(body.decode())
    return samples(body.decode())


def total(s: Dict[str, float], name: str) -> float:
    return sum(v for k, v in s.items() if k == name or k.startswith(name + "{"))


def test_master_serves_metrics_without_threads():
    with ForkerProcess("--metrics-bind", "127.0.0.1:0", workers=2, app=APP) as server:
        port = metrics_port(server)
        before = scrape(port)
        for _ in range(10):
            assert get(server.port, "/pid")[0] == 200
        for _ in range(3):
            assert get(server.port, "/status?404")[0] == 404
        after = scrape(port)
        assert total(after, "forker_requests_total") - total(before, "forker_requests_total") == 13
        assert (total(after, 'forker_responses_total') - total(before, "forker_responses_total")
                == 13)
        grown_4xx = sum(v - before.get(k, 0) for k, v in after.items() if 'class="4xx"' in k)
        assert grown_4xx == 3
        assert (total(after, "forker_connections_total")
                - total(before, "forker_connections_total")) >= 13
        for worker in ("0", "1"):
            count = after[f'forker_handler_seconds_count{{worker="{worker}"}}']
            assert count == after[f'forker_requests_total{{worker="{worker}"}}']
            assert count == after[f'forker_handler_seconds_bucket{{worker="{worker}",le="+Inf"}}']
        assert after["forker_workers"] == 2
        assert os.listdir(f"/proc/{server.proc.pid}/task") == [str(server.proc.pid)]
        assert get(port, "/other")[0] == 404
        with connect(port) as sock:
            sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
            assert read_until_close(sock)[0].startswith(b"HTTP/1.1 405 ")
        # a scraper that connects and says nothing holds up neither others nor the master
        with connect(port) as idle:
            scrape(port)
            server.signal(signal.SIGTTIN)
            deadline = time.monotonic() + 10  # a bound on a hang
            while len(server.worker_pids()) != 3:
                assert time.monotonic() < deadline, server.stderr
                time.sleep(0.05)
            idle.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert read_until_close(idle)[0].startswith(b"HTTP/1.1 200 ")


def test_counters_survive_a_killed_worker():
    with ForkerProcess("--metrics-bind", "127.0.0.1:0", workers=1, app=APP) as server:
        port = metrics_port(server)
        for _ in range(5):
            get(server.port, "/pid")
        served = scrape(port)['forker_requests_total{worker="0"}']
        (victim,) = server.worker_pids()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.worker_pids() in ([], [victim]):
            assert time.monotonic() < deadline, server.stderr
            time.sleep(0.05)
        assert scrape(port)['forker_requests_total{worker="0"}'] >= served


def run_stats(*args: str) -> subprocess.CompletedProcess:
    return run_cli("stats", *args, timeout=30)


def test_stats_prints_a_table_by_pidfile(tmp_path):
    pidfile = tmp_path / "forker.pid"
    with ForkerProcess("--pid", str(pidfile), workers=2, app=APP) as server:
        for _ in range(4):
            get(server.port, "/pid")
        result = run_stats("--pid", str(pidfile))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "2 workers running"
        assert lines[1].split()[0] == "WORKER"
        assert [line.split()[0] for line in lines[2:]] == ["0", "1", "total"]
        assert int(lines[-1].split()[1]) >= 4
        raw = run_stats("--pid", str(server.proc.pid), "--raw")
        assert raw.returncode == 0 and "forker_requests_total{" in raw.stdout
    gone = run_stats("--pid", str(pidfile))
    assert gone.returncode != 0 and "no pidfile" in gone.stderr


def test_stats_by_url():
    with ForkerProcess("--metrics-bind", "127.0.0.1:0", app=APP) as server:
        result = run_stats("--url", f"http://127.0.0.1:{metrics_port(server)}/metrics")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].split()[0] == "total"


def test_stats_socket_is_not_left_behind():
    with ForkerProcess(app=APP) as server:
        address = metrics.stats_address(server.proc.pid)
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(address)
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(address)


# -- queue time in the access log -----------------------------------------------------


@pytest.mark.parametrize("fmt", ["%(U)s %(Q)s %(D)s", "json"])
def test_access_log_carries_the_queue_time(tmp_path, fmt):
    path = tmp_path / "access.log"
    with ForkerProcess("--access-log", str(path), "--access-log-format", fmt, app=APP) as server:
        get(server.port, "/pid")
    lines = [line for line in path.read_text().splitlines() if "/pid" in line]
    assert lines
    for line in lines:
        if fmt == "json":
            queue_time = json.loads(line)["queue_time"]
            assert isinstance(queue_time, float) and 0 <= queue_time < 5
        else:
            path_, queued, duration = line.split()
            assert path_ == "/pid" and 0 <= int(queued) < 5_000_000 and int(duration) >= 0


def test_idle_clients_cannot_lock_out_the_metrics_and_stats(tmp_path):
    """Forty clients that open the metrics port and send one byte of a request,
    more than the master serves at once: a scraper and `forker stats` are still
    answered, the one by taking the place of the oldest idle client, the other
    through the stats socket's own budget. (Before, eight such clients held the
    one shared budget for their whole 5 s deadline, the next eight after them.)"""
    pidfile = tmp_path / "forker.pid"
    with ForkerProcess("--metrics-bind", "127.0.0.1:0", "--pid", str(pidfile), app=APP) as server:
        port = metrics_port(server)
        idle = []
        try:
            for _ in range(40):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"G")
                idle.append(sock)
            # 3 s: well below the idle clients' 5 s; an answer takes milliseconds
            status, _, body = get(port, "/metrics", timeout=3)
            assert status == 200 and b"forker_requests_total" in body
            result = run_stats("--pid", str(pidfile))
            assert result.returncode == 0, result.stderr
        finally:
            for sock in idle:
                sock.close()


def test_output_held_for_slow_readers_is_bounded():
    """Twenty clients ask for 8 MiB each and read nothing: the worker holds what
    their sockets did not take only up to --max-output-buffer (4 MiB here),
    closing the connections that hold most, and goes on serving."""
    with ForkerProcess("--max-output-buffer", str(4 << 20), "--write-timeout", "600",
                       "--metrics-bind", "127.0.0.1:0", app=APP) as server:
        port = metrics_port(server)
        readers = []
        try:
            for _ in range(20):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(b"GET /big?8 HTTP/1.1\r\nHost: t\r\n\r\n")
                readers.append(sock)
            deadline = time.monotonic() + 30  # the sweep runs once a second
            while total(scrape(port), "forker_connections_shed_total") < 10:
                assert time.monotonic() < deadline, "the output held was never bounded"
                time.sleep(0.1)
            assert get(server.port, "/pid")[0] == 200
        finally:
            for sock in readers:
                sock.close()
