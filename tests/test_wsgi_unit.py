"""forker.wsgi.WSGIHandler called directly with a stand-in request: the
environ it builds and the PEP 3333 rules it enforces. The same behaviour
through real sockets is in test_wsgi_server.py."""

from __future__ import annotations

import io
import logging
import os
import sys
import wsgiref.validate

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from wsgi_request import Request  # noqa: E402

from forker.response import Response  # noqa: E402
from forker.wsgi import FileWrapper, WSGIHandler  # noqa: E402


@pytest.fixture(autouse=True)
def propagate_forker_logs():
    """Let caplog see forker's records (logs.setup turns propagation off)."""
    logger = logging.getLogger("forker")
    saved = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = saved


def capture(**config):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        seen["body"] = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    config.setdefault("workers", 1)
    return WSGIHandler(app, config), seen


def environ_for(request, **config):
    handler, seen = capture(**config)
    response = handler(request)
    assert response.status == 200, response.body
    return seen


def body_of(response):
    if isinstance(response.body, (bytes, str)):
        return response.body
    try:
        return b"".join(response.body)
    finally:
        close = getattr(response.body, "close", None)
        if close:
            close()


# -- environ --------------------------------------------------------------------

def test_environ_basics():
    env = environ_for(Request("POST", "/submit?a=1&b=2", headers=[
        ("Host", "example.com"), ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", "7"), ("User-Agent", "t/1")], body=b"x=1&y=2"))
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/submit"
    assert env["QUERY_STRING"] == "a=1&b=2"
    assert env["RAW_URI"] == env["REQUEST_URI"] == "/submit?a=1&b=2"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "example.com" and env["SERVER_PORT"] == "80"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"] == "40000"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "7"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_USER_AGENT"] == "t/1"
    assert env["body"] == b"x=1&y=2"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.run_once"] is False
    assert env["wsgi.file_wrapper"] is FileWrapper
    assert env["SERVER_SOFTWARE"].startswith("forker/")


@pytest.mark.parametrize("target, path_info, query", [
    ("/a%2Fb", "/a/b", ""),                      # %2F decodes; RAW_URI keeps it
    ("/caf%C3%A9", "/caf\xc3\xa9", ""),          # UTF-8 bytes, latin-1 decoded (PEP 3333)
    ("/caf\xc3\xa9", "/caf\xc3\xa9", ""),        # raw non-ASCII bytes pass through the same
    ("/%7Euser/%20x", "/~user/ x", ""),
    ("/bad%zz%", "/bad%zz%", ""),                # malformed escapes stay as they are
    ("/x?", "/x", ""),                           # empty query
    ("/x?a=%20&b", "/x", "a=%20&b"),             # the query is not decoded
    ("/x?a=1?b=2", "/x", "a=1?b=2"),
    ("//double//slash", "//double//slash", ""),
])
def test_path_info_and_query(target, path_info, query):
    env = environ_for(Request(target=target))
    assert env["PATH_INFO"] == path_info
    assert env["QUERY_STRING"] == query
    assert env["RAW_URI"] == target


def test_absolute_form_target_overrides_host():
    env = environ_for(Request(target="http://other.example:8000/p/q?z=9",
                              headers=[("Host", "example.com")]))
    assert env["PATH_INFO"] == "/p/q"
    assert env["QUERY_STRING"] == "z=9"
    assert env["HTTP_HOST"] == "other.example:8000"
    assert env["SERVER_NAME"] == "other.example" and env["SERVER_PORT"] == "8000"
    assert env["RAW_URI"] == "http://other.example:8000/p/q?z=9"


def test_absolute_form_without_path_is_root():
    env = environ_for(Request(target="http://other.example", headers=[("Host", "x")]))
    assert env["PATH_INFO"] == "/"
    assert env["QUERY_STRING"] == ""


def test_repeated_headers_are_joined():
    env = environ_for(Request(headers=[
        ("Host", "h"), ("Accept", "text/html"), ("X-Multi", "1"), ("x-multi", "2"),
        ("X-MULTI", "3"), ("Accept", "*/*"), ("Cookie", "a=1"), ("cookie", "b=2"),
        ("X-Same", "1"), ("X-Same", "1")]))  # one str object twice
    assert env["HTTP_X_MULTI"] == "1, 2, 3"
    assert env["HTTP_X_SAME"] == "1, 1"
    assert env["HTTP_ACCEPT"] == "text/html, */*"
    assert env["HTTP_COOKIE"] == "a=1; b=2"  # cookies join with "; " (RFC 6265 5.4)


def test_headers_with_underscores_are_dropped():
    env = environ_for(Request(headers=[("Host", "h"), ("X_Forwarded_For", "6.6.6.6"),
                                       ("X-Real", "1")]))
    assert "HTTP_X_FORWARDED_FOR" not in env
    assert env["HTTP_X_REAL"] == "1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_http10_without_host_uses_listener_address():
    env = environ_for(Request(version="HTTP/1.0", headers=[], server_addr="10.1.2.3",
                              server_port=9000))
    assert "HTTP_HOST" not in env
    assert env["SERVER_NAME"] == "10.1.2.3" and env["SERVER_PORT"] == "9000"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


@pytest.mark.parametrize("host, name, port", [
    ("[::1]:8443", "[::1]", "8443"),
    ("[::1]", "[::1]", "80"),
    ("example.com:", "example.com", "80"),  # an empty port (RFC 3986 §3.2.3)
    ("EXAMPLE.com:65535", "EXAMPLE.com", "65535"),
])
def test_server_name_from_host(host, name, port):
    env = environ_for(Request(headers=[("Host", host)]))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (name, port)


def test_unix_socket_peer():
    env = environ_for(Request(remote_addr="", remote_port=0))
    assert env["REMOTE_ADDR"] == "" and env["REMOTE_PORT"] == "0"
    env = environ_for(Request(version="HTTP/1.0", headers=[], remote_addr="", remote_port=0,
                              server_addr="/run/app.sock", server_port=0))
    assert env["SERVER_NAME"] == "localhost" and env["SERVER_PORT"] == "0"


@pytest.mark.parametrize("target, script, path", [
    ("/app/x/y", "/app", "/x/y"),
    ("/app", "/app", ""),
    ("/application/x", "/app", "/application/x"),   # not under the prefix: unchanged
    ("/other", "/app", "/other"),
])
def test_root_path(target, script, path):
    env = environ_for(Request(target=target), root_path="/app/")
    assert env["SCRIPT_NAME"] == script
    assert env["PATH_INFO"] == path


def test_multithread_and_multiprocess_are_truthful():
    env = environ_for(Request(), workers=1, threads=1)
    assert env["wsgi.multithread"] is False and env["wsgi.multiprocess"] is False
    env = environ_for(Request(), workers=3, threads=4)
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True


def test_wsgi_input_file_interface():
    lines = []

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        lines.append(stream.readline())
        lines.append(stream.readline(3))
        lines.append(stream.read(2))
        lines.append(stream.readlines())
        lines.append(stream.read())
        start_response("200 OK", [])
        return []

    WSGIHandler(app, {"workers": 1})(Request("POST", body=b"one\ntwo\nthree\nfour\n"))
    assert lines == [b"one\n", b"two", b"\nt", [b"hree\n", b"four\n"], b""]

    seen = []

    def iterating(environ, start_response):
        seen.extend(environ["wsgi.input"])
        start_response("200 OK", [])
        return []

    WSGIHandler(iterating, {"workers": 1})(Request("POST", body=b"a\nb\n"))
    assert seen == [b"a\n", b"b\n"]


def test_wsgi_errors_goes_to_the_error_log(caplog):
    def app(environ, start_response):
        environ["wsgi.errors"].write("first line\nsecond ")
        environ["wsgi.errors"].write("part\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [])
        return []

    with caplog.at_level(logging.ERROR, logger="forker"):
        WSGIHandler(app, {"workers": 1})(Request())
    messages = [r.getMessage() for r in caplog.records]
    assert "first line" in messages and "second part" in messages


# -- proxies ------------------------------------------------------------------------

def test_forwarded_headers_from_a_trusted_peer():
    env = environ_for(Request(headers=[
        ("Host", "internal:8000"), ("X-Forwarded-For", "203.0.113.7, 10.0.0.2"),
        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "www.example.org")]),
        forwarded_allow_ips="127.0.0.1,10.0.0.0/8", forwarded_host=True)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "www.example.org"
    assert env["SERVER_NAME"] == "www.example.org" and env["SERVER_PORT"] == "443"


@pytest.mark.parametrize("field", [("X-Forwarded-Host", "www.example.org:8443"),
                                   ("Forwarded", 'proto=https;host="www.example.org:8443"')])
def test_the_forwarded_host_is_ignored_by_default_as_in_gunicorn(field):
    env = environ_for(Request(headers=[("Host", "internal:8000"), field,
                                       ("X-Forwarded-Proto", "https")]))
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == \
        ("internal:8000", "internal", "8000")


def test_forwarded_headers_from_an_untrusted_peer_are_ignored():
    headers = [("Host", "internal"), ("X-Forwarded-For", "203.0.113.7"),
               ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil"),
               ("Forwarded", "for=1.2.3.4;proto=https")]
    env = environ_for(Request(headers=headers, remote_addr="192.0.2.1"))
    assert env["REMOTE_ADDR"] == "192.0.2.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "internal"
    # The raw headers are still visible to the application.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"


def test_forwarded_allow_ips_star_trusts_every_peer_for_one_hop():
    """"*" trusts whichever peer comes, not the addresses in its fields: the
    client is the address the peer saw (the rightmost), not the leftmost, which
    a client writes itself (a proxy appends to the X-Forwarded-For it got)."""
    env = environ_for(Request(headers=[("Host", "h"), ("X-Forwarded-For", "6.6.6.6, 192.0.2.9"),
                                       ("X-Forwarded-Proto", "https")],
                              remote_addr="192.0.2.1"), forwarded_allow_ips="*")
    assert env["REMOTE_ADDR"] == "192.0.2.9" and env["wsgi.url_scheme"] == "https"
    env = environ_for(Request(headers=[("Host", "h"), ("Forwarded", "for=6.6.6.6, for=192.0.2.9")],
                              remote_addr="192.0.2.1"), forwarded_allow_ips="*")
    assert env["REMOTE_ADDR"] == "192.0.2.9"


def test_x_forwarded_for_skips_trusted_hops_from_the_right():
    env = environ_for(Request(headers=[("Host", "h"),
                                       ("X-Forwarded-For", "6.6.6.6, 198.51.100.1, 10.0.0.3")],
                              remote_addr="10.0.0.1"), forwarded_allow_ips="10.0.0.0/8")
    assert env["REMOTE_ADDR"] == "198.51.100.1"  # 6.6.6.6 is only a client's claim


def test_x_forwarded_fields_win_over_a_forwarded_field():
    """A proxy that sets X-Forwarded-For (nginx's usual configuration) passes
    the client's own Forwarded field through: with both, Forwarded is not
    believed (a client could claim any address and https)."""
    env = environ_for(Request(headers=[
        ("Host", "internal"), ("Forwarded", "for=6.6.6.6;proto=https;host=evil"),
        ("X-Forwarded-For", "198.51.100.1")]), forwarded_host=True)
    assert env["REMOTE_ADDR"] == "198.51.100.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "internal"
    env = environ_for(Request(headers=[
        ("Host", "internal"), ("Forwarded", "for=6.6.6.6;proto=https"),
        ("X-Forwarded-Proto", "http")]))
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"


def test_rfc7239_forwarded():
    env = environ_for(Request(headers=[
        ("Host", "internal"),
        ("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;host="example.com:8443"')]),
        forwarded_host=True)
    assert env["REMOTE_ADDR"] == "2001:db8:cafe::17"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com:8443"
    assert env["SERVER_NAME"] == "example.com" and env["SERVER_PORT"] == "8443"


def test_rfc7239_forwarded_chain_and_repeated_fields():
    env = environ_for(Request(headers=[
        ("Host", "h"), ("Forwarded", "for=192.0.2.43;proto=https"),
        ("Forwarded", "for=127.0.0.1;proto=http")]))
    # The element added by our trusted proxy names another trusted hop, so
    # the client is the one before it.
    assert env["REMOTE_ADDR"] == "192.0.2.43"
    assert env["wsgi.url_scheme"] == "https"


def test_forwarded_ipv4_mapped_peer_matches_network():
    env = environ_for(Request(headers=[("Host", "h"), ("X-Forwarded-For", "198.51.100.2")],
                              remote_addr="::ffff:10.1.1.1"), forwarded_allow_ips="10.0.0.0/8")
    assert env["REMOTE_ADDR"] == "198.51.100.2"


# -- responses ------------------------------------------------------------------------

def run(app, request=None, **config):
    config.setdefault("workers", 1)
    return WSGIHandler(app, config)(request or Request())


def test_list_body_becomes_bytes():
    def app(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain"), ("Content-Length", "5"),
                                       ("X-A", "1")])
        return [b"he", b"llo"]

    response = run(app)
    assert isinstance(response, Response)
    assert response.status == 201 and response.reason is None
    assert response.body == b"hello"
    assert response.headers == [("Content-Type", "text/plain"), ("Content-Length", "5"),
                                ("X-A", "1")]


def test_head_answer_keeps_the_applications_content_length():
    def app(environ, start_response):  # a HEAD answer: the GET length, no body
        start_response("200 OK", [("Content-Length", "1234")])
        return []

    response = run(app, Request("HEAD"))
    assert ("Content-Length", "1234") in response.headers
    assert response.body == b""


def test_custom_reason_phrase():
    def app(environ, start_response):
        start_response("299 Fine Thanks", [])
        return [b""]

    response = run(app)
    assert (response.status, response.reason) == (299, "Fine Thanks")


def test_generator_calling_start_response_lazily():
    closed = []

    def app(environ, start_response):
        try:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b""
            yield b"a"
            yield b"b"
        finally:
            closed.append(True)

    response = run(app)
    assert response.status == 200
    assert not closed
    assert body_of(response) == b"ab"
    assert closed == [True]


def test_generator_with_only_empty_chunks_is_sent_whole_and_closed():
    closed = []

    def app(environ, start_response):
        try:
            start_response("200 OK", [])
            yield b""
        finally:
            closed.append(True)

    response = run(app)
    assert response.body == b""  # exhausted before any data: bytes, closed already
    assert closed == [True]


def test_close_is_called_for_a_list_like_result():
    closed = []

    class Result(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [])
        return Result([b"x"])

    response = run(app)
    assert body_of(response) == b"x"
    assert closed == [True]


def test_close_is_called_when_iteration_fails_before_the_first_chunk(caplog):
    closed = []

    class Result:
        def __iter__(self):
            raise RuntimeError("boom")
            yield b""

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [])
        return Result()

    response = run(app)
    assert response.status == 500
    assert closed == [True]


def test_write_callable():
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"then ")
        return [b"returned"]

    assert body_of(run(app)) == b"written then returned"

    def streaming(environ, start_response):
        write = start_response("200 OK", [])
        write(b"1")

        def gen():
            yield b"2"
            write(b"3")
            yield b"4"
        return gen()

    assert body_of(run(streaming)) == b"1234"


def test_missing_start_response_is_an_error():
    def app(environ, start_response):
        return [b"no status"]

    assert run(app).status == 500


def test_start_response_twice_without_exc_info_is_an_error():
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"x"]

    assert run(app).status == 500


def test_exc_info_before_headers_are_sent_replaces_them():
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
        return [b"sorry"]

    response = run(app)
    assert response.status == 503
    assert response.headers == [("X-Second", "1")]
    assert body_of(response) == b"sorry"


def test_exc_info_after_headers_are_sent_reraises():
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"first"
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Oops", [], sys.exc_info())
        yield b"never"

    response = run(app)
    iterator = iter(response.body)
    assert next(iterator) == b"first"
    with pytest.raises(KeyError):
        next(iterator)
    response.body.close()


@pytest.mark.parametrize("headers", [
    [("X-Bad", "a\r\nSet-Cookie: evil=1")],
    [("X-Bad", "a\nb")],
    [("X-Bad", "nul\x00")],
    [("Bad Name", "v")],
    [("Bad:Name", "v")],
    [("X-Unicode", "\u2603")],
    [("X-Bytes", b"v")],
    ("X-Tuple", "not a list"),  # a tuple of fields is taken, but these are no pairs
])
def test_bad_response_headers_give_500(headers, caplog):
    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b"x"]

    with caplog.at_level(logging.ERROR, logger="forker"):
        response = run(app)
    assert response.status == 500
    assert body_of(response) == b"500 Internal Server Error\n"  # as the engine's own 500
    assert any("handling GET /" in r.getMessage() for r in caplog.records)


