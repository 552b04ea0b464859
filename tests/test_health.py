"""health_path and the graceful stop as a load balancer sees them: the path is
answered by the worker loop (200 "ok", 503 "draining" once a graceful stop
began), the stopping instance refuses new connections at once, and a kept-alive
connection is not closed under a client that may be sending on it."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time

from harness import ForkerProcess, connect, read_until_close

APP = "balancer_app:app"


def request(conn: http.client.HTTPConnection, method: str, target: str):
    conn.request(method, target)
    response = conn.getresponse()
    return response.status, response.getheader("Connection"), response.read()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_health_path_is_answered_without_the_application():
    with ForkerProcess("--health-path", "/healthz", app=APP,
                       env={"BALANCER_INSTANCE": "app"}) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        assert request(conn, "GET", "/healthz") == (200, None, b"ok\n")
        assert request(conn, "GET", "/healthz?probe=1") == (200, None, b"ok\n")
        assert request(conn, "HEAD", "/healthz")[:2] == (200, None)
        assert request(conn, "GET", "/healthz/") == (200, None, b"app")  # only the exact path
        assert request(conn, "GET", "/other") == (200, None, b"app")
        conn.close()


def test_without_health_path_the_application_answers():
    with ForkerProcess(app=APP, env={"BALANCER_INSTANCE": "app"}) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        assert request(conn, "GET", "/healthz") == (200, None, b"app")
        conn.close()


def test_graceful_stop_drains_kept_alive_connections():
    """TERM: new connections are refused at once; an idle kept-alive connection
    stays open, its next requests (health: 503) are answered with
    Connection: close, and the instance exits once it is closed."""
    with ForkerProcess("--health-path", "/healthz", "--keep-alive", "5", app=APP,
                       env={"BALANCER_INSTANCE": "app"}) as server:
        health = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        work = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        assert request(health, "GET", "/healthz") == (200, None, b"ok\n")
        assert request(work, "POST", "/work?1") == (200, None, b"app 1 0")
        server.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not refused(server.port):
            assert time.monotonic() < deadline, "still accepting after TERM"
            time.sleep(0.05)
        assert request(health, "GET", "/healthz") == (503, "close", b"draining\n")
        assert request(work, "POST", "/work?2") == (200, "close", b"app 2 0")
        assert server.wait(5) == 0, server.stderr


def test_graceful_stop_closes_idle_connections_at_their_keepalive_deadline():
    with ForkerProcess("--keep-alive", "1", "--graceful-timeout", "30", app=APP) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        assert request(conn, "GET", "/")[0] == 200
        server.signal(signal.SIGTERM)
        # the keep-alive second, not graceful_timeout: 10 s bound a hang, far
        # below the 30 s a worker waiting on the idle connection would take
        assert server.wait(10) == 0, server.stderr
        conn.close()


def test_graceful_stop_serves_every_queued_connection():
    """Connections queued while the only worker is busy are all accepted and
    answered when TERM comes, none reset when the listener is given up."""
    with ForkerProcess("--health-path", "/healthz", app=APP,
                       env={"BALANCER_INSTANCE": "app"}) as server:
        busy = threading.Thread(target=lambda: http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=10).request("GET", "/sleep?1.0"))
        busy.start()
        time.sleep(0.2)  # the loop is in the handler now
        queued = []
        for n in range(12):
            sock = connect(server.port, timeout=10)
            sock.sendall(f"GET /work?{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            queued.append(sock)
        server.signal(signal.SIGTERM)
        for n, sock in enumerate(queued):
            data, closed = read_until_close(sock, timeout=10)
            sock.close()
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(f"app {n}".encode()), data
            assert b"\r\nConnection: close\r\n" in data and closed
        busy.join(10)
        assert server.wait(10) == 0, server.stderr


def test_health_answers_503_once_a_stop_began_during_a_slow_handler():
    """A health check that queued while the only worker was in a handler, and
    that the worker reads only after TERM came, is answered 503: the worker
    is stopping by then."""
    with ForkerProcess("--health-path", "/healthz", app="drain_app:app") as server:
        busy = connect(server.port, timeout=10)
        busy.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = time.monotonic() + 10
        while "holding" not in server.stderr:  # the loop is in the handler
            assert time.monotonic() < deadline, server.stderr
            time.sleep(0.02)
        health = connect(server.port, timeout=10)
        health.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        server.signal(signal.SIGTERM)
        data, closed = read_until_close(busy, timeout=10)
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"held"), data
        data, closed = read_until_close(health, timeout=10)
        assert data.startswith(b"HTTP/1.1 503 ") and data.endswith(b"draining\n"), data
        assert b"\r\nConnection: close\r\n" in data and closed
        busy.close()
        health.close()
        assert server.wait(10) == 0, server.stderr
