"""ASGI 3 applications served by `python -m forker` on the worker's event loop:
the HTTP scope, receive and send through real sockets (httpx, requests, curl,
raw sockets), the client leaving, errors, lifespan, FastAPI and Starlette, and
uvicorn as the oracle for the same FastAPI application."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

import httpx
import pytest
import requests

sys.path.insert(0, os.path.dirname(__file__))

from harness import (APPS, ForkerProcess, Reader, ServerProcess, connect, exchange,  # noqa: E402
                     read_until_close, reset, self_signed)

from forker.config import Config  # noqa: E402
from forker.errors import WORKER_BOOT_ERROR, AppImportError  # noqa: E402

DEADLINE = 30.0  # bounds a wait for an event, never a measure


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def raw(request):
    # no --interface: the coroutine function of three arguments says ASGI
    with ForkerProcess("--loop", request.param, app="asgi_raw:app") as server:
        server.url = f"http://127.0.0.1:{server.port}"
        server.verify = True
        server.open = lambda: connect(server.port, timeout=DEADLINE)
        yield server


@pytest.fixture(scope="module")
def tls_raw(tmp_path_factory):
    """The raw app over TLS: the loop reads a TLS body on the event loop's
    thread, as it does a plain one."""
    certfile, keyfile = self_signed(str(tmp_path_factory.mktemp("tls")))
    context = ssl.create_default_context(cafile=certfile)
    with ForkerProcess("--certfile", certfile, "--keyfile", keyfile,
                       app="asgi_raw:app") as server:
        server.url = f"https://localhost:{server.port}"
        server.verify = certfile
        server.open = lambda: context.wrap_socket(connect(server.port, timeout=DEADLINE),
                                                  server_hostname="localhost")
        yield server


def wait_for_event(server, text):
    deadline = time.monotonic() + DEADLINE
    while True:
        events = json.loads(requests.get(server.url + "/events", timeout=10,
                                         verify=server.verify).text)
        if any(text in event for event in events):
            return events
        assert time.monotonic() < deadline, f"{text!r} not in {events}"
        time.sleep(0.02)


# -- detection -------------------------------------------------------------------------

def test_detection_and_refusals():
    from forker.app import as_handler
    from forker.asgi import ASGIHandler

    async def asgi3(scope, receive, send):
        pass

    class Asgi3Object:
        async def __call__(self, scope, receive, send):
            pass

    class Asgi2:
        def __init__(self, scope):
            self.scope = scope

        async def __call__(self, receive, send):
            pass

    async def async_handler(request):
        pass

    async def configured(scope, receive, send, greeting=b"hi"):
        pass

    def sync_wrapper(scope, receive, send):  # returns the coroutine, as asgiref's wrappers
        return asgi3(scope, receive, send)

    auto, asgi, native = Config(), Config(interface="asgi"), Config(interface="native")
    assert isinstance(as_handler(asgi3, auto), ASGIHandler)
    assert isinstance(as_handler(Asgi3Object(), auto), ASGIHandler)
    assert isinstance(as_handler(functools.partial(configured, greeting=b"x"), auto),
                      ASGIHandler)
    assert isinstance(as_handler(sync_wrapper, auto), ASGIHandler)
    assert isinstance(as_handler(lambda *args: None, asgi), ASGIHandler)  # said outright
    handler = as_handler(asgi3, auto)
    assert as_handler(handler, auto) is handler
    with pytest.raises(AppImportError, match="ASGI 2"):
        as_handler(Asgi2, auto)
    with pytest.raises(AppImportError, match="coroutine function"):
        as_handler(async_handler, auto)
    with pytest.raises(AppImportError, match="coroutine function"):
        as_handler(asgi3, native)


def test_interface_option_names_asgi():
    assert Config(interface="asgi").interface == "asgi"
    assert Config(lifespan="on").lifespan == "on"
    assert Config(loop="asyncio").loop == "asyncio"


def test_the_event_loop_is_the_one_asked_for():
    import asyncio

    import uvloop
    from forker.asgi import ASGIHandler

    async def app(scope, receive, send):
        pass

    for kind, expected in (("auto", uvloop.Loop), ("uvloop", uvloop.Loop),
                           ("asyncio", asyncio.BaseEventLoop)):
        loop = ASGIHandler(app, Config(loop=kind)).event_loop()
        try:
            assert isinstance(loop, expected)
            assert kind != "asyncio" or not isinstance(loop, uvloop.Loop)
        finally:
            loop.close()


# -- the scope ---------------------------------------------------------------------------

def test_scope(raw):
    response = httpx.post(raw.url + "/scope/a%20b/%C3%A9?x=1&y=%20", content=b"hello",
                          headers=[("X-Twice", "1"), ("x-twice", "2"), ("X-Mixed", "Case")])
    assert response.status_code == 200
    scope = response.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/a b/\u00e9"
    assert scope["raw_path"] == "/scope/a%20b/%C3%A9"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["body"] == "hello"
    names = [name for name, _ in scope["headers"]]
    assert names == [name.lower() for name in names]
    assert [v for n, v in scope["headers"] if n == "x-twice"] == ["1", "2"]
    assert ["x-mixed", "Case"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert scope["server"] == ["127.0.0.1", raw.port]
    assert scope["extensions"] == ["http.response.pathsend"]
    assert scope["state"]["started_pid"] > 0  # from lifespan startup


def test_http10_and_root_path():
    with ForkerProcess("--interface", "asgi", "--root-path", "/mount",
                       app="asgi_raw:app") as server:
        data = exchange(server.port, b"GET /scope?q HTTP/1.0\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
        scope = json.loads(body)
        assert scope["http_version"] == "1.0"
        assert scope["root_path"] == "/mount" and scope["path"] == "/mount/scope"


def test_lifespan_state_is_copied_per_request():
    with ForkerProcess(app="asgi_starlette:app") as server:
        url = f"http://127.0.0.1:{server.port}"
        first = requests.get(url + "/state", timeout=10).json()
        assert first["db"] == "connected" and first["leak"] is None
        assert requests.get(url + "/leak", timeout=10).text == "ok"
        assert requests.get(url + "/state", timeout=10).json()["leak"] is None
        pid = first["pid"]
        assert server.stop() == 0
    assert f"starlette lifespan shut down in {pid}" in server.stderr


# -- responses ---------------------------------------------------------------------------

def test_the_scope_on_a_unix_socket(tmp_path):
    """server is (path, None) there (ASGI spec: no port), as uvicorn's; it was
    (path, 0)."""
    path = str(tmp_path / "asgi.sock")
    with ForkerProcess(app="asgi_raw:app", bind=f"unix:{path}"):
        with connect(f"unix:{path}") as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: t\r\n\r\n")
            scope = json.loads(Reader(sock).response().body)
    assert scope["server"] == [path, None]
    assert scope["client"] is None


@pytest.mark.parametrize("target, path", [(b"http://example.com?scope", "/"),
                                          (b"http://example.com/a%20b?scope", "/a b")])
def test_an_absolute_form_target(raw, target, path):
    """The target's authority wins over Host (RFC 9112 3.2.2), and an empty
    path is "/", as in the WSGI environ (the scope had path "" and Host x)."""
    with connect(raw.port) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        response = Reader(sock).response()
    scope = json.loads(response.body)
    assert scope["path"] == path
    assert scope["raw_path"] == target[len(b"http://example.com"):-len(b"?scope")].decode() or "/"
    assert [value for name, value in scope["headers"] if name == "host"] == ["example.com"]


def test_streamed_bodies_and_framing(raw):
    response = requests.get(raw.url + "/stream?n=4", timeout=10)
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "".join(f"chunk {i}\n" for i in range(4))
    response = requests.get(raw.url + "/stream-length", timeout=10)
    assert response.headers["content-length"] == "10" and response.text == "0123456789"
    assert "transfer-encoding" not in response.headers
    data = exchange(raw.port, b"GET /stream?n=2 HTTP/1.0\r\n\r\n")  # HTTP/1.0: delimited by the close
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower() and body == b"chunk 0\nchunk 1\n"


def test_head(raw):
    get = requests.get(raw.url + "/stream-length", timeout=10)
    head = requests.head(raw.url + "/stream-length", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    with connect(raw.port) as sock:
        # a HEAD answer carries no body: the next response follows its head at once
        sock.sendall(b"HEAD /stream?n=3 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /stream?n=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(sock)
        first = reader.response(head_only=True)
        second = reader.response()  # a body after the HEAD answer would be malformed here
    assert first.version == "HTTP/1.1" and first.status == 200
    assert all("chunked" not in f"{name}: {value}".lower() for name, value in first.fields)
    assert second.version == "HTTP/1.1" and second.status == 200
    assert second.body == b"chunk 0\n" and reader.buf == b""


def test_keep_alive_and_pipelining(raw):
    with connect(raw.port) as sock:
        reader = Reader(sock)
        for i in range(50):  # one connection, one request after another
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(b"x" * i), b"x" * i))
            response = reader.response()
            assert response.status_line.startswith("HTTP/1.1 200")
            assert response.body.startswith(b"%d " % i)
            assert reader.buf == b""
        sock.sendall(b"".join(b"GET /stream?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (i % 4 + 1)
                              for i in range(20)))  # pipelined
        for i in range(20):
            response = reader.response()
            assert response.body == b"".join(b"chunk %d\n" % j for j in range(i % 4 + 1))


def test_many_requests_in_flight_on_one_worker(raw):
    with httpx.Client(timeout=DEADLINE) as client:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: client.get(raw.url + "/barrier").text, range(2)))
    assert results == ["met", "met"]


def test_slow_reader_resumes_a_paused_stream(raw):
    count = 128  # 8 MiB: far beyond what the loop holds for one connection
    with connect(raw.port, timeout=DEADLINE, rcvbuf=4096) as sock:
        sock.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % count)
        body = Reader(sock).response().body
    assert len(body) == count * 65536
    assert all(body[i * 65536] == i % 256 for i in range(count))


def test_pathsend(raw, tmp_path):
    path = tmp_path / "data.bin"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    response = requests.get(raw.url + "/pathsend", params={"name": str(path)}, timeout=10)
    assert response.status_code == 200 and response.content == data
    head = requests.head(raw.url + "/pathsend", params={"name": str(path)}, timeout=10)
    assert head.headers["content-length"] == str(len(data)) and head.content == b""


def test_uploads_whole_and_streamed(raw):
    data = os.urandom(1 << 20)
    expected = f"{len(data)} {hashlib.sha256(data).hexdigest()}"
    assert requests.post(raw.url + "/upload", data=data, timeout=DEADLINE).text == expected
    # chunked, from a generator
    assert requests.post(raw.url + "/upload", data=iter([data[:1000], data[1000:]]),
                         timeout=DEADLINE).text == expected
    with ForkerProcess("--body-buffer-size", "65536", app="asgi_raw:app") as server:
        url = f"http://127.0.0.1:{server.port}/upload"
        assert requests.post(url, data=data, timeout=DEADLINE).text == expected
        assert requests.post(url, data=iter([data[:70000], data[70000:]]),
                             timeout=DEADLINE).text == expected


def test_a_body_reaches_the_application_as_the_client_sends_it(raw):
    echo_as_sent(raw)


def test_a_tls_body_reaches_the_application_as_the_client_sends_it(tls_raw):
    echo_as_sent(tls_raw)


def echo_as_sent(server):
    """A body larger than 64 KiB is read from the client as the application
    asks for it (not received whole first): the client here sends its second
    piece only once the first came back echoed, which never happens when the
    server waits for the whole body before calling the application."""
    first, second = os.urandom(100_000), os.urandom(50_000)
    with server.open() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                     % (len(first) + len(second)) + first)
        reader = Reader(sock)  # read a piece at a time: the response never ends otherwise
        assert reader._line().startswith(b"HTTP/1.1 200 ")
        fields = []
        while line := reader._line():
            fields.append(line.lower())
        assert b"transfer-encoding: chunked" in fields
        echoed = bytearray()
        while size := int(reader._line(), 16):
            echoed += reader._exactly(size)
            assert reader._line() == b""
            if len(echoed) == len(first):
                sock.sendall(second)
        assert reader._line() == b""
        assert bytes(echoed) == first + second


def test_a_cancelled_receive_loses_no_body(raw):
    cancelled_receive(raw)


def test_a_cancelled_receive_loses_no_tls_body(tls_raw):
    cancelled_receive(tls_raw)


def cancelled_receive(server):
    """asyncio.wait_for(receive(), ...) that times out while it waits for
    the client: the next receive gets the bytes that come (they were
    dropped, and the body reported complete, short)."""
    first, second = os.urandom(100_000), os.urandom(200_000)
    data = first + second
    with server.open() as sock:
        sock.sendall(b"POST /impatient HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                     % len(data) + first)
        wait_for_event(server, "impatient: 100000 bytes, a receive cancelled")
        sock.sendall(second)
        body = Reader(sock).response().body
    assert body == b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode())


def test_a_client_leaving_mid_upload_is_a_disconnect(raw):
    leaving_mid_upload(raw)


def test_a_client_leaving_mid_tls_upload_is_a_disconnect(tls_raw):
    leaving_mid_upload(tls_raw)


def leaving_mid_upload(server):
    """receive() answers http.disconnect (not an exception) when the client
    leaves in the middle of a streamed body."""
    with server.open() as sock:
        sock.sendall(b"POST /upload-disconnect HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Length: 1000000\r\n\r\n" + b"x" * 100_000)
        wait_for_event(server, "upload-disconnect: reading")
    wait_for_event(server, "upload-disconnect: http.disconnect")


def test_a_stalled_upload_is_a_408():
    """The client stops sending its body: the application hears of it as a
    disconnect, and the client, still there, gets the 408 that names it
    (it got a close without an answer)."""
    with ForkerProcess("--header-timeout", "1", app="asgi_raw:app") as server:
        with connect(server.port, timeout=DEADLINE) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
                         + b"x" * 100_000)
            data, closed = read_until_close(sock, DEADLINE)
    assert data.startswith(b"HTTP/1.1 408 ") and closed, data


def test_expect_100_continue(raw):
    with connect(raw.port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        body = Reader(sock).response().body
    assert body == b"5 " + hashlib.sha256(b"hello").hexdigest().encode()


def test_expect_100_continue_waits_for_the_first_receive(raw):
    continue_on_first_receive(raw)


def test_expect_100_continue_over_tls_waits_for_the_first_receive(tls_raw):
    continue_on_first_receive(tls_raw)


def continue_on_first_receive(server):
    """A body large enough to stream: the 100 Continue is sent when the
    application first asks for the body, and never when it answers without
    reading (the client then need not send the body at all)."""
    head = (b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n"
            b"Expect: 100-continue\r\n\r\n")
    with server.open() as sock:
        sock.sendall(head % b"/pid")
        response = Reader(sock).response()
    assert response.status_line.startswith("HTTP/1.1 200 ")  # not an interim 100 first
    data = os.urandom(1000000)
    with server.open() as sock:
        sock.sendall(head % b"/upload")
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data)
        body = Reader(sock).response().body
    assert body == b"1000000 " + hashlib.sha256(data).hexdigest().encode()


def test_curl(raw, tmp_path):
    curl = shutil.which("curl")
    assert curl, "curl is needed by this test"
    path = tmp_path / "up.bin"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    # curl sends Expect: 100-continue for a body this large
    out = subprocess.run([curl, "-sS", "--data-binary", f"@{path}", raw.url + "/upload"],
                         capture_output=True, timeout=DEADLINE, check=True).stdout
    assert out.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def test_websocket_upgrade_is_refused_with_ws_none():
    # websockets themselves: tests/test_asgi_ws.py
    with ForkerProcess("--ws", "none", app="asgi_raw:app") as server:
        response = requests.get(f"http://127.0.0.1:{server.port}/scope", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, timeout=10)
    assert response.status_code == 501 and b"websocket" in response.content


# -- the client leaving, errors -------------------------------------------------------------

def test_disconnect_while_streaming(raw):
    sock = connect(raw.port)
    sock.sendall(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
    got = b""
    while len(got) < 200000:
        got += sock.recv(65536)
    reset(sock)  # as a client that gives up
    wait_for_event(raw, "forever: send raised OSError")
    assert requests.get(raw.url + "/pid", timeout=10).status_code == 200


def test_disconnect_while_waiting(raw):
    sock = connect(raw.port)
    sock.sendall(b"POST /wait-disconnect HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
    wait_for_event(raw, "wait-disconnect: waiting")
    reset(sock)  # as a client that gives up
    wait_for_event(raw, "wait-disconnect: http.disconnect")


def test_threads_are_said_not_to_apply():
    with ForkerProcess("--threads", "4", app="asgi_raw:app") as server:
        assert requests.get(f"http://127.0.0.1:{server.port}/pid", timeout=DEADLINE).ok
        server.wait_for("--threads 4 does not apply to an ASGI application")


def test_a_client_closing_normally_is_a_disconnect(raw):
    """A FIN (close(2), not a reset) while the application holds the request:
    it is told at once, as uvicorn tells it, and the socket does not wait in
    CLOSE-WAIT for the application to end."""
    sock = connect(raw.port)
    sock.sendall(b"POST /wait-disconnect HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
    wait_for_event(raw, "wait-disconnect: waiting")
    sock.close()
    wait_for_event(raw, "wait-disconnect: http.disconnect")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT])
def test_a_fast_stop_cancels_tasks_without_an_error(signum):
    """A fast stop cancels the tasks still running: an expected end, logged
    at debug, not an ERROR with a CancelledError traceback per request."""
    server = ForkerProcess(app="asgi_raw:app")
    with server:
        server.url, server.verify = f"http://127.0.0.1:{server.port}", True
        with connect(server.port) as sock:
            sock.sendall(b"GET /ignore-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_for_event(server, "ignore-disconnect: started")
            os.kill(server.pid, signum)
            assert server.wait(DEADLINE) == 0
    assert "CancelledError" not in server.stderr and "[ERROR]" not in server.stderr, \
        server.stderr


def test_clients_gone_free_their_slots_while_tasks_run_on():
    """Six clients send a request whose task never ends and close: with four
    slots, a seventh client is still served (the slots stayed taken, and new
    clients waited in the kernel's queue, until the tasks ended)."""
    with ForkerProcess("--max-connections", "4", app="asgi_raw:app") as server:
        url = f"http://127.0.0.1:{server.port}"
        for n in range(6):
            with connect(server.port) as sock:
                sock.sendall(b"GET /ignore-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
                deadline = time.monotonic() + DEADLINE
                while json.loads(requests.get(url + "/events", timeout=DEADLINE).text).count(
                        "ignore-disconnect: started") <= n:
                    assert time.monotonic() < deadline, "the task did not start"
                    time.sleep(0.02)
        assert requests.get(url + "/pid", timeout=DEADLINE).status_code == 200


@pytest.mark.parametrize("path, needle", [
    ("/error-before", "boom before the response"),
    ("/no-response", "returned without starting a response"),
    ("/start-only", "returned without completing a response"),
    ("/bad-header", "invalid response header"),
    ("/bad-status", "status 1000"),
])
def test_errors_before_the_response_give_500(raw, path, needle):
    response = requests.get(raw.url + path, timeout=10)
    assert response.status_code == 500
    assert response.text == "500 Internal Server Error\n"
    assert "injected" not in str(response.headers)
    raw.wait_for(needle)


@pytest.mark.parametrize("path, needle", [
    ("/error-after", "boom after the response started"),
    ("/incomplete", "returned without completing the response"),
])
def test_errors_after_the_response_started_close_the_connection(raw, path, needle):
    with connect(raw.port) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
        data, closed = read_until_close(sock)
    assert closed, data
    assert data.startswith(b"HTTP/1.1 200") and b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")  # the chunked body never ended
    raw.wait_for(needle)


def test_send_after_complete_and_receive_after_it(raw):
    assert requests.get(raw.url + "/after-complete", timeout=10).text == "done"
    events = wait_for_event(raw, "after-complete receive")
    assert "after-complete receive: http.disconnect" in events
    assert any(e.startswith("after-complete: ASGI message 'http.response.body' sent after")
               for e in events)


# -- lifespan ------------------------------------------------------------------------------

def test_failed_startup_is_a_boot_error(tmp_path):
    # the workers fail together (the app waits for both to reach the failure)
    server = ForkerProcess(app="asgi_lifespan_fail:app", workers=2, wait=False,
                           env={"LIFESPAN_BARRIER": str(tmp_path), "LIFESPAN_WORKERS": "2"})
    try:
        status = server.wait(DEADLINE)
    finally:
        server.stop()
    assert status == WORKER_BOOT_ERROR
    # said once, by the first worker to fail, not by each
    assert server.stderr.count("application startup failed: database unreachable") == 1, \
        server.stderr
    assert "retrying in" not in server.stderr


def test_application_without_lifespan_is_served():
    with ForkerProcess(app="asgi_no_lifespan:app") as server:
        assert requests.get(f"http://127.0.0.1:{server.port}/", timeout=10).text == \
            "no lifespan here"
    server2 = ForkerProcess("--lifespan", "on", app="asgi_no_lifespan:app", wait=False)
    try:
        assert server2.wait(DEADLINE) == WORKER_BOOT_ERROR
    finally:
        server2.stop()


# -- FastAPI, with uvicorn as the oracle ------------------------------------------------------

class Uvicorn:
    """uvicorn serving the same application on a unix socket."""

    def __init__(self, app):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "uvicorn.sock")
        try:  # ready once it answers a request on its socket
            self.server = ServerProcess(
                [sys.executable, "-m", "uvicorn", "--uds", self.path, "--log-level", "warning",
                 app], cwd=APPS, address=f"unix:{self.path}", start_timeout=DEADLINE,
                probe=b"GET /pid HTTP/1.1\r\nHost: oracle\r\nConnection: close\r\n\r\n")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.client = httpx.Client(transport=httpx.HTTPTransport(uds=self.path),
                                   base_url="http://oracle", timeout=DEADLINE)

    def close(self):
        self.client.close()
        self.server.stop(DEADLINE)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def fastapi_pair():
    with ForkerProcess(app="asgi_fastapi:app") as server:
        oracle = Uvicorn("asgi_fastapi:app")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}",
                              timeout=DEADLINE) as client:
                yield client, oracle.client, server
        finally:
            oracle.close()


