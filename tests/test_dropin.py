"""What a gunicorn user meets first, through `python -m forker`: errors at start
(a port in use, an address not on this host, a unix socket in a missing
directory, an application that does not import, an access log that cannot be
written), the process name, --reload, --daemon, -e, --pythonpath; and one
gunicorn.conf.py with hooks and one gunicorn command line, run by gunicorn
and by forker, with the same effect."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List, Optional

import pytest

from harness import PROBE, ServerProcess, free_port, run_cli, wait_for

NO_PYC = {"PYTHONDONTWRITEBYTECODE": "1"}  # an edited module is never read from a stale .pyc


def run(*argv: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_cli(*argv, cwd=str(cwd), env=NO_PYC, timeout=timeout)


def get(port: int, path: str = "/") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return f"{response.status} {response.read().decode()}"
    finally:
        conn.close()


def answer(port: int, path: str = "/"):
    try:
        return get(port, path)
    except OSError:
        return None


@pytest.fixture
def procs():
    """start(argv, cwd, extra_env, port, workers) -> ServerProcess, ready when
    port answers (with workers in their loop when given); every one is stopped
    at the end."""
    started: List[ServerProcess] = []

    def start(argv: List[str], cwd: Path, extra_env=None, *, port: int,
              workers: Optional[int] = None, probe: Optional[bytes] = PROBE) -> ServerProcess:
        started.append(ServerProcess(argv, cwd=str(cwd), env=dict(NO_PYC, **(extra_env or {})),
                                     address=f"127.0.0.1:{port}", workers=workers, probe=probe))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


# -- errors at start -------------------------------------------------------------------


def test_a_port_in_use_is_one_line_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run("-b", f"127.0.0.1:{port}", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"forker: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another process listens there)"), out.stderr
    assert "Traceback" not in out.stderr


def test_an_address_not_on_this_host_is_one_line_naming_it(tmp_path):
    out = run("-b", "192.0.2.1:8080", cwd=tmp_path)  # TEST-NET-1: on no interface here
    assert out.returncode == 1
    assert "forker: error: cannot listen on 192.0.2.1:8080: Cannot assign requested address " \
           "(no interface of this host has that address)" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_unix_socket_in_a_missing_directory_is_one_line_naming_it(tmp_path):
    out = run("-b", f"unix:{tmp_path}/nowhere/app.sock", cwd=tmp_path)
    assert out.returncode == 1
    assert (f"forker: error: cannot listen on unix:{tmp_path}/nowhere/app.sock: the directory "
            f"{tmp_path}/nowhere does not exist") in out.stderr
    assert "Traceback" not in out.stderr


def test_an_address_given_twice_is_one_line_saying_so(tmp_path):
    """Not "another process listens there": the same --bind twice (two
    ephemeral ports, :0, are two addresses and fine)."""
    port = free_port()
    out = run("-b", f"127.0.0.1:{port}", "-b", f"127.0.0.1:{port}", cwd=tmp_path)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: it is given twice" in out.stderr, out.stderr
    assert "another process" not in out.stderr and "Traceback" not in out.stderr


def test_a_unix_socket_where_none_can_be_made_names_the_reason(tmp_path):
    """/proc exists: "does not exist" would mislead."""
    out = run("-b", "unix:/proc/forker-test.sock", cwd=tmp_path)
    assert out.returncode == 1
    assert "cannot listen on unix:/proc/forker-test.sock: " in out.stderr
    assert "does not exist" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("source, what", [
    ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
    ("def app(environ, start_response:\n    pass\n", "SyntaxError"),
])
def test_an_application_that_does_not_import_is_one_traceback_and_an_exit(tmp_path, source,
                                                                          what):
    (tmp_path / "broken.py").write_text(source)
    out = run("-w", "3", "-b", "127.0.0.1:0", "broken:app", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    assert out.stderr.count("Traceback") == 1, out.stderr
    assert out.stderr.count(what) == 1, out.stderr
    assert "could not load the application; exiting" in out.stderr
    assert "retrying in" not in out.stderr


def test_an_access_log_that_cannot_be_written_is_refused_at_start(tmp_path):
    out = run("-b", "127.0.0.1:0", "--access-logfile", f"{tmp_path}/missing/access.log",
              cwd=tmp_path)
    assert out.returncode == 2
    assert f"forker: error: access_log: cannot write to {tmp_path}/missing/access.log: " \
           "No such file or directory" in out.stderr
    assert "Traceback" not in out.stderr


def test_name_sets_the_command_name_of_the_master_and_workers(procs, tmp_path):
    port = free_port()
    server = procs([sys.executable, "-m", "forker", "-b", f"127.0.0.1:{port}", "-w", "2",
                    "-n", "dropin"], tmp_path, port=port, workers=2)
    master = server.pid
    assert Path(f"/proc/{master}/comm").read_text().strip() == "dropin master"

    def names():
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return sorted(Path(f"/proc/{pid}/comm").read_text().strip() for pid in children)

    wait_for(lambda: names() == ["dropin w0", "dropin w1"], f"the workers' names ({names()})")


# -- development and deployment flags ----------------------------------------------------


def test_reload_restarts_the_workers_when_a_source_file_changes(procs, tmp_path):
    app = tmp_path / "devapp.py"
    app.write_text("def app(environ, start_response):\n"
                   "    start_response('200 OK', [])\n    return [b'one']\n")
    port = free_port()
    server = procs([sys.executable, "-m", "forker", "-b", f"127.0.0.1:{port}", "-w", "2",
                    "--reload", "devapp:app"], tmp_path, port=port, workers=2)
    wait_for(lambda: answer(port) == "200 one", "the first version")
    time.sleep(1.1)  # a modification time the watcher can tell from the first one's
    app.write_text("def app(environ, start_response):\n"
                   "    start_response('200 OK', [])\n    return [b'two']\n")
    wait_for(lambda: answer(port) == "200 two", "the second version")
    assert "reload: " in server.stderr and "devapp.py changed" in server.stderr


def test_reload_extra_file(procs, tmp_path):
    (tmp_path / "template.txt").write_text("first")
    (tmp_path / "tplapp.py").write_text(
        "TEXT = open('template.txt').read().encode()\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [TEXT]\n")
    port = free_port()
    procs([sys.executable, "-m", "forker", "-b", f"127.0.0.1:{port}", "--reload",
           "--reload-extra-file", "template.txt", "tplapp:app"], tmp_path, port=port)
    wait_for(lambda: answer(port) == "200 first", "the first text")
    time.sleep(1.1)
    (tmp_path / "template.txt").write_text("second")
    wait_for(lambda: answer(port) == "200 second", "the second text")


def test_daemon_env_and_pythonpath(procs, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "envapp.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [os.environ['GREETING'].encode()]\n")
    port = free_port()
    pidfile = tmp_path / "daemon.pid"
    out = run("-D", "-p", str(pidfile), "-b", f"127.0.0.1:{port}", "-e", "GREETING=hi there",
              "--pythonpath", "lib", "envapp:app", cwd=tmp_path)
    assert out.returncode == 0, out.stderr  # the command returns; the server runs on
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "the pidfile"))
    try:
        assert wait_for(lambda: answer(port), "an answer") == "200 hi there"
        assert os.getsid(pid) != os.getsid(0)  # detached: a session of its own
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), "the daemon to stop")


def test_capture_output_sends_prints_to_the_error_log(procs, tmp_path):
    (tmp_path / "printer.py").write_text(
        "import sys\n"
        "def app(environ, start_response):\n"
        "    print('printed by the app', flush=True)\n"
        "    start_response('200 OK', [])\n    return [b'ok']\n")
    port = free_port()
    errors = tmp_path / "error.log"
    procs([sys.executable, "-m", "forker", "-b", f"127.0.0.1:{port}", "--error-logfile",
           str(errors), "--capture-output", "printer:app"], tmp_path, port=port)
    wait_for(lambda: answer(port), "an answer")
    wait_for(lambda: "printed by the app" in errors.read_text(), "the print in the error log")


# -- the same configuration and command line under gunicorn and forker ---------------------

CONF = '''
import os
import multiprocessing

bind = "127.0.0.1:1"  # the command line's -b wins, as in gunicorn
workers = 2
worker_class = "sync"
timeout = 30
keepalive = 2
preload_app = False
raw_env = ["FROM_CONF=conf"]
accesslog = os.environ["ACCESS_LOG"]
access_log_format = '%(h)s "%(r)s" %(s)s'
loglevel = "info"
proc_name = "dropin"
forwarded_allow_ips = "127.0.0.1"

def _note(*words):
    with open(os.environ["HOOK_LOG"], "a") as out:
        out.write(" ".join(map(str, words)) + "\\n")

def on_starting(server):
    _note("on_starting", server.cfg.workers, server.cfg.preload_app, server.cfg.proc_name)

def when_ready(server):
    _note("when_ready", server.num_workers)

def pre_fork(server, worker):
    _note("pre_fork", worker.ppid == server.pid)

def post_fork(server, worker):
    _note("post_fork", worker.pid == os.getpid())

def post_worker_init(worker):
    _note("post_worker_init", worker.ppid == os.getppid())

def pre_request(worker, req):
    _note("pre_request", req.method, req.path, req.query)

def post_request(worker, req, environ, resp):
    _note("post_request", req.path, environ["PATH_INFO"], resp.status)

def nworkers_changed(server, new_value, old_value):
    _note("nworkers_changed", new_value, old_value)

def worker_exit(server, worker):
    _note("worker_exit", worker.pid == os.getpid())

def child_exit(server, worker):
    _note("child_exit", worker.ppid == os.getpid())

def on_exit(server):
    _note("on_exit", server.pid == os.getpid())
'''

APP = '''
import os

def app(environ, start_response):
    body = " ".join([environ["PATH_INFO"], environ.get("QUERY_STRING", ""),
                     os.environ.get("FROM_CONF", "-"), os.environ.get("FROM_FLAG", "-"),
                     environ["wsgi.url_scheme"], environ["REMOTE_ADDR"]])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
'''


def _served_by(server: str, procs, tmp_path: Path):
    where = tmp_path / server
    where.mkdir()
    (where / "gunicorn.conf.py").write_text(CONF)
    (where / "dropin_app.py").write_text(APP)
    port = free_port()
    argv = [sys.executable, "-m", server, "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
            "-w", "2", "-k", "sync", "-t", "30", "-e", "FROM_FLAG=flag", "-n", "dropin",
            "--access-logfile", str(where / "access.log"), "-p", str(where / "app.pid"),
            "--forwarded-allow-ips", "127.0.0.1", "dropin_app:app"]
    # no probe: the hooks would see it; GET /ready, which both are asked, says it serves
    proc = procs(argv, where, {"ACCESS_LOG": str(where / "unused.log"),
                               "HOOK_LOG": str(where / "hooks.log")}, port=port, probe=None)
    wait_for(lambda: answer(port, "/ready"), f"{server} to answer")
    hooks = where / "hooks.log"
    wait_for(lambda: hooks.read_text().count("post_worker_init") == 2, "both workers")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/x?y=1", headers={"X-Forwarded-For": "203.0.113.9",
                                           "X-Forwarded-Proto": "https"})
    response = conn.getresponse()
    body = f"{response.status} {response.read().decode()}"
    conn.close()
    pid = int((where / "app.pid").read_text())
    assert pid == proc.pid
    proc.stop()
    wait_for(lambda: "on_exit" in hooks.read_text(), f"{server}'s on_exit")
    access = (where / "access.log").read_text()
    return body, sorted(set(hooks.read_text().splitlines())), access


def test_one_gunicorn_conf_and_command_line_same_effect_under_both(procs, tmp_path):
    gunicorn = _served_by("gunicorn", procs, tmp_path)
    forker = _served_by("forker", procs, tmp_path)
    # -e replaces raw_env (FROM_CONF); the scheme comes from the trusted proxy in both;
    # forker also takes the client address from it, which gunicorn leaves to the
    # application (README: "Coming from gunicorn", the one difference by design).
    assert gunicorn[0] == "200 /x y=1 - flag https 127.0.0.1"
    assert forker[0] == "200 /x y=1 - flag https 203.0.113.9"
    assert forker[1] == gunicorn[1]
    assert 'GET /x?y=1 HTTP/1.1" 200' in forker[2] and 'GET /x?y=1 HTTP/1.1" 200' in gunicorn[2]
    assert not (tmp_path / "forker" / "unused.log").exists()
