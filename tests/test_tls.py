"""HTTPS through real clients (curl, Python's ssl with http.client, openssl
s_client): certificates and client certificates, ALPN, keep-alive, pipelining,
10 MB bodies, plain HTTP on the TLS port, broken and slow handshakes, HTTP and
HTTPS at once, certificate reload on HUP, and bad files refused at start.

The certificates are made by the tests with the openssl command: a CA, a
server certificate and a second one for the reload, client certificates from
that CA and from another one."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from harness import ROOT, ForkerProcess, Reader, free_port, open_fds, run_cli

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command makes the certificates")

APP = "tls_app:app"
MB = 1024 * 1024


# -- certificates ----------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL or "openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=forker test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


def _leaf(directory: Path, name: str, ca: str, usage: str, cn: str) -> None:
    (directory / f"{name}.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        f"extendedKeyUsage={usage}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    _ca(directory, "ca")
    _ca(directory, "otherca")
    _leaf(directory, "server", "ca", "serverAuth", "localhost")
    _leaf(directory, "renewed", "ca", "serverAuth", "renewed")
    _leaf(directory, "client", "ca", "clientAuth", "client")
    _leaf(directory, "stranger", "otherca", "clientAuth", "stranger")
    _openssl("pkey", "-in", "server.key", "-out", "encrypted.key", "-aes256",
             "-passout", "pass:secret", cwd=directory)
    payload = directory / "payload.bin"
    payload.write_bytes(os.urandom(3 * MB + 17))
    return directory


def server_args(certs: Path, *extra: str) -> List[str]:
    return ["--certfile", str(certs / "server.pem"), "--keyfile", str(certs / "server.key"),
            *extra]


def client_context(certs: Path, cert: Optional[str] = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if cert is not None:
        context.load_cert_chain(str(certs / f"{cert}.pem"), str(certs / f"{cert}.key"))
    return context


def https(port: int, context: ssl.SSLContext, method: str = "GET", target: str = "/",
          body: Optional[bytes] = None,
          headers: Optional[Dict[str, str]] = None) -> Tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def tls_socket(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def listening(server: ForkerProcess, count: int) -> List[Tuple[int, bool]]:
    """(port, TLS) of each listener, from the master's log."""
    regex = r"listening on 127\.0\.0\.1:(\d+) \([^)]*?(, TLS)?\)"
    deadline = time.monotonic() + 10
    while True:
        found = re.findall(regex, server.stderr)
        if len(found) >= count or time.monotonic() > deadline:
            return [(int(port), bool(tls)) for port, tls in found]
        time.sleep(0.05)