COMPARED = ("content-type", "content-length", "transfer-encoding", "content-disposition",
            "etag", "last-modified", "accept-ranges")

UPLOAD = os.urandom(1 << 20)


@pytest.mark.parametrize("method, url, kwargs", [
    ("GET", "/items/42?q=hello&limit=3", {}),
    ("GET", "/items/notanumber", {}),
    ("GET", "/items/7", {}),
    ("POST", "/items", {"json": {"name": "pen", "price": 1.5, "tags": ["a", "b"]},
                        "headers": {"X-Token": "abc"}}),
    ("POST", "/items", {"json": {"name": "pen", "price": 1.5}, "headers": {"X-Token": "bad"}}),
    ("POST", "/items", {"json": {"name": "pen"}}),
    ("GET", "/stream?n=7", {}),
    ("GET", "/file", {}),
    ("HEAD", "/file", {}),
    ("POST", "/form", {"data": {"name": "n\u00e9", "count": "3"}}),
    ("POST", "/form", {"data": {"name": "missing count"}}),
    ("POST", "/upload", {"files": {"file": ("big.bin", UPLOAD)}, "data": {"note": "1 MB"}}),
    ("GET", "/sync", {}),
    ("GET", "/nowhere", {}),
    ("GET", "/openapi.json", {}),
])
def test_fastapi_answers_as_uvicorn_does(fastapi_pair, method, url, kwargs):
    forker_client, oracle, _ = fastapi_pair
    ours = forker_client.request(method, url, **kwargs)
    theirs = oracle.request(method, url, **kwargs)
    assert ours.status_code == theirs.status_code
    assert ours.content == theirs.content
    for name in COMPARED:
        assert ours.headers.get(name) == theirs.headers.get(name), name


