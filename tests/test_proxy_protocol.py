"""PROXY protocol v1 and v2 (--proxy-protocol) against a real server: exact
bytes on raw sockets, the client address the native handler, the WSGI
application and the access log see, the allow-list of senders, headers that
are malformed, truncated or late, TLS behind the header, and HAProxy's
send-proxy and send-proxy-v2 when it is installed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional, Tuple

import pytest

from harness import ForkerProcess, Reader, read_until_close, run_cli

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                      else None)
OPENSSL = shutil.which("openssl")
HEADER_TIMEOUT = 2.0  # the server of the header-timeout test
PATIENT = 60.0  # the others': what closes a connection at once cannot be the timeout
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
GET_KEEP = b"GET /keep HTTP/1.1\r\nHost: t\r\n\r\n"


# -- headers ---------------------------------------------------------------------------

def v1(src: str = "203.0.113.7", dst: str = "10.0.0.1", sport: int = 56324, dport: int = 443,
       proto: str = "TCP4") -> bytes:
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str = "198.51.100.9", dst: str = "10.0.0.1", sport: int = 4242, dport: int = 80,
       command: int = 0x21, family: Optional[int] = None, tlvs: bytes = b"",
       length: Optional[int] = None) -> bytes:
    """A v2 header; IPv6 when src has a colon. length overrides the length field."""
    if ":" in src:
        body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        family = 0x21 if family is None else family
    else:
        body = socket.inet_aton(src) + socket.inet_aton(dst)
        family = 0x11 if family is None else family
    body += struct.pack("!HH", sport, dport) + tlvs
    if family == 0x00:
        body = tlvs
    return (V2_SIGNATURE + bytes([command, family])
            + struct.pack("!H", len(body) if length is None else length) + body)


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


# -- clients ---------------------------------------------------------------------------

def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one segment per write
    return sock


def talk(port: int, *parts: bytes, pause: float = 0.0,
         timeout: float = 10.0) -> Tuple[bytes, bool, int]:
    """Sends the parts (pausing between them), reads until the server closes:
    (data, closed, the client's own port)."""
    with connect(port, timeout) as sock:
        for i, part in enumerate(parts):
            if i and pause:
                time.sleep(pause)
            sock.sendall(part)
        data, closed = read_until_close(sock, timeout)
        return data, closed, sock.getsockname()[1]


def body_of(data: bytes) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:300]
    return body


# The readiness probe of a server that takes only proxied connections.
PROXIED = v1() + GET


@pytest.fixture(scope="module")
def native() -> Iterator[ForkerProcess]:
    with ForkerProcess("--proxy-protocol", "--header-timeout", str(PATIENT),
                       app="proxy_app:app", probe=PROXIED) as server:
        yield server


@pytest.fixture(scope="module")
def hasty() -> Iterator[ForkerProcess]:
    with ForkerProcess("--proxy-protocol", "--header-timeout", str(HEADER_TIMEOUT),
                       app="proxy_app:app", probe=PROXIED) as server:
        yield server


@pytest.fixture(scope="module")
def wsgi() -> Iterator[ForkerProcess]:
    # the option from the environment, handlers on threads, an access log on stdout
    with ForkerProcess("--interface", "wsgi", "--threads", "2", "--access-log", "-",
                       "--access-log-format", "%(h)s %(r)s", app="wsgiapps:environ_app",
                       env={"FORKER_PROXY_PROTOCOL": "1"}, probe=PROXIED) as server:
        yield server


def worker_pid(server: ForkerProcess) -> str:
    data, _, _ = talk(server.port, v1() + b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return body_of(data).decode()


# -- the client address ------------------------------------------------------------------

@pytest.mark.parametrize("header, addr, port", [
    (v1(), "203.0.113.7", 56324),
    (v1("2001:db8::1", "2001:db8::2", 65535, 8443, proto="TCP6"), "2001:db8::1", 65535),
    (v1("::ffff:192.0.2.5", "::1", 0, 1, proto="TCP6"), "192.0.2.5", 0),
    (v2(), "198.51.100.9", 4242),
    (v2("2001:db8::42", "2001:db8::1", 40000, 443), "2001:db8::42", 40000),
    (v2(tlvs=tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x04, b"\0" * 300)),
     "198.51.100.9", 4242),
    (v2(family=0x12), "198.51.100.9", 4242),  # UDP4: the address is taken all the same
], ids=["v1-tcp4", "v1-tcp6", "v1-tcp6-mapped", "v2-ipv4", "v2-ipv6", "v2-tlvs", "v2-udp4"])
def test_header_and_request_in_one_write(native, header, addr, port):
    data, closed, _ = talk(native.port, header + GET)
    assert closed
    assert body_of(data).decode() == f"{addr} {port} /x"


