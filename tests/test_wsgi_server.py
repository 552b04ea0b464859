"""WSGI through real sockets: `python -m forker --interface wsgi APP` in a
subprocess, raw sockets and http.client as clients."""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import (  # noqa: E402
    APPS, ForkerProcess, Reader, connect, exchange, parse_response, request, wait_for,
)


@pytest.fixture(scope="module", params=["1", "4"], ids=["threads1", "threads4"])
def environ_server(request):
    with ForkerProcess("--interface", "wsgi", "--threads", request.param,
                       app="wsgiapps:validated_environ_app") as server:
        yield server


@pytest.fixture(scope="module")
def forwarded_server():
    """Takes the host from trusted proxies too (--forwarded-host)."""
    with ForkerProcess("--interface", "wsgi", "--forwarded-host",
                       app="wsgiapps:validated_environ_app") as server:
        yield server


@pytest.fixture(scope="module")
def misc_server():
    with ForkerProcess("--interface", "wsgi", app="wsgiapps:misc_app") as server:
        yield server


def environ_of(server, raw: bytes) -> dict:
    response = parse_response(exchange(server.port, raw))
    assert (response.version, response.status) == ("HTTP/1.1", 200), response
    return json.loads(response.body)


def get(target: str, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET {target} {version}"] + list(headers) + ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


# -- the environ, for tricky targets and fields ---------------------------------------

@pytest.mark.parametrize("target, path_info, query", [
    ("/plain", "/plain", ""),
    ("/a%2Fb/c", "/a/b/c", ""),
    ("/caf%C3%A9?x=%C3%A9", "/caf\xc3\xa9", "x=%C3%A9"),
    ("/sp%20ace", "/sp ace", ""),
    ("/empty?", "/empty", ""),
    ("/q?a=1&a=2&b", "/q", "a=1&a=2&b"),
])
def test_environ_paths(environ_server, target, path_info, query):
    env = environ_of(environ_server, get(target, "Host: example.com"))
    assert env["PATH_INFO"] == path_info
    assert env["QUERY_STRING"] == query
    assert env["RAW_URI"] == env["REQUEST_URI"] == target
    assert env["SCRIPT_NAME"] == ""


def test_environ_fixed_values(environ_server):
    env = environ_of(environ_server, get("/", "Host: example.com:8000"))
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "example.com" and env["SERVER_PORT"] == "8000"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and int(env["REMOTE_PORT"]) > 0
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.run_once"] is False
    assert env["wsgi.multiprocess"] is False  # --workers 1
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env


def test_environ_multithread_follows_threads(environ_server):
    env = environ_of(environ_server, get("/", "Host: h"))
    threads = [a for a in environ_server.argv if a.isdigit()][-1]
    assert env["wsgi.multithread"] is (threads != "1")


def test_environ_absolute_form(environ_server):
    env = environ_of(environ_server, get("http://other.example:8080/abs/path?k=v",
                                         "Host: example.com"))
    assert env["PATH_INFO"] == "/abs/path" and env["QUERY_STRING"] == "k=v"
    assert env["HTTP_HOST"] == "other.example:8080"
    assert env["SERVER_NAME"] == "other.example" and env["SERVER_PORT"] == "8080"
    assert env["RAW_URI"] == "http://other.example:8080/abs/path?k=v"


def test_environ_repeated_and_underscore_headers(environ_server):
    env = environ_of(environ_server, get("/", "Host: h", "X-Multi: one", "x-multi: two",
                                         "Accept: a/b", "ACCEPT: c/d", "Cookie: a=1",
                                         "Cookie: b=2", "X_Forwarded_For: 6.6.6.6"))
    assert env["HTTP_X_MULTI"] == "one, two"
    assert env["HTTP_ACCEPT"] == "a/b, c/d"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_FORWARDED_FOR" not in env
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_environ_http10_without_host(environ_server):
    env = environ_of(environ_server, get("/old", version="HTTP/1.0").replace(
        b"Connection: close\r\n", b""))
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(environ_server.port)


def test_environ_post_body(environ_server):
    status, _, body = request(
        environ_server.port, "POST", "/submit", body=b"a=1&b=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    env = json.loads(body)
    assert status == 200
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "7"
    assert env["body"] == "a=1&b=2"


def test_environ_chunked_request_body(environ_server):
    raw = (b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")
    env = environ_of(environ_server, raw)
    assert env["body"] == "hello, world"
    assert env["CONTENT_LENGTH"] == "12"  # the body arrives whole: frameworks see its length


def test_forwarded_headers_from_localhost_are_trusted_by_default(environ_server,
                                                                forwarded_server):
    request = get("/", "Host: internal", "X-Forwarded-For: 203.0.113.9",
                  "X-Forwarded-Proto: https", "X-Forwarded-Host: public.example")
    env = environ_of(environ_server, request)
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "internal" and env["SERVER_PORT"] == "443"  # as gunicorn
    env = environ_of(forwarded_server, request)
    assert env["HTTP_HOST"] == "public.example" and env["SERVER_PORT"] == "443"
    env = environ_of(environ_server, get("/", "Host: internal",
                                         'Forwarded: for="[2001:db8::5]:1234";proto=https'))
    assert env["REMOTE_ADDR"] == "2001:db8::5" and env["wsgi.url_scheme"] == "https"


def test_keep_alive_serves_several_requests(environ_server):
    conn = http.client.HTTPConnection("127.0.0.1", environ_server.port, timeout=10)
    try:
        ports = set()
        for i in range(5):
            conn.request("GET", f"/k{i}", headers={"Host": "h"})
            response = conn.getresponse()
            env = json.loads(response.read())
            assert env["PATH_INFO"] == f"/k{i}"
            ports.add(env["REMOTE_PORT"])
        assert len(ports) == 1
    finally:
        conn.close()


def test_serve_with_interface_wsgi():
    code = ("import wsgiapps\n"
            "from forker import serve\n"
            "serve(wsgiapps.environ_app, '127.0.0.1:0', interface='wsgi', workers=1, threads=2)\n")
    with ForkerProcess(code=code) as server:
        status, _, body = request(server.port, "GET", "/served?x=1")
        env = json.loads(body)
        assert (status, env["PATH_INFO"], env["QUERY_STRING"]) == (200, "/served", "x=1")
        assert env["wsgi.multithread"] is True


# -- responses -----------------------------------------------------------------------

def test_streaming_response_is_chunked_on_http11():
    with ForkerProcess("--interface", "wsgi", app="wsgiapps:validated_stream_app") as server:
        response = parse_response(exchange(server.port, get("/", "Host: h")))
        assert response.status_line == "HTTP/1.1 200 OK"
        assert response.fields.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.fields
        assert response.body == b"".join(b"chunk %d\n" % i for i in range(5))  # dechunked

        response = parse_response(exchange(server.port, get("/", version="HTTP/1.0")))
        assert response.version in ("HTTP/1.0", "HTTP/1.1") and response.status == 200
        assert "transfer-encoding" not in response.fields
        assert "content-length" not in response.fields
        assert response.body == b"".join(b"chunk %d\n" % i for i in range(5))  # close-delimited


def test_write_callable(misc_server):
    status, headers, body = request(misc_server.port, "GET", "/write")
    assert (status, body) == (200, b"written;returned")
    assert headers["Content-Length"] == str(len(body))


def test_repeated_response_fields_are_each_sent_in_order(misc_server):
    status, fields, body = request(misc_server.port, "GET", "/cookies")
    assert (status, body) == (200, b"two")
    assert [(n, v) for n, v in fields if n in ("Set-Cookie", "X-Between")] == [
        ("Set-Cookie", "a=1; Path=/"), ("X-Between", "x"), ("Set-Cookie", "b=2")]


def test_404(misc_server):
    status, _, body = request(misc_server.port, "GET", "/nowhere")
    assert (status, body) == (404, b"not found")


def test_application_exception_is_500(misc_server):
    status, _, body = request(misc_server.port, "GET", "/raise")
    assert status == 500
    misc_server.wait_for(r"RuntimeError: application failure")


def test_header_injection_is_refused(misc_server):
    data = exchange(misc_server.port, get("/inject", "Host: h"))
    status, headers, _ = parse_response(data)
    assert data.startswith(b"HTTP/1.1 500") and status == 500
    assert b"pwned" not in data and "x-evil" not in headers
    assert b"should not be seen" not in data


def test_an_applications_connection_close_is_honoured(misc_server):
    """As under gunicorn: the answer says close and the connection closes (it
    was a 500 for a hop-by-hop field)."""
    data = exchange(misc_server.port, b"GET /hop HTTP/1.1\r\nHost: t\r\n\r\n")
    response = parse_response(data)
    assert (response.status, response.body) == (200, b"closing after this")
    assert response.fields["connection"] == "close"


def test_file_wrapper(misc_server):
    status, _, body = request(misc_server.port, "GET", "/file")
    with open(os.path.join(APPS, "wsgiapps.py"), "rb") as f:
        assert (status, body) == (200, f.read())


@pytest.mark.parametrize("threads", [1, 4])
def test_a_slow_body_goes_out_piece_by_piece_and_stops_when_the_client_leaves(tmp_path,
                                                                               threads):
    """PEP 3333: a block is not held back while the application makes the
    next. With the handler on the loop's thread, the pieces waited until the
    generator ended; and the iterable ran on, unclosed, once the client left."""
    with ForkerProcess("--threads", str(threads), app="wsgiapps:misc_app") as server:
        with connect(server.port, timeout=30) as sock:
            sock.sendall(b"GET /slow-stream?%s HTTP/1.1\r\nHost: t\r\n\r\n"
                         % urllib.parse.quote(str(tmp_path)).encode())
            seen = b""
            while b"first;" not in seen:  # it never came before the generator ended
                seen += sock.recv(4096)
            (tmp_path / "go").touch()
            while b"second;" not in seen:
                seen += sock.recv(4096)
        wait_for(lambda: (tmp_path / "closed").exists(), "the iterable closed")


def test_head_keeps_the_applications_content_length(misc_server):
    conn = http.client.HTTPConnection("127.0.0.1", misc_server.port, timeout=10)
    try:
        conn.request("HEAD", "/head")
        response = conn.getresponse()
        assert response.status == 200
        assert response.headers["Content-Length"] == "5"
        assert response.read() == b""
        conn.request("GET", "/head")  # the connection is still in sync
        response = conn.getresponse()
        assert response.read() == b"hello"
    finally:
        conn.close()


def test_iterable_close_is_called(misc_server):
    before = misc_server.stderr.count("iterable closed")
    status, _, body = request(misc_server.port, "GET", "/closed")
    assert (status, body) == (200, b"ab")
    deadline = time.monotonic() + 5
    while misc_server.stderr.count("iterable closed") <= before:
        assert time.monotonic() < deadline, misc_server.stderr
        time.sleep(0.02)


def test_iterable_close_is_called_on_client_disconnect(misc_server):
    before = misc_server.stderr.count("iterable closed")
    with socket.create_connection(("127.0.0.1", misc_server.port), timeout=10) as sock:
        sock.sendall(get("/infinite", "Host: h"))
        assert sock.recv(65536)
    deadline = time.monotonic() + 10
    while misc_server.stderr.count("iterable closed") <= before:
        assert time.monotonic() < deadline, misc_server.stderr
        time.sleep(0.05)
    assert request(misc_server.port, "GET", "/write")[0] == 200  # the worker is fine


def test_threads_overlap_blocking_handlers():
    """8 requests held in the application until all 8 are there at once: 8
    threads serve them; fewer would leave the application's barrier waiting."""
    with ForkerProcess("--interface", "wsgi", "--threads", "8", app="wsgiapps:misc_app") as server:
        request(server.port, "GET", "/sleep")  # warm up
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: request(server.port, "GET", "/together?8"),
                                    range(8)))
        assert all(status == 200 and body == b"together" for status, _, body in results), results


@pytest.mark.parametrize("interface, app", [("wsgi", "head_app:wsgi"),
                                            ("native", "head_app:native")])
@pytest.mark.parametrize("threads", ["1", "4"])
def test_head_states_the_length_a_get_would_have_or_none(interface, app, threads):
    """HEAD of a streamed body: the Content-Length a GET would carry when it is
    known (the application's, or a WSGI one-item list's), otherwise neither a
    length nor chunked framing (as gunicorn); never a Content-Length: 0 that
    a GET would contradict. The connection stays usable after each."""
    with ForkerProcess("--interface", interface, "--threads", threads, app=app) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reader = Reader(sock)
        for path in ("/gen", "/cl", "/one", "/empty-on-head"):
            sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: h\r\n\r\n"
                         f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            status, head, body = reader.response(head_only=True)
            assert (status, body) == (200, b""), path
            status, get_fields, get_body = reader.response()
            assert status == 200 and get_body, path
            if "content-length" in get_fields:
                assert head.get("content-length") == get_fields["content-length"], (path, head)
                assert "transfer-encoding" not in head, (path, head)
            else:
                assert "content-length" not in head and "transfer-encoding" not in head, \
                    (path, head)
        sock.sendall(b"HEAD /gen HTTP/1.0\r\n\r\n")
        status, head, body = reader.response(head_only=True)
        assert status == 200 and "content-length" not in head and "transfer-encoding" not in head


# -- the environ from odd or hostile input --------------------------------------------

@pytest.mark.parametrize("length, body", [(b"0", b""), (b"5", b"hello")])
def test_environ_repeated_content_length_is_one_integer(environ_server, length, body):
    """Identical repeats (the parser refuses others) are folded, never joined."""
    env = environ_of(environ_server, b"POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: " + length
                     + b"\r\nContent-Length: " + length + b"\r\nConnection: close\r\n\r\n" + body)
    assert env["CONTENT_LENGTH"] == length.decode() and env["body"] == body.decode()


@pytest.mark.parametrize("host, name, port", [("a:", "a", "80"), ("[::1]:", "[::1]", "80"),
                                              ("a:8080", "a", "8080")])
def test_environ_host_with_an_empty_port(environ_server, host, name, port):
    env = environ_of(environ_server, get("/", f"Host: {host}"))
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == (host, name, port)


@pytest.mark.parametrize("field", [
    'Forwarded: for="[::1"', 'Forwarded: for="[::1]x"', "Forwarded: for=not-an-address",
    "X-Forwarded-For: [::1", "X-Forwarded-For: not-an-address",
])
def test_environ_malformed_forwarded_address_is_ignored(environ_server, field):
    env = environ_of(environ_server, get("/", "Host: internal", field))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize("field", [
    "X-Forwarded-Host: evil.com/x y", "X-Forwarded-Host: evil.com/x", "X-Forwarded-Host: a b",
    "X-Forwarded-Host: user@evil.com", "X-Forwarded-Host: evil.com:80x", "X-Forwarded-Host: [::1",
    "X-Forwarded-Host: [zz::1]", "X-Forwarded-Host: ", 'Forwarded: host="evil.com/x"',
])
def test_environ_forwarded_host_that_is_no_host_is_ignored(forwarded_server, field):
    env = environ_of(forwarded_server, get("/", "Host: internal", field))
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("internal", "internal", "80")


@pytest.mark.parametrize("value, name, port", [
    ("public.example", "public.example", "80"), ("public.example:8443", "public.example", "8443"),
    ("[2001:db8::1]:81", "[2001:db8::1]", "81"), ("192.0.2.7", "192.0.2.7", "80"),
    ("a.example, b.example:82", "b.example", "82"), ("xn--bcher-kva.example", "xn--bcher-kva.example", "80"),
])
def test_environ_forwarded_host_that_is_a_host_is_taken(forwarded_server, value, name, port):
    env = environ_of(forwarded_server, get("/", "Host: internal", f"X-Forwarded-Host: {value}"))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (name, port)
    assert env["HTTP_HOST"] == value.rpartition(",")[2].strip()
