"""The response parser of tests/harness.py, on bytes (no server): what every
end-to-end test reads a response with must keep repeated fields, decode each
framing, and refuse what is no HTTP/1.1 response rather than guess."""

from __future__ import annotations

import pytest

from harness import ClosedEarly, MalformedResponse, Reader, known_address, parse_response

HEAD = b"HTTP/1.1 200 OK\r\nServer: s\r\n"


def test_repeated_fields_are_kept_in_order():
    response = parse_response(HEAD + b"Set-Cookie: a=1\r\nX-Other: o\r\nset-cookie: b=2\r\n"
                              b"Content-Length: 2\r\n\r\nok")
    status, fields, body = response
    assert (status, body, response[::2]) == (200, b"ok", (200, b"ok"))
    assert fields.getall("SET-COOKIE") == ["a=1", "b=2"] and "x-other" in fields
    assert [name for name, _ in fields] == ["Server", "Set-Cookie", "X-Other", "set-cookie",
                                            "Content-Length"]
    assert fields["x-other"] == "o" and fields.get("missing", "-") == "-"
    with pytest.raises(AssertionError, match="sent 2 times"):
        fields.get("set-cookie")
    with pytest.raises(AssertionError):
        _ = fields["Set-Cookie"]


def test_each_framing():
    chunked = parse_response(HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                             b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert chunked.body == b"abcde" and chunked.trailers.getall("x-trailer") == ["t"]
    assert parse_response(HEAD + b"\r\nuntil the close").body == b"until the close"
    head = parse_response(HEAD + b"Content-Length: 5\r\n\r\n", head_only=True)
    assert (head.status_line, head.fields["content-length"], head.body) == \
        ("HTTP/1.1 200 OK", "5", b"")
    assert parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").body == b""
    reader = Reader(None, b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD + b"Content-Length: 1\r\n\r\nx"
                    + HEAD + b"Content-Length: 0\r\n\r\nrest")
    assert [reader.response().status, reader.response().body, reader.response().body] == \
        [100, b"x", b""]
    assert reader.buf == b"rest"


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200\r\n\r\n",                                       # no SP after the status
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    HEAD + b"X-A : b\r\n\r\n",                                     # space before the colon
    HEAD + b"X-A: b\r\n folded\r\n\r\n",
    HEAD + b"X-A: b\rc\r\n\r\n",
    HEAD + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    HEAD + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    HEAD + b"Content-Length: +1\r\n\r\nx",
    HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",  # data past its size
    HEAD + b"Content-Length: 1\r\n\r\nxy",                        # a byte after the response
    HEAD + b"Content-Length: 0\r\n\r\n" + HEAD + b"\r\n",
], ids=["status-no-reason-sp", "status-2-digits", "not-http", "field-space", "obs-fold",
        "bare-cr", "cl-and-te", "cl-twice", "cl-sign", "te-gzip", "chunk-size", "chunk-data",
        "trailing-byte", "two-responses"])
def test_what_is_no_response_is_refused(data):
    with pytest.raises(MalformedResponse):
        parse_response(data)


@pytest.mark.parametrize("data", [
    b"", b"HTTP/1.1 200 OK\r\n", HEAD + b"Content-Length: 3\r\n\r\nab",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nab",
], ids=["nothing", "head", "body", "chunk"])
def test_a_response_cut_short_is_closed_early(data):
    with pytest.raises(ClosedEarly) as caught:
        parse_response(data)
    assert isinstance(caught.value, EOFError) and isinstance(caught.value, OSError)


@pytest.mark.parametrize("bind, address", [
    ("127.0.0.1:0", None), ("http://127.0.0.1:8080", "127.0.0.1:8080"), (":8080", "127.0.0.1:8080"),
    ("[::1]:81", "[::1]:81"), ("unix:/run/a.sock", "unix:/run/a.sock"), ("fd://3", None),
])
def test_the_address_a_bind_is_reached_at(bind, address):
    assert known_address(bind) == address
