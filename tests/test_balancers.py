"""forker behind real load balancers: nginx and HAProxy (Debian packages), each
in front of two forker instances on loopback, serving the recipes of
docs/deploy/ with the addresses replaced by ephemeral ports.

Under a light, bounded load (a few keep-alive clients for a few seconds), one
instance is stopped gracefully (TERM). The clients count every failed request
(an error, a status other than 200) and every response that does not echo the
id of its request: both must be zero."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from harness import ROOT, ForkerProcess, free_port

DEPLOY = os.path.join(ROOT, "docs", "deploy")
APP = "balancer_app:app"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                      else None)
# The addresses the recipes use, replaced by the test's.
RECIPE_FRONT, RECIPE_ONE, RECIPE_TWO = "127.0.0.1:8080", "127.0.0.1:8001", "127.0.0.1:8002"

CLIENTS = 4
LOAD_SECONDS = 3.0
STOP_AFTER = 1.0
FORKER_ARGS = ("--health-path", "/healthz", "--keep-alive", "5", "--graceful-timeout", "5")


def recipe(name: str, front: int, one: int, two: int) -> str:
    """docs/deploy/NAME with its addresses replaced by loopback ports."""
    with open(os.path.join(DEPLOY, name)) as f:
        text = f.read()
    for old, port in ((RECIPE_FRONT, front), (RECIPE_ONE, one), (RECIPE_TWO, two)):
        assert old in text, f"{name} no longer names {old}"
        text = text.replace(old, f"127.0.0.1:{port}")
    return text


def wait_answering(port: int, timeout: float = 15.0, path: str = "/") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nothing answers on port {port}")


class Load:
    """CLIENTS threads sending requests over keep-alive connections, each
    request carrying an id that its response must echo: GETs, every fourth a
    POST (which a balancer must not retry once sent)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: List[str] = []
        self.served_by: Dict[str, int] = {}
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True)
                        for n in range(CLIENTS)]

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)

    def _client(self, number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sequence = 0
        while not self.stop.is_set():
            sequence += 1
            request_id = f"{number}-{sequence}"
            post = sequence % 4 == 0
            try:
                if post:
                    body = b"x" * (sequence % 100)
                    conn.request("POST", f"/work?{request_id}", body=body)
                else:
                    conn.request("GET", f"/work?{request_id}")
                response = conn.getresponse()
                text = response.read().decode("latin-1")
                expected = f" {request_id} {sequence % 100}" if post else f" {request_id}"
                if response.status != 200 or not text.endswith(expected):
                    self._fail(f"{request_id}: {response.status} {text[:80]!r}")
                    conn.close()
                    continue
                with self.lock:
                    self.ok += 1
                    instance = text.split(" ", 1)[0]
                    self.served_by[instance] = self.served_by.get(instance, 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                self._fail(f"{request_id}: {type(exc).__name__}: {exc}")
                conn.close()
        conn.close()

    def _fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


@pytest.fixture
def instances() -> Iterator[Tuple[ForkerProcess, ForkerProcess]]:
    one = ForkerProcess(*FORKER_ARGS, app=APP, env={"BALANCER_INSTANCE": "one"})
    try:
        two = ForkerProcess(*FORKER_ARGS, app=APP, env={"BALANCER_INSTANCE": "two"})
    except BaseException:
        one.stop()
        raise
    try:
        yield one, two
    finally:
        one.stop()
        two.stop()


def stop_one_under_load(front: int, one: ForkerProcess, two: ForkerProcess) -> Load:
    """The load against the balancer on port front; TERM to instance one midway."""
    with Load(front) as load:
        time.sleep(STOP_AFTER)
        one.signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        status = one.wait(10)
        assert status == 0, one.stderr
        time.sleep(max(0.0, LOAD_SECONDS - STOP_AFTER - (time.monotonic() - stopped_at)))
        served_before = dict(load.served_by)
        time.sleep(0.5)  # a little more after instance one is gone
    assert load.served_by.get("one", 0) > 0 and load.served_by.get("two", 0) > 0, load.served_by
    assert load.served_by.get("one", 0) == served_before.get("one", 0), "one served after exiting"
    return load


def _report(name: str, load: Load) -> str:
    return (f"{name}: {load.ok} requests answered, {len(load.failures)} failed "
            f"{load.served_by}\n" + "\n".join(load.failures[:20]))


@contextlib.contextmanager
def nginx_front(one: int, two: int) -> Iterator[Tuple[int, Callable[[], str]]]:
    """nginx running docs/deploy/nginx.conf in front of the ports one and
    two, in the main context a packaged nginx provides: (its port, a function
    reading its error log). Stopped with QUIT at the end."""
    assert NGINX is not None
    front = free_port()
    with tempfile.TemporaryDirectory(prefix="forker-nginx-") as tmp:
        with open(os.path.join(tmp, "forker.conf"), "w") as f:
            f.write(recipe("nginx.conf", front, one, two))
        main = f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/forker.conf;
}}
"""
        config = os.path.join(tmp, "nginx.conf")
        with open(config, "w") as f:
            f.write(main)

        def errors() -> str:
            with open(os.path.join(tmp, "error.log"), errors="replace") as f:
                return f.read()[-3000:]

        nginx = subprocess.Popen([NGINX, "-p", tmp, "-c", config, "-e", f"{tmp}/error.log"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        try:
            wait_answering(front)
            yield front, errors
        finally:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_nginx_graceful_stop_loses_no_request(instances: Tuple[ForkerProcess, ForkerProcess]) -> None:
    one, two = instances
    with nginx_front(one.port, two.port) as (front, errors):
        load = stop_one_under_load(front, one, two)
        print(_report("nginx", load))
        assert not load.failures, _report("nginx", load) + "\nnginx error log:\n" + errors()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_a_client_cannot_claim_an_address_through_the_nginx_recipe() -> None:
    """Behind docs/deploy/nginx.conf (which sets X-Forwarded-For and -Proto
    and passes other fields through), a client's own Forwarded field claims
    nothing: the application sees nginx's view of the client (it saw
    6.6.6.6 and https when Forwarded won over X-Forwarded-For)."""
    with ForkerProcess("--interface", "wsgi", app="wsgiapps:environ_app") as server:
        with nginx_front(server.port, server.port) as (front, _):
            conn = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
            conn.request("GET", "/", headers={"Forwarded": "for=6.6.6.6;proto=https"})
            answer = conn.getresponse()
            env = json.loads(answer.read())
            conn.close()
    assert answer.status == 200
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")
    assert env["HTTP_FORWARDED"] == "for=6.6.6.6;proto=https"  # passed through, not believed


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_haproxy_graceful_stop_loses_no_request(
        instances: Tuple[ForkerProcess, ForkerProcess]) -> None:
    one, two = instances
    front = free_port()
    with tempfile.TemporaryDirectory(prefix="forker-haproxy-") as tmp:
        config = os.path.join(tmp, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(recipe("haproxy.cfg", front, one.port, two.port))
        check = subprocess.run([HAPROXY, "-c", "-f", config], capture_output=True, text=True,
                               check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        haproxy = subprocess.Popen([HAPROXY, "-db", "-f", config], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_answering(front)
            time.sleep(0.5)  # both instances up by their health checks (rise 2, inter 200ms)
            load = stop_one_under_load(front, one, two)
        finally:
            haproxy.send_signal(signal.SIGUSR1)  # soft stop
            try:
                output, _ = haproxy.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                haproxy.kill()
                output, _ = haproxy.communicate()
        print(_report("haproxy", load))
        assert not load.failures, (_report("haproxy", load) + "\nhaproxy output:\n"
                                   + output.decode("utf-8", "replace")[-3000:])
