"""The built-in greeting (python -m forker without an application) is
answered by the worker loop without calling Python. Its answers must be
byte for byte those of a Python handler returning the same bytes, whatever
the request: methods, bodies, pipelining, HTTP/1.0, errors."""

from __future__ import annotations

import re
import time

import pytest

from harness import ForkerProcess, exchange

COPY = "greeting_copy:app"

REQUESTS = {
    "get": b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    "head": b"HEAD /x?y=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\n\r\n",
    "http10-keep-alive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                         b"GET / HTTP/1.0\r\n\r\n",
    "post-pipelined": b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                      b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"DELETE /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    "chunked": b"PUT / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    "expect-continue": b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                       b"Content-Length: 2\r\nConnection: close\r\n\r\n",
    "bad-length": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    "smuggling": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


def normalized(data: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", data)


@pytest.fixture(scope="module")
def servers():
    with ForkerProcess() as builtin, ForkerProcess(app=COPY) as python:
        yield builtin, python


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_the_loop_answers_as_the_handler_would(servers, name):
    builtin, python = servers
    data = REQUESTS[name]
    if name == "expect-continue":
        data += b"ok"  # sent with the head: the interim 100 is not waited for
    assert normalized(exchange(builtin.port, data)) == normalized(exchange(python.port, data))


def test_the_greeting_body():
    with ForkerProcess() as server:
        answer = exchange(server.port, REQUESTS["get"])
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\ngreeting!!!")


def test_max_requests_counts_the_loops_answers():
    with ForkerProcess("--max-requests", "5") as server:
        first = server.worker_pids()
        for _ in range(12):
            assert exchange(server.port, REQUESTS["get"]).endswith(b"greeting!!!")
        deadline = time.monotonic() + 10
        while server.worker_pids() == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.worker_pids() != first
        assert "exited after 5 requests" in server.stderr


def test_an_access_log_sees_every_greeting(tmp_path):
    """With an access log the handler path is kept: each request gets its line."""
    path = tmp_path / "access.log"
    with ForkerProcess("--access-log", str(path)) as server:
        for target in ("/one", "/two"):
            exchange(server.port, f"GET {target} HTTP/1.1\r\nHost: t\r\n"
                     "Connection: close\r\n\r\n".encode())
        deadline = time.monotonic() + 5
        while "/two" not in (path.read_text() if path.exists() else "") and \
                time.monotonic() < deadline:
            time.sleep(0.05)
    text = path.read_text()
    assert '"GET /one HTTP/1.1" 200 11' in text and '"GET /two HTTP/1.1" 200 11' in text
