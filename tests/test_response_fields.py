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
from typing import Dict, Iterator

import pytest

from harness import (ClosedEarly, ForkerProcess, Reader, Response, connect, exchange,
                     parse_response)

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

IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                         r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT")


def check_response(raw: bytes, head: bool = False) -> Response:
    """The checks every response passes. parse_response() has checked that
    the status line and field lines are well formed, and that the framing
    delimits the body exactly (nothing after it)."""
    response = parse_response(raw, head_only=head)
    fields = response.fields
    assert response.version == "HTTP/1.1" and 100 <= response.status <= 599, response
    assert fields.getall("server") == [SERVER], fields
    dates = fields.getall("date")
    assert len(dates) == 1 and IMF_FIXDATE.fullmatch(dates[0]), fields
    lengths, codings = fields.getall("content-length"), fields.getall("transfer-encoding")
    assert not (lengths and codings), f"both Content-Length and Transfer-Encoding: {fields}"
    assert len(lengths) <= 1 and len(codings) <= 1, fields
    if not (head or response.status < 200 or response.status in (204, 304)):
        if codings:
            assert codings == ["chunked"], fields
        else:
            assert lengths, f"neither Content-Length nor chunked: {fields}"
    return response


def get(target: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n".encode()


def port_of(server: ForkerProcess, pattern: str) -> int:
    return int(server.wait_for(pattern).group(1))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, int]]:
    directory = tmp_path_factory.mktemp("fields")
    (directory / "cert.pem").write_text(CERT)
    (directory / "key.pem").write_text(KEY)
    payload = directory / "payload.bin"
    payload.write_bytes(os.urandom(100_000))
    with ForkerProcess("--server-header", SERVER,
                       "--certfile", str(directory / "cert.pem"),
                       "--keyfile", str(directory / "key.pem"),
                       "--health-path", "/healthz", "--metrics-bind", "127.0.0.1:0",
                       "--max-body-size", "100", "--limit-request-line", "256",
                       "--limit-request-field-size", "256", app="engine_app:app",
                       bind=["http://127.0.0.1:0", "https://127.0.0.1:0"],
                       env={"ENGINE_APP_FILE": str(payload)}) as native, \
            ForkerProcess("--server-header", SERVER, app="wsgiapps:misc_app") as wsgi, \
            ForkerProcess("--server-header", SERVER, app="wsgiapps:stream_app") as wsgi_stream, \
            ForkerProcess("--server-header", SERVER) as greeting:
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


@pytest.mark.parametrize("app", ["wsgiapps:misc_app", "asgi_raw:app"])
def test_the_applications_content_length_stands(app):
    """A whole body whose length is not the application's Content-Length:
    its word stands, as for a streamed body. A longer body is cut at it (the
    connection stays in step); a shorter one goes out under it and the
    connection closes, so that the client sees the answer truncated. It was
    rewritten to the body's length: a truncated answer looked complete."""
    with ForkerProcess(app=app) as server:
        with connect(server.port) as sock:
            sock.sendall(b"GET /declared?declared=5&send=10 HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /declared?declared=10&send=4 HTTP/1.1\r\nHost: t\r\n\r\n")
            reader = Reader(sock)
            cut = reader.response()
            assert (cut.status, cut.fields["content-length"], cut.body) == (200, "5", b"xxxxx")
            assert "close" not in cut.fields.get("connection", "")
            with pytest.raises(ClosedEarly, match="4 of 10"):
                reader.response()
        server.wait_for(r"Content-Length is 10 but its body is 4 bytes")


def test_every_registered_status_has_its_reason_phrase():
    """The IANA registry's codes, as http.HTTPStatus lists them (418, the
    WebDAV and RFC 6585 codes went out as "Unknown")."""
    from http import HTTPStatus

    from forker._worker import standard_reason

    for status in HTTPStatus:
        assert standard_reason(status.value) != "Unknown", status
    assert standard_reason(599) == "Unknown"
