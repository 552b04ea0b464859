"""gunicorn's server hooks, with its names and arguments, in a configuration
file read by `python -m forker --config`: each hook writes a line to a file
named by HOOK_LOG, and the tests read what ran, where and with what."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

from harness import run_cli, wait_for
from test_master import Server, get, server_pool

HOOKS = '''
import os

def _note(*words):
    with open(os.environ["HOOK_LOG"], "a") as out:
        out.write(" ".join(map(str, words)) + "\\n")

def on_starting(server):
    server.log.info("on_starting says hello")
    _note("on_starting", server.pid == os.getpid(), server.num_workers, server.cfg.workers)

def when_ready(server):
    _note("when_ready", server.pid == os.getpid(), len(server.WORKERS))

def pre_fork(server, worker):
    _note("pre_fork", server.pid == os.getpid(), worker.ppid == os.getpid(), worker.age)

def post_fork(server, worker):
    _note("post_fork", worker.pid == os.getpid(), worker.ppid == os.getppid(), worker.age,
          server.pid == os.getppid())

def post_worker_init(worker):
    _note("post_worker_init", worker.pid == os.getpid(), worker.cfg.workers)

def pre_request(worker, req):
    _note("pre_request", worker.pid == os.getpid(), req.method, req.path, req.query,
          dict(req.headers).get("X-HOOK"))

def post_request(worker, req, environ, resp):
    _note("post_request", worker.pid == os.getpid(), req.path, environ["PATH_INFO"],
          resp.status.replace(" ", "_"))

def nworkers_changed(server, new_value, old_value):
    _note("nworkers_changed", new_value, old_value)

def on_reload(server):
    _note("on_reload", server.num_workers)

def worker_int(worker):
    _note("worker_int", worker.pid == os.getpid())

def worker_exit(server, worker):
    _note("worker_exit", worker.pid == os.getpid(), server.pid == os.getppid())

def child_exit(server, worker):
    _note("child_exit", server.pid == os.getpid(), worker.pid != os.getpid())

def on_exit(server):
    _note("on_exit", server.pid == os.getpid())
'''

WSGI_APP = '''
import time

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/stream":
        start_response("201 Created", [("Content-Type", "text/plain")])
        return (part for part in [b"a", b"b"])
    if path == "/sleep":
        time.sleep(30)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
'''


@pytest.fixture
def servers(tmp_path):
    with server_pool(tmp_path) as start:
        yield start


def cli(servers, tmp_path: Path, *args: str, config: str = HOOKS, env=None) -> Server:
    (tmp_path / "hooks_conf.py").write_text(textwrap.dedent(config))
    (tmp_path / "hooks_app.py").write_text(WSGI_APP)
    argv = [sys.executable, "-m", "forker", "--config", "hooks_conf.py",
            "--bind", "127.0.0.1:0", *args]
    return servers({}, argv=argv, env=dict(env or {}, HOOK_LOG=str(tmp_path / "hooks.log")))


def connection(server: Server) -> http.client.HTTPConnection:
    host, _, port = server.address.rpartition(":")
    return http.client.HTTPConnection(host, int(port), timeout=5)


def lines(tmp_path: Path) -> List[str]:
    try:
        return (tmp_path / "hooks.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def count(tmp_path: Path, prefix: str) -> int:
    return sum(line.startswith(prefix + " ") for line in lines(tmp_path))


def test_every_master_and_worker_hook_runs_with_gunicorns_arguments(servers, tmp_path):
    server = cli(servers, tmp_path, "--workers", "2", "hooks_app:app").start(2)
    assert get(server.address, "/")[0] == 200
    conn = connection(server)
    conn.request("GET", "/stream?x=1", headers={"X-Hook": "yes"})
    response = conn.getresponse()
    assert (response.status, response.read()) == (201, b"ab")
    conn.close()
    wait_for(lambda: "post_request True /stream /stream 201_Created" in lines(tmp_path),
             "post_request of /stream", 10)
    server.signal(signal.SIGTTIN)
    server.wait_workers(3)
    server.signal(signal.SIGHUP)  # the file says 2 workers again
    wait_for(lambda: count(tmp_path, "on_reload") == 1, "on_reload", 10)
    wait_for(lambda: count(tmp_path, "post_worker_init") == 5, "the new workers", 10)
    server.wait_workers(2)
    server.signal(signal.SIGINT)
    assert server.wait(15) == 0
    log = lines(tmp_path)
    assert log[:3] == ["nworkers_changed 2 None", "on_starting True 2 2", "when_ready True 0"]
    assert "on_starting says hello" in server.log()
    assert "nworkers_changed 3 2" in log and "nworkers_changed 2 3" in log
    assert "on_reload 2" in log
    assert [line for line in log if line.startswith("pre_fork")] == [
        f"pre_fork True True {age}" for age in range(1, 6)]
    assert sorted(line for line in log if line.startswith("post_fork")) == [
        f"post_fork True True {age} True" for age in range(1, 6)]
    assert log.count("post_worker_init True 2") == 5
    assert "pre_request True GET /stream x=1 yes" in log
    assert "post_request True /stream /stream 201_Created" in log
    assert "post_request True / / 200_OK" in log
    # the old generation retired on HUP and the new one on INT: each ran worker_exit
    assert log.count("worker_exit True True") == 5
    assert count(tmp_path, "worker_int") == 2
    assert log.count("child_exit True True") == 5
    assert log[-1] == "on_exit True"


def test_worker_abort_runs_in_a_worker_past_its_timeout(servers, tmp_path):
    server = cli(servers, tmp_path, "--workers", "1", "--timeout", "1", "hooks_app:app",
                 config=HOOKS + '''
def worker_abort(worker):
    _note("worker_abort", worker.pid == os.getpid())
''').start(1)
    victim = server.worker_pids()[0]
    with pytest.raises(OSError):
        get(server.address, "/sleep", timeout=20)
    wait_for(lambda: "worker_abort True" in lines(tmp_path), "worker_abort", 10)
    wait_for(lambda: victim not in server.worker_pids() and server.worker_pids(),
             "a new worker", 10)
    # the master calls child_exit once it reaped the victim, which may follow the fork
    # of its replacement
    wait_for(lambda: "child_exit True True" in lines(tmp_path), "child_exit", 10)
    log = lines(tmp_path)
    assert log.index("worker_abort True") < log.index("worker_exit True True")


def test_pre_exec_runs_in_the_new_master_of_an_upgrade(servers, tmp_path):
    server = cli(servers, tmp_path, "--workers", "1", "hooks_app:app", config=HOOKS + '''
def pre_exec(server):
    _note("pre_exec", server.pid == os.getppid(), os.getpid() != server.pid)
''').start(1)
    server.signal(signal.SIGUSR2)
    wait_for(lambda: "pre_exec True True" in lines(tmp_path), "pre_exec", 10)
    wait_for(lambda: count(tmp_path, "when_ready") == 2, "the new master ready", 20)


def test_request_hooks_around_a_native_handler(servers, tmp_path):
    server = cli(servers, tmp_path, "--workers", "1", "master_app:app", config='''
import os

def _note(*words):
    with open(os.environ["HOOK_LOG"], "a") as out:
        out.write(" ".join(map(str, words)) + "\\n")

def pre_request(worker, req):
    _note("pre_request", req.method, req.path, req.query, req.headers.get("x-hook"))

def post_request(worker, req, environ, resp):
    _note("post_request", req.path, resp.status.replace(" ", "_"), environ == {})
''').start(1)
    conn = connection(server)
    conn.request("POST", "/here?a=b", body=b"", headers={"X-Hook": "native"})
    assert conn.getresponse().status == 200
    conn.close()
    wait_for(lambda: count(tmp_path, "post_request") >= 2, "post_request", 10)
    assert "pre_request POST /here a=b native" in lines(tmp_path)
    assert "post_request /here 200_OK True" in lines(tmp_path)


def test_request_hooks_keep_their_own_attributes_and_add_fields(servers, tmp_path):
    """The idioms of gunicorn configs: pre_request stamps req (req.start_time,
    which was an AttributeError: every request a 500) and appends a field the
    application then reads; post_request reads the stamp, req.peer_addr and
    resp.response_length."""
    (tmp_path / "echo_app.py").write_text(
        "def app(environ, start_response):\n"
        "    body = environ.get('HTTP_X_ADDED', 'none').encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n")
    server = cli(servers, tmp_path, "--workers", "1", "echo_app:app", config='''
import os
import time

def _note(*words):
    with open(os.environ["HOOK_LOG"], "a") as out:
        out.write(" ".join(map(str, words)) + "\\n")

def pre_request(worker, req):
    req.start_time = time.monotonic()
    req.headers.append(("X-ADDED", "by-the-hook"))

def post_request(worker, req, environ, resp):
    _note("post_request", req.start_time > 0, req.peer_addr[0], resp.response_length)
''').start(1)
    assert get(server.address, "/") == (200, "by-the-hook")
    wait_for(lambda: count(tmp_path, "post_request"), "post_request")
    assert "post_request True 127.0.0.1 11" in lines(tmp_path)


def test_forkers_one_argument_post_fork_is_still_called_with_the_worker_id(servers, tmp_path):
    server = cli(servers, tmp_path, "--workers", "2", "hooks_app:app", config='''
import os

def post_fork(worker_id):
    with open(os.environ["HOOK_LOG"], "a") as out:
        out.write(f"post_fork {worker_id}\\n")
''').start(2)
    wait_for(lambda: count(tmp_path, "post_fork") == 2, "post_fork", 10)
    assert sorted(lines(tmp_path)) == ["post_fork 0", "post_fork 1"]
    server.signal(signal.SIGTERM)
    assert server.wait(15) == 0


@pytest.mark.parametrize("hook, signature", [
    ("post_fork", "server, worker, extra"),
    ("worker_exit", "server"),
    ("pre_request", "req"),
    ("on_starting", ""),
])
def test_a_hook_that_cannot_take_gunicorns_arguments_is_refused_at_start(tmp_path, hook,
                                                                          signature):
    (tmp_path / "conf.py").write_text(f"def {hook}({signature}):\n    pass\n")
    out = run_cli("--config", "conf.py", "--bind", "127.0.0.1:0", cwd=str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert f"{hook}: the hook must take gunicorn's arguments, {hook}(" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("hooks, before_workers", [
    ("def on_starting(server):\n    raise RuntimeError('no database')\n", True),
    ("def when_ready(server):\n    raise RuntimeError('no database')\n", True),
    # the server stops at once (TERM from when_ready), then on_exit fails
    ("import os, signal\n\ndef when_ready(server):\n    os.kill(server.pid, signal.SIGTERM)\n\n"
     "def on_exit(server):\n    raise RuntimeError('no database')\n", False),
])
def test_a_failing_start_or_exit_hook_is_exit_status_1(tmp_path, hooks, before_workers):
    """As in gunicorn: on_starting or when_ready raising stops the server
    before any worker serves, on_exit raising makes the exit status 1 (the
    server served on with 0)."""
    (tmp_path / "failing_conf.py").write_text(hooks)
    out = run_cli("-c", "failing_conf.py", "-b", "127.0.0.1:0", cwd=str(tmp_path))
    assert out.returncode == 1, out.stderr
    assert "RuntimeError: no database" in out.stderr  # the hook's traceback, logged
    assert ("worker 0 pid" not in out.stderr) == before_workers, out.stderr


def test_a_pidfile_problem_is_one_line(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "taken.pid").write_text(f"{other.pid}\n")  # a running process
        out = run_cli("-p", str(tmp_path / "taken.pid"), "-b", "127.0.0.1:0",
                      cwd=str(tmp_path))
    finally:
        other.kill()
        other.wait()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"names process {other.pid}, which is running" in out.stderr
    out = run_cli("-p", str(tmp_path / "no" / "dir.pid"), "-b", "127.0.0.1:0",
                  cwd=str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "pidfile: cannot write" in out.stderr