@pytest.mark.parametrize("header", [
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN 203.0.113.7 10.0.0.1 1 2\r\n",
    v2(command=0x20),                       # LOCAL: the proxy's own health check
    v2(command=0x20, family=0x00),
    v2(family=0x00, tlvs=tlv(0x01, b"h2")),  # PROXY with UNSPEC addresses
    V2_SIGNATURE + b"\x21\x31" + struct.pack("!H", 216) + b"/tmp/a".ljust(216, b"\0"),  # AF_UNIX
], ids=["v1-unknown", "v1-unknown-rest", "v2-local", "v2-local-unspec", "v2-unspec", "v2-unix"])
def test_headers_that_keep_the_real_peer(native, header):
    data, closed, client_port = talk(native.port, header + GET)
    assert closed
    assert body_of(data).decode() == f"127.0.0.1 {client_port} /x"


@pytest.mark.parametrize("header", [v1(), v2()], ids=["v1", "v2"])
def test_header_split_across_writes(native, header):
    pieces = [header[:1], header[1:5], header[5:13], header[13:-1], header[-1:], GET[:10], GET[10:]]
    data, closed, _ = talk(native.port, *pieces, pause=0.05)
    assert closed
    assert body_of(data).startswith(b"203.0.113.7 56324 " if header[0:1] == b"P"
                                    else b"198.51.100.9 4242 ")


def test_header_alone_then_request_later(native):
    data, _, _ = talk(native.port, v2(), GET, pause=0.3)
    assert body_of(data) == b"198.51.100.9 4242 /x"


def test_keep_alive_and_pipelining_need_one_header(native):
    with connect(native.port) as sock:
        sock.sendall(v1("192.0.2.1", sport=1111) + GET_KEEP + GET_KEEP)  # pipelined
        reader = Reader(sock)
        for _ in range(2):
            status, _, body = reader.response()
            assert (status, body) == (200, b"192.0.2.1 1111 /keep")
        sock.sendall(GET_KEEP)  # a later request on the same connection: no header
        status, _, body = reader.response()
        assert (status, body) == (200, b"192.0.2.1 1111 /keep")
        # only a connection's first bytes are a PROXY header: later it is a bad request
        sock.sendall(v1() + GET)
        status, _, _ = reader.response()
        assert status == 400


# -- refused headers -------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    GET,                                                        # no header at all
    b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
    b"PROXY TCP4 203.0.113.256 10.0.0.1 1 2\r\n" + GET,         # bad address
    b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n" + GET,           # family mismatch
    b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 2\r\n" + GET,       # bad port
    b"PROXY TCP4  203.0.113.7 10.0.0.1 1 2\r\n" + GET,          # two spaces
    b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\n" + GET,             # bare LF
    b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n" + GET,             # over 107 bytes
    b"PROXY TCP4 " + b"1" * 200,                                # over 107 bytes, no CRLF
    b"proxy TCP4 203.0.113.7 10.0.0.1 1 2\r\n" + GET,
    V2_SIGNATURE[:11] + b"\x0b" + v2()[12:] + GET,              # bad signature
    v2()[:12] + b"\x11" + v2()[13:] + GET,                      # version 1 in v2 framing
    v2(command=0x22) + GET,                                     # unknown command
    v2(family=0x41) + GET,                                      # unknown family
    v2(length=0xFFFF) + GET,                                    # longer than accepted
    v2(length=5000) + b"\0" * 5000 + GET,
    v2(length=11)[:16] + v2()[16:27] + GET,                     # too short for IPv4
    v2(tlvs=b"\x01\x00\x09h2") + GET,                           # TLV past the end
], ids=["plain-http", "plain-options", "v1-bad-address", "v1-family", "v1-bad-port",
        "v1-two-spaces", "v1-bare-lf", "v1-overlong", "v1-no-crlf", "v1-lowercase",
        "v2-bad-signature", "v2-version", "v2-command", "v2-family", "v2-length-65535",
        "v2-length-5000", "v2-short-address", "v2-bad-tlv"])