def test_fastapi_upload_of_a_megabyte(fastapi_pair):
    client, _, _ = fastapi_pair
    response = client.post("/upload", files={"file": ("big.bin", UPLOAD)}, data={"note": "n"})
    assert response.json() == {"filename": "big.bin", "size": len(UPLOAD), "note": "n",
                               "sha256": hashlib.sha256(UPLOAD).hexdigest()}


def test_fastapi_background_task(fastapi_pair):
    client, _, _ = fastapi_pair
    assert client.post("/background", params={"name": "job1"}).json() == {"queued": "job1"}
    deadline = time.monotonic() + DEADLINE
    while "done job1" not in client.get("/background").json()["done"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_fastapi_with_requests_streaming(fastapi_pair):
    client, _, _ = fastapi_pair
    response = requests.get(str(client.base_url) + "/stream?n=3", stream=True, timeout=10)
    assert list(response.iter_lines()) == [b"line 0", b"line 1", b"line 2"]


def test_access_log(tmp_path):
    log = tmp_path / "access.log"
    data = tmp_path / "file.bin"
    data.write_bytes(b"z" * 1000)
    with ForkerProcess("--access-log", str(log), app="asgi_raw:app") as server:
        url = f"http://127.0.0.1:{server.port}"
        requests.get(url + "/stream?n=2", timeout=10)
        requests.get(url + "/pathsend", params={"name": str(data)}, timeout=10)
        requests.get(url + "/error-before", timeout=10)
        assert server.stop() == 0
    lines = log.read_text().splitlines()
    assert any('"GET /stream?n=2 HTTP/1.1" 200 16 ' in line for line in lines), lines
    assert any('"GET /pathsend?name=' in line and '" 200 1000 ' in line for line in lines), lines
    assert any('"GET /error-before HTTP/1.1" 500 ' in line for line in lines), lines


def test_forwarded_fields_from_a_trusted_proxy(raw):
    scope = httpx.get(raw.url + "/scope", headers={
        "X-Forwarded-For": "203.0.113.7, 198.51.100.2", "X-Forwarded-Proto": "https"}).json()
    assert scope["client"] == ["198.51.100.2", 0] and scope["scheme"] == "https"
    scope = httpx.get(raw.url + "/scope", headers={
        "Forwarded": 'for="[2001:db8::1]:4711";proto=https'}).json()
    assert scope["client"] == ["2001:db8::1", 4711] and scope["scheme"] == "https"
    with ForkerProcess("--forwarded-allow-ips", "10.0.0.1", app="asgi_raw:app") as server:
        scope = httpx.get(f"http://127.0.0.1:{server.port}/scope", headers={
            "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}).json()
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"  # not trusted
