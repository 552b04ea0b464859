"""The handlers of tests/examples/ (the README's examples as files), each served
by `python -m forker` and asked once through a real socket. mypy checks their
types in test_typing.py."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import ForkerProcess, request  # noqa: E402


def test_greeting():
    with ForkerProcess(app="tests.examples.greeting:greeting") as server:
        status, _, body = request(server.port, "GET", "/anything")
    assert (status, body) == (200, b"greeting!!!")


def test_json_response():
    with ForkerProcess(app="tests.examples.json_response:hello") as server:
        status, headers, body = request(server.port, "GET", "/hello?name=forker",
                                        headers={"User-Agent": "test"})
        missing = request(server.port, "GET", "/elsewhere")[0]
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"hello": "forker", "agent": "test"}
    assert missing == 404


def test_streaming():
    with ForkerProcess(app="tests.examples.streaming:count") as server:
        status, headers, body = request(server.port, "GET", "/")
    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    assert body == b"".join(f"line {n}\n".encode() for n in range(1, 6))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_wsgi_app(method):
    with ForkerProcess("--interface", "wsgi", app="tests.examples.wsgi_app") as server:
        status, _, body = request(server.port, method, "/a/b",
                                  body=b"x" if method == "POST" else None)
    assert (status, body) == (200, f"{method} /a/b\n".encode())
