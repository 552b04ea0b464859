"""The fields every response carries, checked once for every place a response
is written: handler answers (native and WSGI; whole, streamed, from a file,
500 for a failing handler), the worker loop's own (the built-in greeting,
health_path, the errors it writes itself: 400, 413, 414, 431, 501; its 500,
for want of memory, is the same code), the plain-HTTP
answer of a TLS listener, and the master's /metrics.

Each response is read whole from a real server (the request asks
Connection: close) and must have a well-formed status line and fields, one
Server field with the configured value, one Date in IMF-fixdate, and framing
that delimits its body exactly (Content-Length or chunked, never both)."""

from __future__ import annotations

import os
import re
import socket
from typing import Dict, Iterator, List, Tuple

import pytest

from cli_server import Server

SERVER = "fields-check/1.0"
# A self-signed certificate for the TLS listener (no client verifies it here:
# its plain-HTTP answer comes before any handshake).
CERT = """\
-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIUfLy6DP8aFU8vNRrY2LaHz1W0EA4wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNjEwMDcwN1oYDzIxMjYxMTEy
MTAwNzA3WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS/F1as1SIf2ukPNECw1pJ3RhiCxRJbk9HHvSuVJYGyciVuwp52qKGf
inSkU9S8LvQGKpgy3MIT9BwP3zEWfxW2o1MwUTAdBgNVHQ4EFgQUeIhQfPgND8n/
+BsFbBjW51NmP/UwHwYDVR0jBBgwFoAUeIhQfPgND8n/+BsFbBjW51NmP/UwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAr3YRFZx+mDbqoBGx7OhD
yhr/AFqCTcw9UXLFgLPy91ICIDuOUR7nf7/c3G3VSo4YoVZeFMNAPdOK8NH1PwCT
susc
-----END CERTIFICATE-----
"""
KEY = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRRmXCblj2jZxNhzl
RcAWKZ0mwW+bosn6S94cHFuTWMihRANCAAS/F1as1SIf2ukPNECw1pJ3RhiCxRJb
k9HHvSuVJYGyciVuwp52qKGfinSkU9S8LvQGKpgy3MIT9BwP3zEWfxW2
-----END PRIVATE KEY-----
"""

STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5]\d\d) [\t\x20-\x7e\x80-\xff]*")
FIELD_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")
IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                         r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT")


def dechunk(data: bytes) -> bytes:
    """A chunked body that must end exactly with its last chunk and trailers."""
    out = []
    while True:
        line, sep, data = data.partition(b"\r\n")
        assert sep, "chunk size line not ended by CRLF"
        size = int(line.split(b";")[0], 16)
        if size == 0:
            while True:  # trailer fields, then an empty line that ends the message
                line, sep, data = data.partition(b"\r\n")
                assert sep, "chunked body not ended by an empty line"
                if not line:
                    assert data == b"", f"bytes after the last chunk: {data[:80]!r}"
                    return b"".join(out)
        assert data[size:size + 2] == b"\r\n", "chunk data not followed by CRLF"
        out.append(data[:size])
        data = data[size + 2:]


def check_response(raw: bytes, head: bool = False) -> Tuple[int, Dict[str, List[str]], bytes]:
    """The checks every response passes; (status, fields by lower-case name, body)."""
    text, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw[:200]!r}"
    lines = text.split(b"\r\n")
    match = STATUS_LINE.fullmatch(lines[0])
    assert match, f"status line {lines[0]!r}"
    status = int(match.group(1))
    fields: Dict[str, List[str]] = {}
    for line in lines[1:]:
        field = FIELD_LINE.fullmatch(line)
        assert field, f"malformed field line {line!r} in {text!r}"
        fields.setdefault(field.group(1).decode().lower(), []).append(field.group(2).decode("latin-1"))
    assert fields.get("server") == [SERVER], text
    dates = fields.get("date", [])
    assert len(dates) == 1 and IMF_FIXDATE.fullmatch(dates[0]), text
    lengths, codings = fields.get("content-length", []), fields.get("transfer-encoding", [])
    assert not (lengths and codings), f"both Content-Length and Transfer-Encoding: {text!r}"
    assert len(lengths) <= 1 and len(codings) <= 1, text
    if head or status < 200 or status in (204, 304):
        assert rest == b"", f"a body where none belongs: {rest[:80]!r}"
        return status, fields, b""
    if codings:
        assert codings == ["chunked"], text
        return status, fields, dechunk(rest)
    assert lengths, f"neither Content-Length nor chunked: {text!r}"
    assert len(rest) == int(lengths[0]), f"Content-Length {lengths[0]}, body {len(rest)} bytes"
    return status, fields, rest


def exchange(port: int, data: bytes) -> bytes:
    """Sends data, reads until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def get(target: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n".encode()


def port_of(server: Server, pattern: str) -> int:
    return int(server.wait_for(pattern).group(1))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, int]]:
    directory = tmp_path_factory.mktemp("fields")
    (directory / "cert.pem").write_text(CERT)
    (directory / "key.pem").write_text(KEY)
    payload = directory / "payload.bin"
    payload.write_bytes(os.urandom(100_000))
    common = ["--workers", "1", "--server-header", SERVER]
    with Server(*common, "--bind", "http://127.0.0.1:0", "--bind", "https://127.0.0.1:0",
                "--certfile", str(directory / "cert.pem"), "--keyfile", str(directory / "key.pem"),
                "--health-path", "/healthz", "--metrics-bind", "127.0.0.1:0",
                "--max-body-size", "100", "--limit-request-line", "256",
                "--limit-request-field-size", "256", "engine_app:app",
                env={"ENGINE_APP_FILE": str(payload)}) as native, \
            Server(*common, "--bind", "127.0.0.1:0", "wsgiapps:misc_app") as wsgi, \
            Server(*common, "--bind", "127.0.0.1:0", "wsgiapps:stream_app") as wsgi_stream, \
            Server(*common, "--bind", "127.0.0.1:0") as greeting:
        yield {
            "native": port_of(native, r"listening on 127\.0\.0\.1:(\d+) \([^)]*\)\n"),
            "tls": port_of(native, r"listening on 127\.0\.0\.1:(\d+) \([^)]*, TLS\)"),
            "metrics": port_of(native, r"metrics at /metrics on 127\.0\.0\.1:(\d+)"),
            "wsgi": wsgi.port, "wsgi_stream": wsgi_stream.port, "greeting": greeting.port,
        }