def client_hello() -> bytes:
    """The first flight of a real TLS client, for raw-socket tests."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.fixture(scope="module")
def server(certs: Path):
    env = {"TLS_TEST_FILE": str(certs / "payload.bin")}
    with ForkerProcess("--header-timeout", "2", *server_args(certs), app=APP, env=env) as srv:
        yield srv


def test_engine_is_not_linked_with_openssl():
    """OpenSSL is found at run time (Python's own), never a dependency of the build."""
    import forker._worker

    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf is needed to read the extension's dependencies")
    needed = subprocess.run([readelf, "-d", forker._worker.__file__], capture_output=True,
                            text=True, check=True).stdout
    libraries = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", needed)
    assert libraries and not [name for name in libraries if "ssl" in name or "crypto" in name]
    assert forker._worker.tls_library() == ssl.OPENSSL_VERSION


# -- clients ---------------------------------------------------------------------------

def test_python_client_verifies_and_negotiates_http11(server, certs):
    with tls_socket(server.port, client_context(certs)) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        assert sock.selected_alpn_protocol() is None  # the client offered none
        sock.sendall(b"GET /scheme HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Reader(sock).response()[2] == b"https"
    context = client_context(certs)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with tls_socket(server.port, context) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
    status, headers, body = https(server.port, client_context(certs), target="/scheme")
    assert (status, body) == (200, b"https")


def test_client_offering_only_h2_gets_no_application_protocol(server, certs):
    context = client_context(certs)
    context.set_alpn_protocols(["h2"])
    with pytest.raises(ssl.SSLError, match="(?i)no.application.protocol"):
        tls_socket(server.port, context).close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_12_is_refused(server, certs):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        context.set_ciphers("DEFAULT@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with pytest.raises(ssl.SSLError) as caught:
        tls_socket(server.port, context).close()
    if "NO_PROTOCOLS_AVAILABLE" in str(caught.value) or "UNSUPPORTED_PROTOCOL" in str(caught.value):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    assert "PROTOCOL_VERSION" in str(caught.value)


def test_curl_with_cacert_keeps_the_connection(server, certs):
    url = f"https://127.0.0.1:{server.port}/scheme"
    done = subprocess.run(["curl", "-sS", "--cacert", str(certs / "ca.pem"), "-w",
                           " %{http_code} %{num_connects}\n", url, url, url],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["https 200 1", "https 200 0", "https 200 0"]


def test_curl_refuses_a_certificate_from_another_ca(server, certs):
    done = subprocess.run(["curl", "-sS", "--cacert", str(certs / "otherca.pem"),
                           f"https://127.0.0.1:{server.port}/"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 60, done.stderr  # peer certificate cannot be authenticated


def test_openssl_s_client(server, certs):
    done = subprocess.run([OPENSSL or "openssl", "s_client", "-connect", f"127.0.0.1:{server.port}",
                           "-CAfile", str(certs / "ca.pem"), "-verify_return_error",
                           "-alpn", "http/1.1", "-quiet"],
                          input=b"GET /scheme HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert done.stdout.endswith(b"\r\n\r\nhttps")


# -- the protocol over TLS -----------------------------------------------------------------

def test_keep_alive_over_tls(server, certs):
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(certs),
                                       timeout=10)
    sockets = set()
    for _ in range(300):
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.read() == b"greeting!!!" and not response.will_close
        sockets.add(id(conn.sock))
    conn.close()
    assert len(sockets) == 1


def test_pipelining_over_tls(server, certs):
    with tls_socket(server.port, client_context(certs)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 100 +
                     b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" +
                     b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reader = Reader(sock)
        for _ in range(100):
            status, _, body = reader.response()
            assert (status, body) == (200, b"greeting!!!")
        assert reader.response()[2] == b"hello"
        assert reader.response()[2] == b"part0;part1;part2;part3;part4;"
        assert sock.recv(1) == b""  # closed after Connection: close


def test_ten_megabytes_both_ways(server, certs):
    body = os.urandom(10 * MB)
    status, headers, echoed = https(server.port, client_context(certs), "POST", "/echo", body)
    assert status == 200 and headers["X-Body-Length"] == str(len(body)) and echoed == body
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(certs),
                                       timeout=30)
    conn.request("POST", "/echo", body=chunks, encode_chunked=True)
    assert conn.getresponse().read() == body
    conn.request("GET", "/big")
    assert conn.getresponse().read() == b"b" * (10 * MB)
    conn.close()


@pytest.mark.parametrize("threads", ["1", "4"])
def test_request_body_past_body_buffer_size_over_tls(certs, threads):
    """With threads=1 the handler reads a large body through TLS itself; with
    handler threads the loop receives TLS bodies whole (one thread per SSL)."""
    env = {"TLS_TEST_FILE": str(certs / "payload.bin")}
    with ForkerProcess("--threads", threads, "--body-buffer-size", str(MB),
                       *server_args(certs), app=APP, env=env) as srv:
        body = os.urandom(5 * MB)
        status, headers, echoed = https(srv.port, client_context(certs), "POST", "/echo", body)
        assert status == 200 and echoed == body
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=client_context(certs),
                                           timeout=30)
        chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
        conn.request("POST", "/echo", body=chunks, encode_chunked=True)
        assert conn.getresponse().read() == body
        conn.request("GET", "/big")  # the connection was kept
        assert conn.getresponse().read() == b"b" * (10 * MB)
        conn.close()


def test_file_body_over_tls_without_sendfile(server, certs):
    status, headers, body = https(server.port, client_context(certs), target="/file")
    assert status == 200 and body == (certs / "payload.bin").read_bytes()


# -- bad input -------------------------------------------------------------------------------

def test_plain_http_on_the_tls_port_gets_400_and_close(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in data
    assert data.endswith(b"the plain HTTP request was sent to HTTPS port\n")


def test_broken_handshakes_leave_the_worker_whole(server, certs):
    pid = https(server.port, client_context(certs), target="/pid",
                headers={"Connection": "close"})[2]
    time.sleep(0.2)
    baseline = open_fds(int(pid))
    hello = client_hello()
    for round_ in range(60):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            if round_ % 3 == 0:
                sock.sendall(b"\x16\x03\x01\x00\x20" + os.urandom(32))  # a record of garbage
            elif round_ % 3 == 1:
                sock.sendall(hello[: len(hello) // 2])  # half a hello, then gone
                continue
            else:
                sock.sendall(hello)
                sock.recv(1)  # the server's first flight has begun
                sock.sendall(b"\x15\x03\x03\x00\x02\x02\x28" + os.urandom(64))
            sock.settimeout(5)
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
    assert https(server.port, client_context(certs), target="/pid",
                 headers={"Connection": "close"})[2] == pid
    deadline = time.monotonic() + 5
    while open_fds(int(pid)) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(int(pid)) <= baseline


def test_handshake_slowloris_is_closed_by_header_timeout(server):
    hello = client_hello()
    sockets = []
    started = time.monotonic()  # before any connection: each one's deadline is later
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(hello[:3])  # a record header, dribbled
        sockets.append(sock)
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sockets.append(silent)
    for sock in sockets:
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        sock.close()
    # --header-timeout 2, not before; the sockets' 10 s bound a hang (nothing
    # else would close them)
    assert time.monotonic() - started >= 1.5


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_sessions_resume_on_every_worker(certs, version):
    # reuse_port spreads successive connections over the workers by their
    # source port; one shared socket may hand them all to the same worker
    with ForkerProcess("--reuse-port", *server_args(certs), app=APP, workers=2) as srv:
        context = client_context(certs)
        context.maximum_version = getattr(ssl.TLSVersion, version)
        session = None
        pids = set()
        for attempt in range(200):
            with tls_socket_session(srv.port, context, session) as sock:
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
                pid = Reader(sock).response()[2]
                if session is not None:
                    assert sock.session_reused, f"full handshake on worker {pid!r}"
                    pids.add(pid)
                session = sock.session
            if len(pids) == 2:
                break
        assert len(pids) == 2, "every connection went to one worker"


def tls_socket_session(port: int, context: ssl.SSLContext,
                       session: Optional[ssl.SSLSession]) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1", session=session)


# -- client certificates ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def mtls_server(certs: Path):
    with ForkerProcess(*server_args(certs, "--ca-certs", str(certs / "ca.pem"),
                                    "--cert-reqs", "required"), app=APP) as srv:
        yield srv


def test_client_certificate_required_and_accepted(mtls_server, certs):
    status, _, body = https(mtls_server.port, client_context(certs, "client"), target="/scheme")
    assert (status, body) == (200, b"https")


@pytest.mark.parametrize("cert", [None, "stranger"])
def test_client_certificate_missing_or_unknown_is_refused(mtls_server, certs, cert):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(mtls_server.port, client_context(certs, cert), target="/scheme")
    status, _, _ = https(mtls_server.port, client_context(certs, "client"))
    assert status == 200  # the worker is unharmed


def test_client_certificate_optional(certs):
    with ForkerProcess(*server_args(certs, "--ca-certs", str(certs / "ca.pem"),
                                    "--cert-reqs", "optional"), app=APP) as srv:
        assert https(srv.port, client_context(certs))[0] == 200
        assert https(srv.port, client_context(certs, "client"))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https(srv.port, client_context(certs, "stranger"))


# -- listeners, interfaces, API ----------------------------------------------------------------

def test_http_and_https_listeners_at_once(certs):
    with ForkerProcess(*server_args(certs), app=APP,
                       bind=["http://127.0.0.1:0", "https://127.0.0.1:0"]) as srv:
        (plain, plain_tls), (secure, secure_tls) = listening(srv, 2)
        assert (plain_tls, secure_tls) == (False, True)
        conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=10)
        conn.request("GET", "/scheme")
        assert conn.getresponse().read() == b"http"
        conn.close()
        assert https(secure, client_context(certs), target="/scheme")[2] == b"https"


def test_wsgi_url_scheme_is_https(certs):
    with ForkerProcess("--interface", "wsgi", *server_args(certs), app="tls_app:wsgi") as srv:
        context = client_context(certs)
        assert https(srv.port, context)[2] == f"https {srv.port}".encode()
        assert https(srv.port, context, headers={"Host": "example"})[2] == b"https 443"


@pytest.mark.parametrize("how", ["listen_and_serve_tls", "serve"])
def test_python_api(certs, how):
    port = free_port()
    cert, key = str(certs / "server.pem"), str(certs / "server.key")
    call = (f"Forker(app, workers=1).listen_and_serve_tls('127.0.0.1:{port}', {cert!r}, {key!r})"
            if how == "listen_and_serve_tls" else
            f"serve(app, '127.0.0.1:{port}', workers=1, certfile={cert!r}, keyfile={key!r})")
    code = f"from tls_app import app\nfrom forker import Forker, serve\n{call}\n"
    with ForkerProcess(code=code, address=f"127.0.0.1:{port}") as srv:
        assert https(port, client_context(certs), target="/scheme")[2] == b"https"
        assert srv.stop() == 0


SSL_CONTEXT_CODE = """
import ssl
from tls_app import app
from forker import serve

def context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain({cert!r}, {key!r})
    return context

serve(app, "127.0.0.1:{port}", workers=1, ssl_context={value})
"""


@pytest.mark.parametrize("value", ["context()", "context"])
def test_ssl_context_from_python(certs, tmp_path, value):
    """An ssl.SSLContext serves with its own settings (TLS 1.3 only here); a
    function returning one is called by each worker, so HUP reloads it."""
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs / "server.pem", live_cert)
    shutil.copy(certs / "server.key", live_key)
    port = free_port()
    code = SSL_CONTEXT_CODE.format(value=value, cert=str(live_cert), key=str(live_key), port=port)
    with ForkerProcess(code=code, address=f"127.0.0.1:{port}") as srv:
        context = client_context(certs)
        context.set_alpn_protocols(["h2", "http/1.1"])
        with tls_socket(port, context) as sock:
            assert sock.version() == "TLSv1.3"
            assert sock.selected_alpn_protocol() == "http/1.1"
            sock.sendall(b"GET /scheme HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(sock).response()[2] == b"https"
        old = client_context(certs)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            tls_socket(port, old).close()
        shutil.copy(certs / "renewed.pem", live_cert)
        shutil.copy(certs / "renewed.key", live_key)
        srv.signal(signal.SIGHUP)
        srv.wait_for(r"HUP: 1 new workers serving", 20)
        renewed = der_of(certs / ("renewed.pem" if value == "context" else "server.pem"))
        wait_for_certificate(port, certs, renewed)


@pytest.mark.parametrize("setting, message", [
    ("sni_callback", r"ssl_context: sni_callback is not supported"),
    ("no-certificate", r"ssl_context: a test handshake fails"),
    ("certfile", r"certfile: set in the ssl_context instead"),
    ("not-a-context", r"ssl_context: expected an ssl.SSLContext"),
])
def test_ssl_context_refused(certs, setting, message):
    code = f"""
import ssl, sys
from forker import serve
from forker.errors import ConfigError
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
options = {{}}
if {setting!r} != "no-certificate":
    context.load_cert_chain({str(certs / "server.pem")!r}, {str(certs / "server.key")!r})
if {setting!r} == "sni_callback":
    context.sni_callback = lambda *args: None
if {setting!r} == "certfile":
    options["certfile"] = {str(certs / "server.pem")!r}
if {setting!r} == "not-a-context":
    context = "context.pem"
try:
    serve(lambda request: b"", "127.0.0.1:0", workers=1, ssl_context=context, **options)
except ConfigError as exc:
    print(exc)
    sys.exit(2)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert re.search(message, done.stdout), done.stdout


def test_listener_schemes_for_bound_and_inherited_sockets(certs):
    from forker.config import Config
    from forker.tls import bind_schemes, listener_schemes, split_scheme

    assert split_scheme("https://:8443") == ("https", ":8443")
    assert split_scheme("http://unix:/run/a.sock") == ("http", "unix:/run/a.sock")
    assert split_scheme("127.0.0.1:80") == (None, "127.0.0.1:80")
    sockets = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sockets.append(sock)
    try:
        ports = [sock.getsockname()[1] for sock in sockets]
        bind = [f"http://127.0.0.1:{ports[0]}", f"https://127.0.0.1:{ports[1]}",
                f"127.0.0.1:{ports[2]}"]
        plain = Config(bind=bind)
        secure = Config(bind=bind, certfile=str(certs / "server.pem"))
        assert bind_schemes(plain) == ["http", "https", "http"]
        assert bind_schemes(secure) == ["http", "https", "https"]
        # inherited (an upgrade, systemd): matched by address, in any order
        assert listener_schemes(secure, sockets[::-1], "upgrade") == ["https", "https", "http"]
        # no address matches: the same port does (0.0.0.0 and a host name are not compared)
        by_port = Config(bind=[f"https://0.0.0.0:{ports[1]}"])
        assert listener_schemes(by_port, sockets, "systemd") == ["http", "https", "http"]
    finally:
        for sock in sockets:
            sock.close()


# -- reload and bad files -----------------------------------------------------------------------

def wait_for_certificate(port: int, certs: Path, expected: bytes) -> None:
    """After a HUP: until a connection gets expected (an old worker may still
    take one queued before it received TERM); 20 s only bound a hang."""
    deadline = time.monotonic() + 20
    while peer_certificate(port, certs) != expected:
        assert time.monotonic() < deadline, "the new workers never served the certificate"
        time.sleep(0.05)


def peer_certificate(port: int, certs: Path) -> bytes:
    with tls_socket(port, client_context(certs)) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_hup_loads_renewed_certificate_files(certs, tmp_path):
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs / "server.pem", live_cert)
    shutil.copy(certs / "server.key", live_key)
    with ForkerProcess("--certfile", str(live_cert), "--keyfile", str(live_key), app=APP,
                       workers=2) as srv:
        assert peer_certificate(srv.port, certs) == der_of(certs / "server.pem")
        shutil.copy(certs / "renewed.pem", live_cert)
        shutil.copy(certs / "renewed.key", live_key)
        srv.signal(signal.SIGHUP)
        srv.wait_for(r"HUP: 2 new workers serving", 20)
        wait_for_certificate(srv.port, certs, der_of(certs / "renewed.pem"))
        for _ in range(4):  # whichever worker answers
            assert peer_certificate(srv.port, certs) == der_of(certs / "renewed.pem")
        # a broken renewal is refused by the master: the running workers go on
        shutil.copy(certs / "server.key", live_key)
        srv.signal(signal.SIGHUP)
        srv.wait_for(r"HUP: bad configuration, keeping the current one: keyfile: .*live\.key "
                     r"does not match", 10)
        assert peer_certificate(srv.port, certs) == der_of(certs / "renewed.pem")


@pytest.mark.parametrize("case", ["missing", "mismatch", "encrypted", "not-pem", "no-cert",
                                  "no-ca", "https-without-cert", "bad-ciphers"])
def test_bad_settings_fail_at_start_naming_the_file(certs, tmp_path, case):
    cert, key = str(certs / "server.pem"), str(certs / "server.key")
    args = {
        "missing": ["--certfile", str(tmp_path / "nope.pem"), "--keyfile", key],
        "mismatch": ["--certfile", cert, "--keyfile", str(certs / "client.key")],
        "encrypted": ["--certfile", cert, "--keyfile", str(certs / "encrypted.key")],
        "not-pem": ["--certfile", str(certs / "server.ext"), "--keyfile", key],
        "no-cert": ["--keyfile", key],
        "no-ca": ["--certfile", cert, "--keyfile", key, "--cert-reqs", "required"],
        "https-without-cert": ["--bind", "https://127.0.0.1:0"],
        "bad-ciphers": ["--certfile", cert, "--keyfile", key, "--ciphers", "NOTHING-AT-ALL"],
    }[case]
    expected = {
        "missing": r"certfile: cannot read .*nope\.pem: No such file",
        "mismatch": r"keyfile: .*client\.key does not match the certificate in .*server\.pem",
        "encrypted": r"keyfile: .*encrypted\.key holds no usable private key",
        "not-pem": r"certfile: .*server\.ext holds no valid PEM certificate",
        "no-cert": r"keyfile: needs certfile",
        "no-ca": r"cert_reqs: required needs ca_certs",
        "https-without-cert": r"bind: https://127\.0\.0\.1:0 needs certfile",
        "bad-ciphers": r"ciphers: no cipher matches 'NOTHING-AT-ALL'",
    }[case]
    if "--bind" not in args:
        args = ["--bind", "127.0.0.1:0"] + args
    done = run_cli("--workers", "1", *args, APP, timeout=30)
    assert done.returncode == 2, done.stderr
    assert re.search(expected, done.stderr), done.stderr
    assert "Traceback" not in done.stderr