def test_hop_by_hop_fields_are_dropped_with_a_warning_as_gunicorn_does(caplog):
    """PEP 3333 forbids them; gunicorn drops them, and an application that
    runs on it must not get a 500 here (it did). Connection and
    Transfer-Encoding go on to the engine, which frames the answer and closes
    after it on close; a tuple of fields is taken too."""
    def app(environ, start_response):
        start_response("200 OK", (("Keep-Alive", "timeout=5"), ("X-Kept", "1"),
                                  ("Upgrade", "h2c"), ("Connection", "close")))
        return [b"x"]

    with caplog.at_level(logging.WARNING, logger="forker"):
        response = run(app)
    assert response.status == 200
    assert [name for name, _ in response.headers] == ["X-Kept", "Connection"]
    assert "dropped the hop-by-hop header 'Keep-Alive'" in caplog.text
    assert "dropped the hop-by-hop header 'Upgrade'" in caplog.text


@pytest.mark.parametrize("status", ["200", "OK", "20 OK", "200 OK\r\nX: y", 200, "2000 OK"])
def test_bad_status_gives_500(status):
    def app(environ, start_response):
        start_response(status, [])
        return [b"x"]

    response = run(app)
    expected = 200 if status == "200" else 500  # a bare code is accepted
    assert response.status == expected


