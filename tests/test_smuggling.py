"""Parser strictness and request smuggling through real sockets (RFC 9112 §2.2,
§3, §5, §6.1, §6.3, §7.1, §11.2), and the response side: what a handler returns
cannot inject fields.

Every malformed request is sent with a valid request pipelined behind it. The
server must answer the bad one with the expected status, close the connection,
and never answer (so never parse) the request behind it: a desynchronised
framing is exactly what a smuggling attack needs."""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import ForkerProcess, Reader, connect, exchange, get, read_until_close  # noqa: E402

BEHIND = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
APP = "hardening_app:app"


@pytest.fixture(scope="module")
def server():
    with ForkerProcess("--max-body-size", "1000", app=APP) as server:
        yield server


def req(*lines: bytes, body: bytes = b"") -> bytes:
    return b"\r\n".join(lines + (b"", b"")) + body


POST = b"POST /echo HTTP/1.1"
HOST = b"Host: t"
TE = b"Transfer-Encoding: chunked"

# (id, raw request, status)
FRAMING = [
    # RFC 9112 §6.1, §6.3: Transfer-Encoding with Content-Length is a smuggling sign
    ("te-then-cl", req(POST, HOST, TE, b"Content-Length: 5", body=b"0\r\n\r\n"), 400),
    ("cl-then-te", req(POST, HOST, b"Content-Length: 5", TE, body=b"0\r\n\r\n"), 400),
    ("cl-zero-and-te", req(POST, HOST, b"Content-Length: 0", TE, body=b"0\r\n\r\n"), 400),
    # RFC 9112 §6.3 item 5, RFC 9110 §8.6: Content-Length must be one decimal number
    ("cl-duplicate-differs", req(POST, HOST, b"Content-Length: 5", b"Content-Length: 6",
                                 body=b"hello!"), 400),
    ("cl-comma-list-same", req(POST, HOST, b"Content-Length: 5, 5", body=b"hello"), 400),
    ("cl-comma-list-differs", req(POST, HOST, b"Content-Length: 5,6", body=b"hello!"), 400),
    ("cl-letters", req(POST, HOST, b"Content-Length: abc"), 400),
    ("cl-trailing-junk", req(POST, HOST, b"Content-Length: 5a", body=b"hello"), 400),
    ("cl-hex", req(POST, HOST, b"Content-Length: 0x5", body=b"hello"), 400),
    ("cl-empty", req(POST, HOST, b"Content-Length: "), 400),
    ("cl-inner-space", req(POST, HOST, b"Content-Length: 1 2", body=b"x" * 12), 400),
    ("cl-plus", req(POST, HOST, b"Content-Length: +5", body=b"hello"), 400),
    ("cl-minus", req(POST, HOST, b"Content-Length: -5", body=b"hello"), 400),
    ("cl-minus-zero", req(POST, HOST, b"Content-Length: -0"), 400),
    ("cl-overflow-2^63", req(POST, HOST, b"Content-Length: 9223372036854775808"), 400),
    ("cl-overflow-2^64", req(POST, HOST, b"Content-Length: 18446744073709551616"), 400),
    ("cl-overflow-2^64+5", req(POST, HOST, b"Content-Length: 18446744073709551621",
                               body=b"hello"), 400),
    ("cl-overflow-long", req(POST, HOST, b"Content-Length: " + b"9" * 40), 400),
    # over 18 digits is refused outright, which rules out any overflow; 18 digits
    # is a size, not a syntax error
    ("cl-19-digits", req(POST, HOST, b"Content-Length: 1000000000000000000"), 400),
    ("cl-18-digits", req(POST, HOST, b"Content-Length: 999999999999999999"), 413),
    # RFC 9112 §6.3 item 4: final coding not chunked in a request is a 400;
    # a coding we do not implement before chunked is a 501 (RFC 9112 §6.1)
    ("te-gzip-only", req(POST, HOST, b"Transfer-Encoding: gzip", body=b"hello"), 400),
    ("te-chunked-not-final", req(POST, HOST, b"Transfer-Encoding: chunked, gzip",
                                 body=b"0\r\n\r\n"), 400),
    ("te-identity", req(POST, HOST, b"Transfer-Encoding: identity", body=b"hello"), 400),
    ("te-chunked-twice", req(POST, HOST, b"Transfer-Encoding: chunked, chunked",
                             body=b"0\r\n\r\n"), 400),
    ("te-chunked-twice-fields", req(POST, HOST, TE, TE, body=b"0\r\n\r\n"), 400),
    ("te-xchunked", req(POST, HOST, b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400),
    ("te-chunked-param", req(POST, HOST, b"Transfer-Encoding: chunked;q=1",
                             body=b"0\r\n\r\n"), 400),
    ("te-empty", req(POST, HOST, b"Transfer-Encoding: ", body=b"0\r\n\r\n"), 400),
    ("te-gzip-chunked", req(POST, HOST, b"Transfer-Encoding: gzip, chunked",
                            body=b"0\r\n\r\n"), 501),
    ("te-unknown-chunked", req(POST, HOST, b"Transfer-Encoding: x-custom, chunked",
                               body=b"0\r\n\r\n"), 501),
    ("te-gzip-field-then-chunked", req(POST, HOST, b"Transfer-Encoding: gzip", TE,
                                       body=b"0\r\n\r\n"), 501),
    # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 cannot be trusted
    ("te-http10", req(b"POST /echo HTTP/1.0", HOST, TE, body=b"0\r\n\r\n"), 400),
]

CHUNKED = [
    # RFC 9112 §7.1: chunk-size = 1*HEXDIG, and it must fit
    ("chunk-size-overflow", req(POST, HOST, TE, body=b"ffffffffffffffffff\r\n"), 400),
    ("chunk-size-2^64", req(POST, HOST, TE, body=b"10000000000000000\r\nx\r\n0\r\n\r\n"), 400),
    ("chunk-size-2^63", req(POST, HOST, TE, body=b"8000000000000000\r\nx\r\n0\r\n\r\n"), 400),
    ("chunk-size-junk", req(POST, HOST, TE, body=b"5x\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-hex-prefix", req(POST, HOST, TE, body=b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-minus", req(POST, HOST, TE, body=b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-plus", req(POST, HOST, TE, body=b"+5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-leading-space", req(POST, HOST, TE, body=b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-trailing-space", req(POST, HOST, TE, body=b"5 \r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-missing", req(POST, HOST, TE, body=b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-bare-lf", req(POST, HOST, TE, body=b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-data-too-long", req(POST, HOST, TE, body=b"5\r\nhelloXX\r\n0\r\n\r\n"), 400),
    ("chunk-data-bare-lf", req(POST, HOST, TE, body=b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk-data-bare-cr", req(POST, HOST, TE, body=b"5\r\nhello\r0\r\n\r\n"), 400),
    ("chunk-ext-empty", req(POST, HOST, TE, body=b"5;\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-ctl", req(POST, HOST, TE, body=b"5;a=\x01\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-bare-lf", req(POST, HOST, TE, body=b"5;a=b\nhello\r\n0\r\n\r\n"), 400),
    ("last-chunk-bare-lf", req(POST, HOST, TE, body=b"5\r\nhello\r\n0\n\r\n"), 400),
    ("final-crlf-bare-lf", req(POST, HOST, TE, body=b"5\r\nhello\r\n0\r\n\n"), 400),
    ("trailer-space-before-colon", req(POST, HOST, TE, body=b"0\r\nX : y\r\n\r\n"), 400),
    ("trailer-obs-fold", req(POST, HOST, TE, body=b"0\r\nX: y\r\n z\r\n\r\n"), 400),
    ("trailer-nul", req(POST, HOST, TE, body=b"0\r\nX: \x00\r\n\r\n"), 400),
]

FIELDS = [
    # RFC 9112 §5.2: obs-fold is rejected
    ("obs-fold-space", req(b"GET / HTTP/1.1", HOST, b"X-A: a", b" folded"), 400),
    ("obs-fold-tab", req(b"GET / HTTP/1.1", HOST, b"X-A: a", b"\tfolded"), 400),
    ("obs-fold-first-line", req(b"GET / HTTP/1.1", b" Host: t"), 400),
    ("obs-fold-content-length", req(POST, HOST, b"Content-Length:", b" 5", body=b"hello"), 400),
    # RFC 9112 §5.1: no whitespace between field name and colon
    ("space-before-colon", req(b"GET / HTTP/1.1", b"Host : t"), 400),
    ("tab-before-colon", req(b"GET / HTTP/1.1", HOST, b"X-A\t: a"), 400),
    ("space-before-colon-cl", req(POST, HOST, b"Content-Length : 5", body=b"hello"), 400),
    ("space-before-colon-te", req(POST, HOST, b"Transfer-Encoding : chunked",
                                  body=b"0\r\n\r\n"), 400),
    # RFC 9110 §5.1, §5.6.2: field names are tokens
    ("name-at-sign", req(b"GET / HTTP/1.1", HOST, b"X@A: a"), 400),
    ("name-paren", req(b"GET / HTTP/1.1", HOST, b"X(A): a"), 400),
    ("name-quote", req(b"GET / HTTP/1.1", HOST, b'X"A: a'), 400),
    ("name-inner-space", req(b"GET / HTTP/1.1", HOST, b"X A: a"), 400),
    ("name-empty", req(b"GET / HTTP/1.1", HOST, b": a"), 400),
    ("name-non-ascii", req(b"GET / HTTP/1.1", HOST, b"X-\xe9: a"), 400),
    ("line-without-colon", req(b"GET / HTTP/1.1", HOST, b"X-A"), 400),
    # RFC 9110 §5.5: field values are VCHAR, obs-text, SP, HTAB
    ("value-nul", req(b"GET / HTTP/1.1", HOST, b"X-A: a\x00b"), 400),
    ("value-bare-cr", req(b"GET / HTTP/1.1", HOST, b"X-A: a\rb"), 400),
    ("value-ctl", req(b"GET / HTTP/1.1", HOST, b"X-A: a\x01b"), 400),
    ("value-esc", req(b"GET / HTTP/1.1", HOST, b"X-A: a\x1bb"), 400),
    ("value-vt", req(b"GET / HTTP/1.1", HOST, b"X-A: a\x0bb"), 400),
    ("value-del", req(b"GET / HTTP/1.1", HOST, b"X-A: a\x7fb"), 400),
    ("name-nul", req(b"GET / HTTP/1.1", HOST, b"X-\x00A: a"), 400),
    # RFC 9112 §3.2: exactly one Host in HTTP/1.1
    ("host-missing", req(b"GET / HTTP/1.1"), 400),
    ("host-twice", req(b"GET / HTTP/1.1", HOST, b"Host: u"), 400),
]

REQUEST_LINE = [
    # RFC 9112 §3: method is a token, single SP separators, no controls
    ("method-paren", req(b"GE(T / HTTP/1.1", HOST), 400),
    ("method-at-sign", req(b"G@T / HTTP/1.1", HOST), 400),
    ("method-nul", req(b"G\x00T / HTTP/1.1", HOST), 400),
    ("method-del", req(b"GET\x7f / HTTP/1.1", HOST), 400),
    ("method-empty", req(b" / HTTP/1.1", HOST), 400),
    # RFC 9110 §9.3.6: an origin server does not tunnel; a 2xx would open one
    ("connect", req(b"CONNECT t:443 HTTP/1.1", b"Host: t:443"), 501),
    ("connect-with-body", req(b"CONNECT t:25 HTTP/1.1", b"Host: t:25", b"Content-Length: 3",
                              body=b"BOO"), 501),
    ("two-spaces", req(b"GET  / HTTP/1.1", HOST), 400),
    ("tab-separator", req(b"GET\t/ HTTP/1.1", HOST), 400),
    ("target-space", req(b"GET /a b HTTP/1.1", HOST), 400),
    ("target-nul", req(b"GET /\x00 HTTP/1.1", HOST), 400),
    ("target-ctl", req(b"GET /a\x01b HTTP/1.1", HOST), 400),
    ("target-del", req(b"GET /a\x7fb HTTP/1.1", HOST), 400),
    ("target-bare-cr", req(b"GET /\r HTTP/1.1", HOST), 400),
    # RFC 9112 §3.2: origin-form and absolute-form have no fragment (user agents
    # never send one); a proxy that drops it and an application that would see
    # it in the query must not disagree on the target: refused (SECURITY.md)
    ("target-fragment", req(b"GET /p?q=1#sec HTTP/1.1", HOST), 400),
    ("target-fragment-path", req(b"GET /p#sec HTTP/1.1", HOST), 400),
    ("target-fragment-empty", req(b"GET /p# HTTP/1.1", HOST), 400),
    ("target-fragment-long", req(b"GET /" + b"a" * 40 + b"?" + b"b" * 40 + b"#c HTTP/1.1", HOST),
     400),
    ("target-fragment-absolute", req(b"GET http://t/p#sec HTTP/1.1", HOST), 400),
    ("line-bare-cr", b"GET / HTTP/1.1\rHost: t\r\n\r\n", 400),
    ("no-version", req(b"GET /", HOST), 400),
    ("trailing-space", req(b"GET / HTTP/1.1 ", HOST), 400),
    # RFC 9112 §2.3: HTTP-version is case-sensitive, one digit each side
    ("version-lowercase", req(b"GET / http/1.1", HOST), 400),
    ("version-two-digits", req(b"GET / HTTP/1.10", HOST), 400),
    ("version-no-minor", req(b"GET / HTTP/1", HOST), 400),
    ("version-junk", req(b"GET / HTTP/1.1x", HOST), 400),
    # well-formed, of a major version other than 1: 505 (RFC 9110 §15.6.6);
    # HTTP/1.2 is served as HTTP/1.1 (RFC 9110 §2.5, test_engine.py)
    ("version-2.0", req(b"GET / HTTP/2.0", HOST), 505),
    ("version-3.0", req(b"GET / HTTP/3.0", HOST), 505),
    ("version-0.9", req(b"GET / HTTP/0.9", HOST), 505),
]

# Bare LF as a line terminator: RFC 9112 §2.2 lets a recipient accept it. forker
# rejects it (400) everywhere, so that no two parsers on a request's path (a
# proxy and forker) can disagree about where a line ends. See SECURITY.md.
BARE_LF = [
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: t\n\n", 400),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400),
    ("bare-lf-field-line", b"GET / HTTP/1.1\r\nHost: t\nX-A: a\r\n\r\n", 400),
    ("bare-lf-final-line", b"GET / HTTP/1.1\r\nHost: t\r\n\n", 400),
    ("bare-lf-before-request", b"\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("bare-lf-hides-cl", b"POST /echo HTTP/1.1\r\nHost: t\r\nX-A: a\nContent-Length: 5\r\n\r\n"
                         b"hello", 400),
]

CASES = FRAMING + CHUNKED + FIELDS + REQUEST_LINE + BARE_LF
IDS = [case[0] for case in CASES]


def check_refused(data: bytes, status: int) -> None:
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:300]
    assert data.count(b"HTTP/1.") == 1, f"more than one response: {data!r}"
    assert b"smuggled" not in data
    head = data.partition(b"\r\n\r\n")[0]
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"


@pytest.mark.parametrize("raw, status", [case[1:] for case in CASES], ids=IDS)
def test_refused_and_closed_with_pipelined_request(server, raw, status):
    """Bad request and the pipelined one in the same segment."""
    check_refused(exchange(server.port, raw + BEHIND), status)


@pytest.mark.parametrize("raw, status", [case[1:] for case in CASES], ids=IDS)
def test_refused_and_closed_with_late_request(server, raw, status):
    """The request behind arrives in a later segment, once the server had its
    chance to answer: it is drained, never parsed."""
    with connect(server.port) as sock:
        sock.sendall(raw)
        time.sleep(0.05)
        try:
            sock.sendall(BEHIND)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = read_until_close(sock, 5)
    assert closed
    check_refused(data, status)


def test_errors_leave_the_server_serving(server):
    assert get(server.port, "/pid")[0] == 200


# -- controls: the method above does see a pipelined request ------------------------

@pytest.mark.parametrize("raw", [
    req(b"GET / HTTP/1.1", HOST),
    req(POST, HOST, b"Content-Length: 5", body=b"hello"),
    req(POST, HOST, TE, body=b"5\r\nhello\r\n0\r\n\r\n"),
    req(POST, HOST, TE, body=b"5;name=\"quoted value\"\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
    req(POST, HOST, b"Transfer-Encoding: Chunked ", body=b"5\r\nhello\r\n0\r\n\r\n"),
    # RFC 9110 §8.6: identical repeated Content-Length values may be accepted
    req(POST, HOST, b"Content-Length: 5", b"Content-Length: 5", body=b"hello"),
    req(POST, HOST, b"Content-Length: 005", body=b"hello"),
    # RFC 9112 §2.2: empty lines before the request line are skipped
    b"\r\n\r\n" + req(b"GET / HTTP/1.1", HOST),
], ids=["get", "content-length", "chunked", "chunk-ext-and-trailer", "te-case-and-ows",
        "cl-duplicate-same", "cl-leading-zeros", "leading-crlf"])
def test_valid_request_then_pipelined_request_both_answered(server, raw):
    with connect(server.port) as sock:
        sock.sendall(raw + BEHIND.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        reader = Reader(sock)
        first = reader.response()
        second = reader.response()
        assert read_until_close(sock, 3) == (b"", True)
    assert first[0] == 200
    assert second[0] == 200 and second[2] == b"path=/smuggled"


# -- the response side -------------------------------------------------------------

@pytest.mark.parametrize("target", ["/inject/value", "/inject/lf", "/inject/name",
                                    "/inject/reason"])
def test_handler_cannot_inject_fields(server, target):
    data = exchange(server.port, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target.encode())
    assert data.startswith(b"HTTP/1.1 500 "), data[:300]
    assert b"pwned" not in data and b"Set-Cookie" not in data
    assert data.count(b"HTTP/1.") == 1


@pytest.mark.parametrize("status", ["0", "-1", "99", "100", "101", "199", "600", "999", "1000",
                                    "20000", "abc"])
def test_invalid_status_from_handler_is_500(server, status):
    data = exchange(server.port, b"GET /status?%s HTTP/1.1\r\nHost: t\r\n\r\n" % status.encode())
    assert data.startswith(b"HTTP/1.1 500 "), data[:300]
    assert data.count(b"HTTP/1.") == 1


@pytest.mark.parametrize("status", ["200", "204", "418", "599"])
def test_valid_status_from_handler_is_sent(server, status):
    data = exchange(server.port, b"GET /status?%s HTTP/1.1\r\nHost: t\r\n"
                    b"Connection: close\r\n\r\n" % status.encode())
    assert data.startswith(b"HTTP/1.1 %s " % status.encode()), data[:300]