LONG = "x" * 300
PATHS = [
    # (id, server, request, status)
    ("native", "native", get("/"), 200),
    ("native-str", "native", get("/text"), 200),
    ("native-status-fields", "native", get("/status"), 201),
    ("native-no-content", "native", get("/empty"), 204),
    ("native-not-found", "native", get("/nowhere"), 404),
    ("native-head", "native", get("/", "HEAD"), 200),
    ("native-streamed", "native", get("/stream"), 200),
    ("native-file", "native", get("/file"), 200),
    ("native-file-head", "native", get("/file", "HEAD"), 200),
    ("native-raises-500", "native", get("/boom"), 500),
    ("native-bad-field-500", "native", get("/bad-header"), 500),
    ("wsgi", "wsgi", get("/write"), 200),
    ("wsgi-file", "wsgi", get("/file"), 200),
    ("wsgi-raises-500", "wsgi", get("/raise"), 500),
    ("wsgi-bad-field-500", "wsgi", get("/inject"), 500),
    ("wsgi-not-found", "wsgi", get("/nowhere"), 404),
    ("wsgi-streamed", "wsgi_stream", get("/"), 200),
    ("greeting", "greeting", get("/"), 200),
    ("loop-400", "native", b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n", 400),
    ("loop-413", "native", get("/echo", "POST", "Content-Length: 1000\r\n"), 413),
    ("loop-414", "native", get("/" + LONG), 414),
    ("loop-431", "native", get("/", extra=f"X-Long: {LONG}\r\n"), 431),
    ("loop-501", "native", b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 501),
    ("health", "native", get("/healthz"), 200),
    ("health-head", "native", get("/healthz", "HEAD"), 200),
    ("tls-plain-http", "tls", get("/"), 400),
    ("metrics", "metrics", get("/metrics"), 200),
    ("metrics-head", "metrics", get("/metrics", "HEAD"), 200),
    ("metrics-not-found", "metrics", get("/other"), 404),
    ("metrics-405", "metrics", get("/metrics", "POST", "Content-Length: 0\r\n"), 405),
]


@pytest.mark.parametrize("server,request_bytes,status", [p[1:] for p in PATHS],
                         ids=[p[0] for p in PATHS])
def test_response_carries_the_common_fields(servers, server, request_bytes, status):
    raw = exchange(servers[server], request_bytes)
    got, _, _ = check_response(raw, head=request_bytes.startswith(b"HEAD "))
    assert got == status, raw[:300]
