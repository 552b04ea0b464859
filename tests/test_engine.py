"""The worker engine through real sockets: keep-alive, pipelining, bodies,
streaming, HTTP/1.0, HEAD, 100-continue, handler errors, process count, stop."""

from __future__ import annotations

import ast
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness import ForkerProcess, Reader, exchange, parse_response, request

APP = "engine_app:app"


FILE_SIZE = 3 * 1024 * 1024 + 7


@pytest.fixture(scope="module")
def served_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "payload.bin"
    path.write_bytes(os.urandom(FILE_SIZE))
    return path


@pytest.fixture(scope="module")
def server(served_file):
    with ForkerProcess("--max-connections", "4000", app=APP, workers=2,
                       env={"ENGINE_APP_FILE": str(served_file)}) as srv:
        yield srv


def http_connection(server, timeout: float = 10.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)


def test_greeting(server):
    status, headers, body = request(server.port)
    assert (status, body) == (200, b"greeting!!!")
    assert headers["Content-Length"] == "11"
    assert headers["Server"] == "forker"
    assert headers["Date"].endswith("GMT")


def test_thousand_requests_on_one_keep_alive_connection(server):
    conn = http_connection(server)
    sockets = set()
    for _ in range(1000):
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.read() == b"greeting!!!"
        assert not response.will_close
        sockets.add(id(conn.sock))
    conn.close()
    assert len(sockets) == 1


def test_hundred_pipelined_requests_in_one_send(server):
    one = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(one * 100)
        reader = Reader(sock)
        for _ in range(100):
            response = reader.response()
            assert response.status_line == "HTTP/1.1 200 OK" and response.body == b"greeting!!!"
        assert not reader.buf


def test_pipelined_requests_with_bodies_answered_in_order(server):
    requests = b"".join(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(p), p)
        for p in (b"one", b"", b"three33")
    ) + b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfour\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(requests)
        reader = Reader(sock)
        bodies = [reader.response().body for _ in range(4)]
    assert bodies == [b"one", b"", b"three33", b"four"]


def test_ten_megabyte_body_by_content_length(server):
    payload = os.urandom(10 * 1024 * 1024)
    status, headers, body = request(server.port, "POST", "/echo", body=payload)
    assert status == 200 and body == payload


def test_ten_megabyte_body_chunked(server):
    payload = os.urandom(10 * 1024 * 1024)
    pieces = [payload[i:i + 65536 + 17] for i in range(0, len(payload), 65536 + 17)]
    conn = http_connection(server, timeout=30)
    conn.request("POST", "/echo", body=iter(pieces), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 200 and response.read() == payload
    conn.close()


def test_ten_megabyte_response_to_a_slow_reader(server):
    size = 10 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.5)  # the server fills the socket buffers and must wait for us
        data = bytearray()
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + size:
            chunk = sock.recv(16384)
            assert chunk
            data += chunk
            if len(data) < size // 4 and len(data) % (1 << 20) < 16384:
                time.sleep(0.05)  # slow for the first megabytes
        status, headers, body = parse_response(bytes(data))
        assert headers["content-length"] == str(size)
        assert body == b"b" * size
    # the worker kept serving everyone else meanwhile
    assert request(server.port)[2] == b"greeting!!!"


def test_thousand_concurrent_connections(server):
    socks = []
    try:
        for _ in range(1000):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            socks.append(sock)
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        for sock in socks:
            assert Reader(sock).response().body == b"greeting!!!"
    finally:
        for sock in socks:
            sock.close()