def test_application_exception_gives_500_and_is_logged(caplog):
    def app(environ, start_response):
        raise ZeroDivisionError("nope")

    with caplog.at_level(logging.ERROR, logger="forker"):
        assert run(app).status == 500
    assert "ZeroDivisionError" in caplog.text


def test_non_bytes_body_gives_500():
    def app(environ, start_response):
        start_response("200 OK", [])
        return ["text"]

    assert run(app).status == 500


def test_file_wrapper_is_passed_to_the_engine(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 20000)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "20000")])
        return environ["wsgi.file_wrapper"](open(path, "rb"), 4096)

    response = run(app)
    assert type(response.body) is FileWrapper
    assert response.body.filelike.fileno() >= 0
    chunks = list(response.body)
    assert [len(c) for c in chunks] == [4096] * 4 + [3616]
    response.body.close()
    assert response.body.filelike.closed


def test_file_wrapper_over_a_non_file():
    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"abcdef"), 4)

    assert body_of(run(app)) == b"abcdef"


# -- wsgiref.validate -------------------------------------------------------------

def test_validator_accepts_the_environ_and_the_response_path():
    def app(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.errors"].write("")
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body) + 2))])
        return [b"<<", body] if body else [b"<>"]

    validated = wsgiref.validate.validator(app)
    for request in (Request(), Request("POST", "/p?x", body=b"data",
                                       headers=[("Host", "h"), ("Content-Type", "text/plain"),
                                                ("Content-Length", "4")]),
                    Request(target="http://h:81"), Request(version="HTTP/1.0", headers=[])):
        response = run(validated, request)
        assert response.status == 200, request.target
        body_of(response)


def test_validator_with_streaming_generator():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(3):
            yield b"%d" % i

    response = run(wsgiref.validate.validator(app))
    assert body_of(response) == b"012"