def test_malformed_header_closes_without_a_response(native, raw):
    pid = worker_pid(native)
    data, closed, _ = talk(native.port, raw)  # closed within talk's 10 s: not timed out
    assert (data, closed) == (b"", True)
    assert worker_pid(native) == pid  # the worker lives on and serves
    assert "Traceback" not in native.stderr


@pytest.mark.parametrize("partial", [b"PROXY TCP4 203.0.113.7 10.0", v2()[:20], v2()[:8]],
                         ids=["v1", "v2", "v2-signature"])
def test_truncated_header_then_eof_closes_at_once(native, partial):
    with connect(native.port) as sock:
        sock.sendall(partial)
        sock.shutdown(socket.SHUT_WR)
        data, closed = read_until_close(sock, 10)  # within 10 s: not timed out
    assert (data, closed) == (b"", True)


@pytest.mark.parametrize("partial", [b"", b"PROXY TCP4 203.0.", v2()[:20]],
                         ids=["nothing", "v1-partial", "v2-partial"])
def test_header_must_arrive_within_the_header_timeout(hasty, partial):
    with connect(hasty.port) as sock:
        started = time.monotonic()
        if partial:
            sock.sendall(partial)
        data, closed = read_until_close(sock, 10)  # nothing else would close it
    elapsed = time.monotonic() - started
    assert (data, closed) == (b"", True)
    assert elapsed >= HEADER_TIMEOUT - 0.5  # not before the timeout


# -- WSGI, the access log and forwarded headers ---------------------------------------------

def environ_of(server: ForkerProcess, raw: bytes) -> dict:
    data, closed, _ = talk(server.port, raw)
    assert closed
    return json.loads(body_of(data))


