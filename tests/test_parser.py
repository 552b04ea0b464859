"""The request corpus in tests/requests, and the parser limits, through forker._parser.

Every valid request is also fed split at every byte and one byte at a time, the
way a connection receives it: the head parser is called on the growing buffer
with last_len set, then the chunked decoder with each new piece of the body.
"""

import pathlib
import runpy

import pytest
from forker._parser import ChunkedDecoder, ParseError, parse_request

CORPUS = pathlib.Path(__file__).parent / "requests"


def load(kind):
    cases = []
    for http in sorted((CORPUS / kind).glob("*.http")):
        expectation = runpy.run_path(str(http.with_suffix(".py")))
        cases.append(pytest.param(http.read_bytes(), expectation, id=f"{kind}/{http.stem}"))
    return cases


def receive(data, cuts):
    """Processes `data` arriving in pieces that end at each of `cuts` (the last
    being len(data)). Returns (head, body, rest): rest is what follows the
    request, None if the request is still incomplete. Raises ParseError."""
    head, decoder, body, last, pos = None, None, b"", 0, 0
    for end in cuts:
        if head is None:
            head = parse_request(data[:end], last)
            last = end
            if head is None:
                continue
            pos = head["consumed"]
            if not head["chunked"]:
                length = head["content_length"] or 0
                return head, data[pos : pos + length], data[pos + length :]
            decoder = ChunkedDecoder()
        decoded, done, leftover = decoder.feed(data[pos:end])
        pos = end
        body += decoded
        if done:
            return head, body, leftover + data[end:]
    return head, body, None


def every_split(data):
    yield [len(data)]
    for i in range(1, len(data)):
        yield [i, len(data)]
    yield range(1, len(data) + 1)


@pytest.mark.parametrize("data, expectation", load("valid"))
def test_valid(data, expectation):
    want = dict(expectation["request"])
    body = want.pop("body")
    consumed = want.pop("consumed", None)

    head, got_body, rest = receive(data, [len(data)])
    assert {k: head[k] for k in want} == want
    assert got_body == body
    if consumed is None:
        assert rest == b""
    else:
        assert head["consumed"] == consumed and rest == data[consumed:]

    for cuts in every_split(data):
        assert receive(data, cuts) == (head, got_body, rest), cuts


@pytest.mark.parametrize("data, expectation", load("invalid"))
def test_invalid(data, expectation):
    for cuts in every_split(data):
        with pytest.raises(ParseError) as err:
            receive(data, cuts)
        assert err.value.status == expectation["status"], cuts


def test_corpus_size():
    assert len(load("valid")) >= 40 and len(load("invalid")) >= 60


def test_need_more():
    assert parse_request(b"") is None
    assert parse_request(b"\r\n") is None
    assert parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n") is None
    assert parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r") is None


REQUEST_30 = b"GET /" + b"a" * 16 + b" HTTP/1.1"  # 30 bytes


def test_request_line_limit():
    head = REQUEST_30 + b"\r\nHost: h\r\n\r\n"
    assert parse_request(head, max_request_line=30)["target"] == b"/" + b"a" * 16
    with pytest.raises(ParseError) as err:
        parse_request(head, max_request_line=29)
    assert err.value.status == 414 and err.value.code == -3
    # reported before the line ends, counting a pending CR as part of the CRLF
    assert parse_request(REQUEST_30 + b"\r", max_request_line=30) is None
    with pytest.raises(ParseError):
        parse_request(REQUEST_30 + b"x", max_request_line=30)
    with pytest.raises(ParseError):
        parse_request(REQUEST_30 + b"x", last_len=20, max_request_line=30)


def test_request_line_without_end():
    line = b"GET /" + b"a" * (1 << 20)
    with pytest.raises(ParseError) as err:
        parse_request(line)
    assert err.value.status == 414
    assert parse_request(line[:8190]) is None
    with pytest.raises(ParseError):
        parse_request(line[:8191], last_len=8190)


def test_field_size_limit():
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 17 + b"\r\n\r\n"  # field line of 20
    assert parse_request(head, max_field_size=20)["headers"][1] == (b"X", b"v" * 17)
    with pytest.raises(ParseError) as err:
        parse_request(head, max_field_size=19)
    assert err.value.status == 431 and err.value.code == -4
    partial = b"GET / HTTP/1.1\r\nX: " + b"v" * 100
    with pytest.raises(ParseError):
        parse_request(partial, max_field_size=50)
    with pytest.raises(ParseError):
        parse_request(partial, last_len=len(partial) - 1, max_field_size=50)
    assert parse_request(partial, last_len=len(partial) - 1, max_field_size=200) is None


def test_default_limits():
    # a limit of 0 is the built-in 8190
    line = b"GET /" + b"a" * (8190 - 14) + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    assert parse_request(line, max_request_line=0) is not None
    with pytest.raises(ParseError):
        parse_request(line.replace(b"/a", b"/aa"), max_request_line=0)
    field = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * (8190 - 3) + b"\r\n\r\n"
    assert parse_request(field, max_field_size=0) is not None
    with pytest.raises(ParseError):
        parse_request(field.replace(b"X: v", b"X: vv"), max_field_size=0)


def test_field_count_limit():
    head = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"
    assert len(parse_request(head, max_fields=3)["headers"]) == 3
    with pytest.raises(ParseError) as err:
        parse_request(head, max_fields=2)
    assert err.value.status == 431 and err.value.code == -5
    # as soon as a field line starts past the capacity
    with pytest.raises(ParseError):
        parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB", max_fields=2)
    assert parse_request(b"GET / HTTP/1.0\r\n\r\n", max_fields=0)["headers"] == []


def test_parse_error():
    for data, code, status in [
        (b"GET / HTTP/1.1\r\n\r\n", -1, 400),
        (b"GET / HTTP/3.0\r\n\r\n", -6, 505),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br, chunked\r\n\r\n", -7, 501),
    ]:
        with pytest.raises(ParseError) as err:
            parse_request(data)
        assert isinstance(err.value, ValueError)
        assert (err.value.code, err.value.status) == (code, status)
        assert str(status) in str(err.value)


def test_bad_arguments():
    with pytest.raises(ValueError):
        parse_request(b"GET / HTTP/1.0\r\n\r\n", last_len=-1)
    with pytest.raises(ValueError):
        parse_request(b"GET / HTTP/1.0\r\n\r\n", max_fields=-1)


def test_chunked_decoder_states():
    d = ChunkedDecoder()
    assert d.feed(b"") == (b"", False, b"")
    assert d.feed(b"3\r\nab") == (b"ab", False, b"")
    assert d.feed(b"c\r\n0\r\n\r\nNEXT") == (b"c", True, b"NEXT")
    # once done, every byte belongs to what follows
    assert d.feed(b"more") == (b"", True, b"more")

    d = ChunkedDecoder()
    with pytest.raises(ParseError) as err:
        d.feed(b"zz\r\n")
    assert err.value.status == 400
    with pytest.raises(ParseError):
        d.feed(b"0\r\n\r\n")


def test_chunked_limits():
    assert ChunkedDecoder().feed(b"0" * 4095 + b"1\r\nx\r\n0\r\n\r\n") == (b"x", True, b"")
    with pytest.raises(ParseError):
        ChunkedDecoder().feed(b"0" * 4096 + b"1\r\nx\r\n0\r\n\r\n")
    trailer = b"X: " + b"v" * (8192 - 7) + b"\r\n\r\n"
    assert ChunkedDecoder().feed(b"0\r\n" + trailer)[1]
    with pytest.raises(ParseError):
        ChunkedDecoder().feed(b"0\r\nX: v" + trailer[3:])