def test_a_burst_of_connections_spreads_over_the_workers(server):
    """Connections opened at once (a proxy's keep-alive pool, a load tool's
    start) are shared by the workers, not nearly all taken by the first one
    woken: each worker that accepts goes to the back of the wake-up queue."""
    count, ratios = 60, []
    for _ in range(5):
        socks = []
        try:
            for _ in range(count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", server.port))
                socks.append(sock)
                time.sleep(0.001)  # this client shares the workers' CPUs: let them run
            time.sleep(0.05)
            pids: dict = {}
            for sock in socks:
                sock.settimeout(10)
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
                pid = Reader(sock).response().body
                pids[pid] = pids.get(pid, 0) + 1
        finally:
            for sock in socks:
                sock.close()
        ratios.append(max(pids.values()) / (count / 2))
        time.sleep(0.1)
    assert sorted(ratios)[len(ratios) // 2] <= 1.4, ratios  # median max/mean


def test_http10_closes_unless_keep_alive_asked(server):
    response = parse_response(exchange(server.port, b"GET / HTTP/1.0\r\n\r\n"))
    assert response.status_line == "HTTP/1.1 200 OK" and response.body == b"greeting!!!"
    assert response.fields["connection"] == "close"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reader = Reader(sock)
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = reader.response()
            assert headers["connection"] == "keep-alive" and body == b"greeting!!!"


def test_http10_streamed_body_is_close_delimited(server):
    status, headers, body = parse_response(exchange(server.port, b"GET /stream HTTP/1.0\r\n\r\n"))
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert body == b"part0;part1;part2;part3;part4;"


def test_higher_minor_version_is_served_as_http11(server):
    """RFC 9110 §2.5: HTTP/1.2 is processed as the highest minor version
    implemented, so it keeps the connection alive as HTTP/1.1 does."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reader = Reader(sock)
        for version in (b"1.2", b"1.9"):
            sock.sendall(b"GET / HTTP/" + version + b"\r\nHost: t\r\n\r\n")
            response = reader.response()
            assert response.status_line == "HTTP/1.1 200 OK" and response.body == b"greeting!!!"
            assert response.fields.get("connection") != "close"


def test_connection_close_is_honoured(server):
    data = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    status, headers, body = parse_response(data)
    assert headers["connection"] == "close" and body == b"greeting!!!"


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",  # 400 from the loop
])
def test_last_response_and_fin_share_a_segment(server, request_bytes):
    """A response followed by a close leaves with the FIN in its segment: the
    moment the client has read it, the end of the stream is there too, and the
    client received no segment for the FIN alone (TCP_INFO's segs_in: SYN-ACK,
    the ACK of the request, response and FIN)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert sock.recv(65536, socket.MSG_DONTWAIT) == b""
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        segs_in = int.from_bytes(info[140:144], sys.byteorder)  # struct tcp_info
        assert segs_in <= 3

def test_head_gets_headers_without_body(server):
    data = exchange(server.port, b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    response = parse_response(data, head_only=True)  # and nothing after the head
    assert response.status_line == "HTTP/1.1 200 OK"
    assert response.fields["content-length"] == "11" and response.body == b""
    data = exchange(server.port, b"HEAD /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert parse_response(data, head_only=True).body == b""


def test_expect_100_continue(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        assert Reader(sock).response().body == b"hello"


def test_expect_100_continue_with_curl(server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    out = subprocess.run(
        ["curl", "-s", "-v", "--data-binary", "@-", "-H", "Expect: 100-continue",
         f"http://127.0.0.1:{server.port}/echo"],
        input=b"x" * 2048, capture_output=True, timeout=20)
    assert out.stdout == b"x" * 2048
    assert b"100 Continue" in out.stderr


def test_handler_exception_gives_500_then_worker_serves_on(server):
    pids = set()
    for _ in range(6):
        status, headers, body = request(server.port, "GET", "/boom")
        assert status == 500
        status, _, body = request(server.port, "GET", "/pid")
        assert status == 200
        pids.add(int(body))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
        response = Reader(sock).response()
        assert (response.version, response.status) == ("HTTP/1.1", 500)
        assert response.fields["connection"] == "close"
    assert "handler failure on purpose" in server.stderr


def test_malformed_request_gets_400_and_close(server):
    data = exchange(server.port,
                    b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert data.count(b"HTTP/1.1") == 1  # nothing after the error was answered
    response = parse_response(data)
    assert response.status_line == "HTTP/1.1 400 Bad Request"
    assert response.fields["connection"] == "close"
    assert request(server.port)[2] == b"greeting!!!"


def test_request_attributes_and_headers(server):
    raw = (b"GET /info?a=1&b=%20 HTTP/1.1\r\nHost: example.test:8080\r\nX-Repeat: 1\r\n"
           b"x-one: only\r\nX-Repeat: 2\r\nConnection: close\r\n\r\n")
    info = ast.literal_eval(parse_response(exchange(server.port, raw)).body.decode())
    assert info["method"] == "GET" and info["path"] == "/info"
    assert info["query"] == "a=1&b=%20" and info["target"] == "/info?a=1&b=%20"
    assert info["version"] == "HTTP/1.1" and info["host"] == "example.test:8080"
    assert info["remote_addr"] == "127.0.0.1"
    assert info["x_repeat"] == ["1", "2"] and info["x_one"] == "only"
    assert [name for name, _ in info["pairs"]] == ["Host", "X-Repeat", "x-one", "X-Repeat",
                                                   "Connection"]


def test_absolute_form_target(server):
    raw = b"GET http://other.test/info?q HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n"
    info = ast.literal_eval(parse_response(exchange(server.port, raw)).body.decode())
    assert info["path"] == "/info" and info["query"] == "q" and info["host"] == "other.test"


def test_str_response_is_utf8_and_custom_status(server):
    assert request(server.port, "GET", "/text")[2] == "héllo".encode()
    status, headers, body = request(server.port, "GET", "/status")
    assert status == 201 and headers["X-Custom"] == "yes" and body == b"created"
    status, headers, body = request(server.port, "GET", "/empty")
    assert status == 204 and body == b"" and "Content-Length" not in headers


def test_repeated_response_fields_are_each_sent_in_order(server):
    status, fields, body = request(server.port, "GET", "/cookies")
    assert (status, body) == (200, b"two")
    assert [(n, v) for n, v in fields if n in ("Set-Cookie", "X-Between")] == [
        ("Set-Cookie", "a=1; Path=/"), ("X-Between", "x"), ("Set-Cookie", "b=2")]


def test_streamed_response_is_chunked(server):
    data = exchange(server.port, b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    status, headers, body = parse_response(data)  # the chunks decoded
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"part0;part1;part2;part3;part4;"


def test_open_file_is_sent_whole_and_from_its_offset(server, served_file):
    payload = served_file.read_bytes()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reader = Reader(sock)
        for offset in (0, 1000, FILE_SIZE):
            sock.sendall(b"GET /file?%d HTTP/1.1\r\nHost: t\r\n\r\n" % offset)
            status, headers, body = reader.response()
            assert headers["content-length"] == str(FILE_SIZE - offset)
            assert body == payload[offset:]
        # HEAD states the length without sending the file; the connection goes on
        sock.sendall(b"HEAD /file HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        head = reader.response(head_only=True)
        assert ("Content-Length", str(FILE_SIZE)) in head.fields.pairs
        assert reader.response().body == b"greeting!!!"


def test_header_injection_from_handler_is_a_500(server):
    data = exchange(server.port, b"GET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500")
    assert b"Injected" not in data


def test_fields_of_a_response_answered_again_follow_its_changes():
    """The engine joins a list of the same (name, value) tuples once and
    reuses the bytes: a Response changed in place, a new list of the same
    tuples, a value that is not a str, a Date, a Connection: close and a
    refused field after remembered ones all still answer what they say. One
    worker: every connection meets the same memo."""
    with ForkerProcess(app=APP, workers=1) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)

        def get(target):
            conn.request("GET", target)
            response = conn.getresponse()
            return response, response.read()

        for _ in range(3):
            response, body = get("/memo")
            assert (response.status, body, response.getheader("X-Memo")) == (200, b"memo", "one")
            assert response.getheader("Content-Length") == "4"
        response, body = get("/memo/set?two")
        assert response.getheader("X-Memo") == "two"
        response, body = get("/memo")
        assert response.getheader("X-Memo") == "two" and response.getheader("X-Added") is None
        response, body = get("/memo/append?yes")
        assert (response.getheader("X-Memo"), response.getheader("X-Added")) == ("two", "yes")
        response, body = get("/memo/same-tuples")
        assert (response.getheader("X-Memo"), response.getheader("X-Added"), body) == (
            "two", "yes", b"memo")
        counts = [int(get("/memo/counted")[0].getheader("X-Count")) for _ in range(3)]
        assert counts[1] == counts[0] + 1 and counts[2] == counts[1] + 1
        for _ in range(2):
            response, body = get("/memo/dated")
            dates = [v for n, v in response.getheaders() if n.lower() == "date"]
            assert (dates, body) == (["Thu, 01 Jan 1970 00:00:00 GMT"], b"dated")
        response, body = get("/memo")
        assert (response.getheader("X-Memo"), response.getheader("X-Added")) == ("two", "yes")
        conn.close()
        data = exchange(srv.port, b"GET /memo/bad HTTP/1.1\r\nHost: t\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 500") and b"Injected" not in data
        for _ in range(2):
            data = exchange(srv.port, b"GET /memo/close HTTP/1.1\r\nHost: t\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in data


@pytest.mark.parametrize("target", [b"/not-iterable", b"/an-app"])
def test_an_answer_that_is_not_iterable_is_a_500(server, target):
    """Refused before the head goes out (the client got an empty reply, the
    connection closed after the head)."""
    data = exchange(server.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    % target)
    assert data.startswith(b"HTTP/1.1 500 ")


def test_worker_count_equals_workers():
    with ForkerProcess(app=APP, workers=3) as srv:
        children = srv.worker_pids()
        assert len(children) == 3
        # every child is a serving worker: each answers on its own connection
        served = set()
        for _ in range(30):
            data = exchange(srv.port, b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            served.add(int(parse_response(data).body))
        assert served <= set(children) and served


def test_sigterm_exits_cleanly_with_no_orphan():
    with ForkerProcess(app=APP, workers=2) as srv:
        children = srv.worker_pids()
        assert len(children) == 2
        assert request(srv.port)[2] == b"greeting!!!"
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
        # before leaving the block, which would kill what is left of the group
        for pid in children:
            assert not os.path.exists(f"/proc/{pid}") or _zombie_or_gone(pid)


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


SERVE_SCRIPT = """
from forker import serve
def greeting(request):
    return b"greeting!!!"
serve(greeting, {address!r}, workers={workers})
"""


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "unix"])
def test_serve_api_on_each_address_family(family, tmp_path):
    if family == "ipv4":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        address = f"127.0.0.1:{port}"
    elif family == "ipv6":
        if not socket.has_ipv6:
            pytest.skip("no IPv6")
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
                port = probe.getsockname()[1]
        except OSError:
            pytest.skip("no IPv6 loopback")
        address = f"[::1]:{port}"
    else:
        address = f"unix:{tmp_path / 'app.sock'}"
    # ready once both workers are in their loop and the address answers
    server = ForkerProcess(code=SERVE_SCRIPT.format(address=address, workers=2), workers=2,
                           address=address)
    try:
        data = exchange(address, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert parse_response(data).body == b"greeting!!!"
    finally:
        assert server.stop() == 0


def test_threads_serve_sleeping_handlers_concurrently():
    """8 requests held in the handler until all 8 are there at once: 8 threads
    serve them; fewer would leave the handler's barrier waiting."""
    with ForkerProcess("--threads", "8", app=APP) as srv:
        request(srv.port, "GET", "/sleep?0")
        results = []

        def fetch():
            results.append(request(srv.port, "GET", "/together?8")[2])

        threads = [threading.Thread(target=fetch) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == [b"together"] * 8
