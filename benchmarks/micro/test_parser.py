"""Parsing one request head into Python objects: forker's C parser (through
forker._parser, which builds a dict of bytes slices; the worker loop calls the
C function directly and builds nothing until the handler asks), httptools
(llhttp, callbacks per part) and h11 (pure Python).

benchmarks/bench_parse.c measures the C parser alone."""

import pytest
from conftest import REQUESTS

_parser = pytest.importorskip("forker._parser")


@pytest.mark.parametrize("size", list(REQUESTS))
def test_forker(benchmark, size):
    data = REQUESTS[size]
    result = benchmark(_parser.parse_request, data)
    assert result["consumed"] == len(data)


class _Collect:
    """The least a server built on httptools keeps: url and header pairs."""

    __slots__ = ("done", "headers", "url")

    def __init__(self):
        self.url = None
        self.headers = []
        self.done = False

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_headers_complete(self):
        self.done = True


@pytest.mark.parametrize("size", list(REQUESTS))
def test_httptools(benchmark, size):
    httptools = pytest.importorskip("httptools")
    data = REQUESTS[size]

    def parse():
        proto = _Collect()
        parser = httptools.HttpRequestParser(proto)
        parser.feed_data(data)
        return proto, parser.get_method()

    proto, method = benchmark(parse)
    assert proto.done and method == b"GET"


@pytest.mark.parametrize("size", list(REQUESTS))
def test_h11(benchmark, size):
    h11 = pytest.importorskip("h11")
    data = REQUESTS[size]

    def parse():
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        return conn.next_event()

    event = benchmark(parse)
    assert isinstance(event, h11.Request)