def test_wsgi_remote_addr_and_port(wsgi):
    env = environ_of(wsgi, v1("192.0.2.77", sport=3456) + b"GET /w HTTP/1.1\r\nHost: t\r\n"
                     b"Connection: close\r\n\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.77", "3456")
    env = environ_of(wsgi, v2("2001:db8::9", "2001:db8::1", 61000, 443) + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::9", "61000")
    wsgi.wait_for(r"(?m)^192\.0\.2\.77 GET /w HTTP/1\.1$", stream="stdout")
    wsgi.wait_for(r"(?m)^2001:db8::9 GET /x HTTP/1\.1$", stream="stdout")


def test_forwarded_headers_are_trusted_by_the_address_of_the_header(wsgi):
    xff = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.18.0.1\r\nConnection: close\r\n\r\n"
    # a client named by the header is not a trusted proxy: its X-Forwarded-For is ignored
    env = environ_of(wsgi, v1("192.0.2.8", sport=7) + xff)
    assert env["REMOTE_ADDR"] == "192.0.2.8"
    # the header names a trusted proxy (127.0.0.1 by default): its forwarded headers count
    env = environ_of(wsgi, v1("127.0.0.1", sport=7) + xff)
    assert env["REMOTE_ADDR"] == "198.18.0.1"


@pytest.mark.parametrize("header", [v2(command=0x20), v1(proto="UNKNOWN"), b"PROXY UNKNOWN\r\n",
                                    v2(family=0x00),
                                    V2_SIGNATURE + bytes([0x21, 0x31]) + struct.pack("!H", 216)
                                    + bytes(216)],
                         ids=["v2-local", "v1-unknown-addresses", "v1-unknown", "v2-unspec",
                              "v2-unix"])
def test_forwarded_headers_are_not_believed_of_a_balancer_that_named_no_client(wsgi, header):
    """A header without a client address (LOCAL, UNKNOWN, UNSPEC, AF_UNIX)
    leaves the balancer, a trusted address, as the peer; but a layer-4 balancer
    passes the client's own X-Forwarded-* and Forwarded fields untouched, so
    they are not believed: the client could name any address and scheme."""
    forged = (b"GET /x HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n"
              b"X-Forwarded-Proto: https\r\nForwarded: for=6.6.6.7;proto=https\r\n"
              b"Connection: close\r\n\r\n")
    env = environ_of(wsgi, header + forged)
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")


# -- the option off, the allow-list ---------------------------------------------------------

def test_without_the_option_a_proxy_line_is_a_bad_request():
    with ForkerProcess(app="proxy_app:app") as server:
        data, closed, _ = talk(server.port, v1() + GET)
        assert closed and data.startswith(b"HTTP/1.1 400 "), data[:200]
        data, _, client_port = talk(server.port, GET)
        assert body_of(data).decode() == f"127.0.0.1 {client_port} /x"


def test_peers_outside_the_allow_list_are_closed():
    with tempfile.TemporaryDirectory(prefix="forker-proxy-") as tmp:
        path = os.path.join(tmp, "s.sock")
        # 127.0.0.1 is refused whatever it sends: no readiness probe, the server
        # is ready once its worker runs its loop
        with ForkerProcess("--proxy-protocol", "--forwarded-allow-ips", "10.0.0.0/8,192.0.2.1",
                           app="proxy_app:app", bind=["127.0.0.1:0", f"unix:{path}"],
                           probe=None) as server:
            server.wait_for(r"listening on unix:", 30)
            # a unix-socket peer (a proxy on this host) may send the header
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.socket(socket.AF_UNIX) as sock:
                        sock.settimeout(10)
                        sock.connect(path)
                        sock.sendall(v1() + GET)
                        data, _ = read_until_close(sock, 10)
                    if data:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, server.stderr
                time.sleep(0.05)
            assert body_of(data) == b"203.0.113.7 56324 /x"
            # the master said whom it listens to, since refusals are silent
            server.wait_for(r"proxy_protocol: .*accepted from 10\.0\.0\.0/8,192\.0\.2\.1", 30)
            # 127.0.0.1 is not in the list: refused, valid header or not
            port = int(server.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
            for raw in (v1() + GET, GET):
                data, closed, _ = talk(port, raw)
                assert (data, closed) == (b"", True)


def test_option_from_serve_and_in_help():
    code = ("import proxy_app\n"
            "from forker import serve\n"
            "serve(proxy_app.app, '127.0.0.1:0', workers=1, proxy_protocol=True)\n")
    with ForkerProcess(code=code, probe=PROXIED) as server:
        data, _, _ = talk(server.port, v2("192.0.2.3", sport=9) + GET)
        assert body_of(data) == b"192.0.2.3 9 /x"
    done = run_cli("--help")
    assert "--proxy-protocol" in done.stdout


# -- TLS -------------------------------------------------------------------------------

@pytest.mark.skipif(OPENSSL is None, reason="the openssl command makes the certificate")
def test_header_before_the_tls_handshake(tmp_path: Path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
                    "-days", "2", "-subj", "/CN=localhost"], cwd=tmp_path, check=True,
                   capture_output=True)
    context = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    context.check_hostname = False
    with ForkerProcess("--proxy-protocol", "--certfile", str(tmp_path / "c.pem"), "--keyfile",
                       str(tmp_path / "k.pem"), app="proxy_app:app", probe=None) as server:
        port = server.port

        def https(header: bytes, split: bool = False) -> bytes:
            raw = connect(port)
            raw.sendall(header)
            if split:
                time.sleep(0.1)
            with context.wrap_socket(raw) as sock:
                sock.sendall(GET_KEEP)
                reader = Reader(sock)
                status, _, body = reader.response()
                assert status == 200
                sock.sendall(GET_KEEP)  # kept alive, no second header
                assert reader.response()[2] == body
                return body

        deadline = time.monotonic() + 30
        while True:
            try:
                body = https(v1())
                break
            except (OSError, EOFError):
                assert time.monotonic() < deadline, server.stderr
                time.sleep(0.1)
        assert body == b"203.0.113.7 56324 /keep"
        assert https(v2(), split=True) == b"198.51.100.9 4242 /keep"
        # without a header the handshake is refused: the connection just closes
        with connect(port) as raw:
            with pytest.raises((ssl.SSLError, OSError)):
                context.wrap_socket(raw)


# -- HAProxy ---------------------------------------------------------------------------

@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_haproxy_send_proxy(native, send, tmp_path: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        front = probe.getsockname()[1]
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend front
    bind 127.0.0.1:{front}
    default_backend forker
backend forker
    server one 127.0.0.1:{native.port} {send}
""")
    haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                data, closed, client_port = talk(front, GET, timeout=5)
                if data:
                    break
            except OSError:
                pass
            assert haproxy.poll() is None and time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)
        # the client's own port, which only the header can have told
        assert body_of(data).decode() == f"127.0.0.1 {client_port} /x"
        with connect(front) as sock:
            sock.sendall(GET_KEEP + GET_KEEP)
            reader = Reader(sock)
            port = sock.getsockname()[1]
            for _ in range(2):
                assert reader.response()[2] == f"127.0.0.1 {port} /keep".encode()
    finally:
        haproxy.terminate()
        try:
            haproxy.wait(10)
        except subprocess.TimeoutExpired:
            haproxy.kill()
            haproxy.wait()
