"""The master under real process trees on 127.0.0.1: respawn, signals, reload,
upgrade, timeouts, recycling, hooks. Every server runs in its own session and
is killed with its whole process group when the test ends, passed or not.

The load is bounded: a few client threads, one connection per request, a few
hundred to a few thousand requests per test."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from harness import ForkerProcess, Reader, ServerProcess, children, connect, request, wait_for

TEST_SECONDS = 60  # no test may run longer


# -- servers and clients -------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def get(address: str, path: str = "/", timeout: float = 5.0) -> Tuple[int, str]:
    """One request on a fresh connection to an address as the log names it
    (host:port, [v6]:port, unix:/path); (status, body)."""
    status, _, body = request(address, "GET", path, timeout=timeout)
    return status, body.decode()


class Server(ServerProcess):
    """`python -c` running forker.master.run(app, options) (or argv) in its own
    session, in tmp_path, which is on its path too. Not waited for: start()
    waits until it serves; every test's servers are killed by server_pool."""

    def __init__(self, tmp_path: Path, options: Dict, app: str = "master_app:app",
                 env: Optional[Dict[str, str]] = None, code: Optional[str] = None,
                 argv: Optional[List[str]] = None, **kwargs) -> None:
        code = code or f"import sys; from forker.master import run; sys.exit(run({app!r}, {options!r}))"
        super().__init__(argv or [sys.executable, "-c", code], cwd=str(tmp_path),
                         env=dict(env or {}, PYTHONDONTWRITEBYTECODE="1"),
                         pythonpath=[str(tmp_path)], wait=False, **kwargs)

    def log(self) -> str:
        """All it wrote, stderr then stdout."""
        return self.stderr + "\n" + self.stdout

    def start(self, workers: int, timeout: float = 15.0) -> "Server":
        """Wait until it listens, `workers` workers run their loop and it answers."""
        self.workers = workers
        self.wait_ready(timeout)
        return self

    def answers(self, path: str = "/") -> Optional[str]:
        try:
            status, body = get(self.address, path, timeout=2)
        except (OSError, EOFError):
            return None
        return body if status == 200 else None

    def wait_all_serving(self, count: int, timeout: float = 10.0) -> None:
        """Until `count` distinct workers have answered (all have loaded the app)."""
        seen = set()

        def more():  # concurrent slow requests: a busy worker leaves the next to another
            bodies: List[Optional[str]] = [None] * count
            def one(index: int) -> None:
                bodies[index] = self.answers("/sleep?0.2")
            threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seen.update(body.split()[0] for body in bodies if body)
            return len(seen) >= count
        wait_for(more, f"{count} workers to answer", timeout)

    def wait_workers(self, count: int, timeout: float = 10.0) -> List[int]:
        return wait_for(lambda: len(self.worker_pids()) == count and self.worker_pids(),
                        f"{count} workers (have {self.worker_pids()})", timeout)


@contextlib.contextmanager
def server_pool(tmp_path: Path):
    """start(options, ...) -> Server; every server's process group is killed at
    the end, and the whole block may not last more than TEST_SECONDS."""
    started: List[Server] = []

    def start(options: Dict, **kwargs) -> Server:
        server = Server(tmp_path, options, **kwargs)
        started.append(server)
        return server

    previous = signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(TEST_SECONDS)
    try:
        yield start
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        for server in started:
            server.stop(timeout=0)  # the process group killed at once


@pytest.fixture
def servers(tmp_path):
    with server_pool(tmp_path) as start:
        yield start


def _too_long(signum, frame):
    raise TimeoutError(f"test ran longer than {TEST_SECONDS} s")


def group_gone(pgid: int) -> bool:
    """No process of the process group pgid is left (zombies aside)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return False
    return True


class Load:
    """Client threads sending one request per connection until stopped."""

    def __init__(self, address: str, threads: int = 2, path: str = "/", pause: float = 0.002,
                 limit: int = 4000) -> None:
        self.address, self.path, self.pause, self.limit = address, path, pause, limit
        self.ok = 0
        self.failures: List[str] = []
        self.bodies: List[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def _run(self) -> None:
        while not self._stop.is_set() and self.total < self.limit:
            try:
                status, body = get(self.address, self.path)
                outcome = None if status == 200 else f"status {status}"
            except (OSError, EOFError, ValueError) as exc:
                outcome, body = f"{type(exc).__name__}: {exc}", ""
            with self._lock:
                if outcome is None:
                    self.ok += 1
                    self.bodies.append(body)
                else:
                    self.failures.append(outcome)
            time.sleep(self.pause)

    def answered(self) -> int:
        with self._lock:
            return len(self.bodies)

    def served_by(self, since: int = 0) -> set:
        """The worker pids that answered, from the since-th answer on."""
        with self._lock:
            return {int(body.split()[0]) for body in self.bodies[since:]}

    def wait_requests(self, count: int, timeout: float = 20.0) -> None:
        target = self.total + count
        wait_for(lambda: self.total >= target, f"{count} more requests", timeout)


def record(name: str, load: Load, extra: str = "") -> None:
    """Print the load held and failures counted (collected for RELIABILITY.md)."""
    print(f"\n[reliability] {name}: {load.total} requests, {len(load.failures)} failed "
          f"{sorted(set(load.failures))[:3]} {extra}")


# -- lifecycle -------------------------------------------------------------------


def test_workers_serve_then_term_exits_cleanly_with_per_worker_counts(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2}).start(2)
    for _ in range(20):
        assert server.answers()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert wait_for(lambda: group_gone(server.pid), "every process to exit", 30)
    lines = re.findall(r"worker (\d+) pid (\d+) served (\d+) requests", server.log())
    assert sorted(int(w) for w, _, _ in lines) == [0, 1]
    assert sum(int(n) for _, _, n in lines) >= 20


def test_sigkill_worker_under_load_is_replaced_and_the_replacement_serves(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2}).start(2)
    with Load(server.address, threads=2) as load:
        load.wait_requests(100)
        before = server.worker_pids()
        victim, survivor = before
        answered_before = load.answered()
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()

        def replaced() -> Optional[List[int]]:
            now = server.worker_pids()
            return now if len(now) == 2 and victim not in now else None
        after = wait_for(replaced, "a replacement worker", 10.0)
        assert survivor in after, (before, after)
        (new_pid,) = set(after) - set(before)
        # the new worker itself, not the survivor, answers requests of the load
        wait_for(lambda: new_pid in load.served_by(since=answered_before),
                 "the replacement to serve", 10.0)
        serving_after = time.monotonic() - killed_at
        load.wait_requests(200)
    # README's "within a second" is recorded, not asserted: on a shared
    # machine the figure measures the scheduler as much as the master
    record("SIGKILL a worker", load, f"(replacement serving after {serving_after:.2f} s)")
    # Only what the killed worker held may fail: at most one request per client.
    assert len(load.failures) <= 2, load.failures


def sleeping(server: "Server", seconds: str) -> None:
    """Until a handler of server sleeps `seconds` (master_app's /sleep says so)."""
    wait_for(lambda: f" sleeping {seconds} s" in server.log(),
             f"a handler sleeping {seconds} s", 10)


def test_term_lets_a_sleeping_handler_finish(servers):
    # graceful_timeout far above the hang bound of wait(): a master that waited
    # for it instead of its workers' end would fail, however slow the machine
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "graceful_timeout": 50}).start(2)
    result: Dict[str, object] = {}

    def slow():
        try:
            result["response"] = get(server.address, "/sleep?2", timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    client = threading.Thread(target=slow)
    client.start()
    sleeping(server, "2")
    server.signal(signal.SIGTERM)
    client.join(30)
    assert "error" not in result, result
    status, body = result["response"]
    assert status == 200 and body.split()[1] == str(server.pid)
    assert server.wait(30) == 0
    assert "killing it" not in server.log()
    assert wait_for(lambda: group_gone(server.pid), "every process to exit", 30)


def test_term_kills_what_outlives_graceful_timeout(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 1, "graceful_timeout": 1}).start(1)
    threading.Thread(target=lambda: _ignore(get, server.address, "/sleep?50", 55),
                     daemon=True).start()
    sleeping(server, "50")
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0  # the handler sleeps 50 s: it was killed
    assert "still running after 1 s; killing it" in server.log()
    assert re.search(r"worker 0 pid \d+ served 1 requests", server.log())
    assert wait_for(lambda: group_gone(server.pid), "every process to exit", 30)


def test_int_stops_fast(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "graceful_timeout": 50}).start(2)
    threading.Thread(target=lambda: _ignore(get, server.address, "/sleep?50", 55),
                     daemon=True).start()
    sleeping(server, "50")
    server.signal(signal.SIGINT)
    assert server.wait(30) == 0  # neither the 50 s handler nor the graceful timeout
    assert wait_for(lambda: group_gone(server.pid), "every process to exit", 30)


def _ignore(function, *args):
    try:
        function(*args)
    except Exception:  # noqa: BLE001
        pass


def test_master_sigkill_leaves_no_worker_behind(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 3}).start(3)
    workers = server.worker_pids()
    server.signal(signal.SIGKILL)
    server.wait(5)
    wait_for(lambda: not any(alive(pid) for pid in workers), "the orphaned workers to exit", 30)


# -- scaling, reload, upgrade ----------------------------------------------------------


def test_ttin_ttou_change_the_worker_count(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2}).start(2)
    for count in (3, 4):
        server.signal(signal.SIGTTIN)
        server.wait_workers(count, 5)
    for count in (3, 2, 1):  # one at a time: a signal pending twice is delivered once
        server.signal(signal.SIGTTOU)
        server.wait_workers(count, 5)
    server.signal(signal.SIGTTOU)  # never below one
    wait_for(lambda: "TTOU: already at one worker" in server.log(), "the last TTOU", 30)
    assert len(server.worker_pids()) == 1 and "TTOU: 0 workers" not in server.log()
    assert server.answers()


RELOADABLE = '''
import os
VERSION = {version!r}
def app(request):
    return f"{{os.getpid()}} {{os.getppid()}} {{VERSION}}"
'''


@pytest.mark.parametrize("preload", [False, True])
def test_hup_under_load_replaces_every_worker_with_new_code(servers, tmp_path, preload):
    module = tmp_path / "reloadable.py"
    module.write_text(RELOADABLE.format(version="one"))
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "preload": preload},
                     app="reloadable:app").start(2)
    server.wait_all_serving(2)
    old = set(server.worker_pids())
    assert server.answers().split()[2] == "one"
    with Load(server.address, threads=3) as load:
        load.wait_requests(150)
        module.write_text(RELOADABLE.format(version="two, longer"))
        server.signal(signal.SIGHUP)
        wait_for(lambda: len(server.worker_pids()) == 2 and not old & set(server.worker_pids()),
                 "every worker replaced", 10)
        load.wait_requests(300)
    record(f"HUP under load (preload={preload})", load)
    assert load.failures == []
    assert server.answers().split(None, 2)[2] == "two, longer"
    assert load.bodies[-1].split(None, 2)[2] == "two, longer"


RELOAD_OPTIONS = '''
import json, sys
from forker.master import run
def options():
    with open("options.json") as source:
        return json.load(source)
sys.exit(run("master_app:app", options(), options))
'''


def test_hup_rereads_the_configuration(servers, tmp_path):
    import json

    options = tmp_path / "options.json"
    options.write_text(json.dumps({"bind": "127.0.0.1:0", "workers": 2}))
    server = servers({}, code=RELOAD_OPTIONS).start(2)
    old = set(server.worker_pids())
    options.write_text(json.dumps({"bind": "127.0.0.1:1", "workers": 3, "timeout": 5}))
    server.signal(signal.SIGHUP)
    wait_for(lambda: len(server.worker_pids()) == 3 and not old & set(server.worker_pids()),
             "three new workers", 10)
    log = server.log()
    assert "HUP: bind changed; that takes an upgrade (USR2) or a restart" in log
    assert "HUP: reloading; starting 3 new workers" in log
    assert server.answers()  # still on the address it was started with


def test_hup_with_a_broken_application_keeps_the_old_workers(servers, tmp_path):
    module = tmp_path / "reloadable.py"
    module.write_text(RELOADABLE.format(version="one"))
    server = servers({"bind": "127.0.0.1:0", "workers": 2}, app="reloadable:app").start(2)
    server.wait_all_serving(2)
    old = set(server.worker_pids())
    module.write_text("raise ImportError('broken on purpose')\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "keeping the old workers" in server.log(), "the reload to fail", 10)
    time.sleep(0.5)
    assert set(server.worker_pids()) == old, server.log()
    assert server.answers().split()[2] == "one"


@pytest.mark.parametrize("reuse_port", [False, True])
def test_usr2_then_term_old_master_serves_throughout(servers, tmp_path, reuse_port):
    pidfile = tmp_path / "forker.pid"
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "pidfile": str(pidfile),
                      "reuse_port": reuse_port}).start(2)
    assert int(pidfile.read_text()) == server.pid
    with Load(server.address, threads=3) as load:
        load.wait_requests(100)
        server.signal(signal.SIGUSR2)
        new_master = wait_for(lambda: _read_pid(pidfile) not in (None, server.pid)
                              and _read_pid(pidfile), "the new master's pidfile", 10)
        assert _read_pid(Path(f"{pidfile}.oldbin")) == server.pid
        wait_for(lambda: len(children(new_master)) == 2, "the new master's workers", 10)
        load.wait_requests(100)
        server.signal(signal.SIGTERM)
        assert server.wait(10) == 0
        load.wait_requests(200)
        served_by_new = set(children(new_master))
        assert served_by_new & load.served_by()
    record(f"USR2 upgrade then TERM to the old master (reuse_port={reuse_port})", load)
    if reuse_port:
        assert "2 inherited sockets" in server.log()
    assert load.failures == []
    assert get(server.address)[1].split()[1] == str(new_master)
    os.kill(new_master, signal.SIGTERM)
    wait_for(lambda: not alive(new_master), "the new master to stop", 10)
    assert not pidfile.exists()


def test_usr2_whose_new_master_cannot_start_keeps_the_old_one(servers, tmp_path):
    module = tmp_path / "reloadable.py"
    module.write_text(RELOADABLE.format(version="one"))
    pidfile = tmp_path / "forker.pid"
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "preload": True,
                      "pidfile": str(pidfile)}, app="reloadable:app").start(2)
    workers = server.worker_pids()
    module.write_text("raise ImportError('broken on purpose')\n")
    server.signal(signal.SIGUSR2)
    wait_for(lambda: "this master goes on serving" in server.log(), "the upgrade to fail", 10)
    assert re.search(r"USR2: the new master pid \d+ exited \(exit status 1\)", server.log())
    assert _read_pid(pidfile) == server.pid
    assert not Path(f"{pidfile}.oldbin").exists()
    assert server.worker_pids() == workers
    assert server.answers().split()[2] == "one"


def _read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


# -- liveness and recycling --------------------------------------------------------


def test_a_handler_streaming_steadily_is_not_stuck(servers):
    """With threads, timeout counts from a streamed body's last piece, as from
    an upload's last bytes: a stream of events longer than timeout is not a
    stuck handler (the worker was killed, and the stream cut, at timeout)."""
    server = servers({"bind": "127.0.0.1:0", "workers": 1, "timeout": 1,
                      "threads": 4}).start(1)
    status, body = get(server.address, "/drip?12", timeout=30)  # 3 s, a piece every 0.25 s
    assert (status, body) == (200, "drop;" * 12)
    assert "killing it" not in server.log()


@pytest.mark.parametrize("threads", [1, 4])
def test_handler_in_an_endless_loop_is_killed_after_timeout(servers, threads):
    # with threads the loop keeps turning: the slot must show the stuck call
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "timeout": 1,
                      "threads": threads}).start(2)
    before = set(server.worker_pids())
    threading.Thread(target=lambda: _ignore(get, server.address, "/loop", 10), daemon=True).start()
    wait_for(lambda: "killing it" in server.log(), "the timeout to fire", 30)
    wait_for(lambda: len(set(server.worker_pids()) - before) == 1
             and len(server.worker_pids()) == 2, "the stuck worker replaced",
             30)
    log = server.log()
    assert re.search(r"handler running for [\d.]+ s > timeout 1 s on request #\d+ "
                     r"\(GET /loop\); killing it", log), log
    assert "master_app.py" in log  # the stuck worker's stack, printed before SIGKILL
    assert server.answers()


def test_max_requests_recycles_workers(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "max_requests": 20,
                      "max_requests_jitter": 5}).start(2)
    with Load(server.address, threads=2, limit=300) as load:
        wait_for(lambda: load.total >= 300, "300 requests", 30)
    record("max_requests=20 recycling", load, f"({len(load.served_by())} worker pids)")
    assert load.failures == []
    assert len(load.served_by()) >= 300 // 25
    assert len(server.worker_pids()) == 2


@pytest.mark.parametrize("threads", [1, 4])
def test_the_last_answer_before_a_recycle_says_close(threads):
    """max_requests: the answer that completes a worker's share says
    Connection: close, so that a client keeping the connection (a balancer's
    pool) does not send its next request into a socket about to close (it
    got EOF, and nginx a 502). The kernel keeps later connections for the
    worker's successor."""
    with ForkerProcess("--max-requests", "3", "--threads", str(threads),
                       app="wsgiapps:misc_app") as server:
        with connect(server.port) as sock:
            reader = Reader(sock)
            for n in range(3):  # (the harness's readiness probe may have been one)
                sock.sendall(b"GET /cookies HTTP/1.1\r\nHost: t\r\n\r\n")
                response = reader.response()  # ClosedEarly: closed without saying so
                assert response.status == 200
                if response.fields.get("connection", "").lower() == "close":
                    break
            else:
                raise AssertionError("no answer of the worker's three said close")
            assert sock.recv(1) == b""  # closed after it, as it said
        assert get(f"127.0.0.1:{server.port}", "/cookies")[0] == 200  # the successor serves


def test_an_answer_given_as_a_graceful_stop_arrives_says_close():
    """TERM while the handler runs on the loop's thread: the stop is applied at
    the loop's next turn, but the answer already says Connection: close (it
    kept the connection alive, and the client's next request met a closed
    socket)."""
    with ForkerProcess(app="wsgiapps:misc_app") as server:
        with connect(server.port) as sock:
            sock.sendall(b"GET /stop-me HTTP/1.1\r\nHost: t\r\n\r\n")
            response = Reader(sock).response()
            assert response.body == b"stopping"
            assert response.fields.get("connection", "").lower() == "close", response
            assert sock.recv(1) == b""


def test_max_worker_memory_recycles_a_growing_worker(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 1, "max_worker_memory": 60}).start(1)
    first = server.worker_pids()[0]
    for _ in range(4):
        get(server.address, "/grow?20")
    wait_for(lambda: first not in server.worker_pids() and len(server.worker_pids()) == 1,
             "the grown worker recycled", 30)
    assert "max_worker_memory 60 MiB; recycling it" in server.log()
    assert server.answers()


def test_max_worker_memory_below_a_fresh_worker_does_not_churn(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 1, "max_worker_memory": 1}).start(1)
    # The worker that answered start() is recycled; its successor, idle, is not.
    wait_for(lambda: "is below the" in server.log(), "the warning", 30)
    idle = server.worker_pids()
    time.sleep(2.5)
    assert server.worker_pids() == idle
    assert server.log().count("recycling it") == 1
    assert server.log().count("is below the") == 1


def test_boot_crash_backs_off_then_exits_with_a_message(servers, tmp_path):
    (tmp_path / "crasher.py").write_text("import os\n"
                                         "def post_fork(server, worker):\n    os._exit(5)\n")
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "post_fork": "crasher:post_fork"})
    status = server.wait(20)
    log = server.log()
    assert status == 3, log
    assert "retrying in 0.1 s" in log and "retrying in 0.4 s" in log
    assert re.search(r"failed to boot 5 times in a row within [\d.]+ s \(last: exit status 5\); "
                     r"giving up", log), log
    assert group_gone(server.pid)


def test_an_import_error_before_any_worker_served_is_told_once_then_exits(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2},
                     env={"MASTER_APP_BROKEN": "1"})
    status = server.wait(20)
    log = server.log()
    assert status == 3, log
    assert log.count("Traceback") == 1 and "RuntimeError: this application fails" in log, log
    assert "could not load the application; exiting" in log and "retrying in" not in log
    assert group_gone(server.pid)


def test_preload_import_error_fails_before_forking(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "preload": True},
                     env={"MASTER_APP_BROKEN": "1"})
    assert server.wait(10) != 0
    assert "this application fails to import" in server.log()
    assert "listening on" not in server.log()


# -- options and the object API ------------------------------------------------------


HOOKS = '''
import os
def _note(text):
    with open(os.environ["HOOK_LOG"], "a") as out:
        out.write(text + "\\n")
def on_starting(server):
    _note(f"starting {server.cfg.workers}")
def post_fork(worker_id):
    _note(f"post_fork {worker_id} {os.getpid()}")
def child_exit(server, worker):
    _note(f"child_exit {worker.id} {worker.pid}")
'''


def test_hooks_pidfile_and_process_titles(servers, tmp_path):
    (tmp_path / "hooks.py").write_text(HOOKS)
    hook_log = tmp_path / "hooks.log"
    pidfile = tmp_path / "run" / "forker.pid"
    pidfile.parent.mkdir()
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "pidfile": str(pidfile),
                      "on_starting": "hooks:on_starting", "post_fork": "hooks:post_fork",
                      "child_exit": "hooks:child_exit", "proc_name": "titled"},
                     env={"HOOK_LOG": str(hook_log)}).start(2)
    assert int(pidfile.read_text()) == server.pid
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: hook_log.read_text().count("post_fork") == 3, "the respawn's post_fork", 30)
    assert "child_exit" in hook_log.read_text()
    try:
        import setproctitle  # noqa: F401
    except ImportError:
        pass
    else:
        with open(f"/proc/{server.pid}/cmdline", "rb") as cmdline:
            assert cmdline.read().startswith(b"forker: master [titled]")
        with open(f"/proc/{server.worker_pids()[0]}/cmdline", "rb") as cmdline:
            assert re.match(rb"forker: worker \d \[titled\]", cmdline.read())
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    lines = hook_log.read_text().splitlines()
    assert lines[0] == "starting 2"
    assert sum(line.startswith("post_fork") for line in lines) == 3
    assert f"child_exit {_id_of(lines, victim)} {victim}" in lines
    assert sum(line.startswith("child_exit") for line in lines) == 3
    assert not pidfile.exists()


def _id_of(lines: List[str], pid: int) -> str:
    return next(line.split()[1] for line in lines if line.endswith(f" {pid}"))


FORKER_API = '''
import json, os, sys, threading, time
from forker import Forker
from master_app import app
forker = Forker(app, workers=2)
def report():
    while True:
        with open("pids.json.tmp", "w") as out:
            json.dump({{"num": forker.num_workers, "pids": forker.worker_pids}}, out)
        os.rename("pids.json.tmp", "pids.json")
        time.sleep(0.05)
threading.Thread(target=report, daemon=True).start()
sys.exit(forker.listen_and_serve({address!r}))
'''


def test_forker_object_keeps_worker_pids_true(servers, tmp_path):
    import json

    server = servers({}, code=FORKER_API.format(address="127.0.0.1:0")).start(2)

    def reported():
        try:
            return json.loads((tmp_path / "pids.json").read_text())
        except (OSError, ValueError):
            return None

    def agrees():
        state = reported()
        return (state and state["pids"] == server.worker_pids()
                and len(state["pids"]) == state["num"])

    wait_for(agrees, "worker_pids to match the live workers", 30)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: agrees() and victim not in reported()["pids"],
             "worker_pids to follow the respawn", 30)
    server.signal(signal.SIGTTIN)
    wait_for(lambda: agrees() and reported()["num"] == 3, "worker_pids to follow TTIN", 30)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_workers_switch_user_and_group_after_binding(servers):
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    server = servers({"bind": "127.0.0.1:0", "workers": 1,
                      "user": "nobody", "preload": True}).start(1)
    with open(f"/proc/{server.worker_pids()[0]}/status") as status:
        text = status.read()
    assert re.search(rf"Uid:\s+{nobody.pw_uid}\s", text)
    assert re.search(rf"Gid:\s+{nobody.pw_gid}\s", text)
    with open(f"/proc/{server.pid}/status") as status:
        assert re.search(r"Uid:\s+0\s", status.read())  # the master keeps its rights
    assert server.answers()
    # The parent-death signal survives the switch (a change of credentials clears it).
    workers = server.worker_pids()
    server.signal(signal.SIGKILL)
    server.wait(5)
    wait_for(lambda: not any(alive(pid) for pid in workers), "the orphaned worker to exit", 30)


def test_bad_options_name_the_option():
    from forker.config import Config
    from forker.errors import ConfigError
    from forker.master import Forker

    cases = {"timeout": -1, "workers": 0, "max_requests": "many", "reuse_port": "maybe",
             "user": "no-such-user-here", "unix_socket_mode": "999", "bind": "nowhere",
             "max_worker_memory": -5, "post_fork": 42}
    for name, value in cases.items():
        with pytest.raises(ConfigError, match=rf"^{name}: "):
            Config(**{name: value})
    with pytest.raises(ConfigError, match=r"^workers: must be at least 1"):
        Forker(lambda request: b"", workers=0)


def test_usr1_reopens_the_log_file(servers, tmp_path):
    error_log = tmp_path / "error.log"
    server = servers({"bind": "127.0.0.1:0", "workers": 1, "error_log": str(error_log)})
    wait_for(lambda: error_log.exists() and "listening on" in error_log.read_text(),
             "the error log", 10)
    error_log.rename(tmp_path / "error.log.1")
    server.signal(signal.SIGUSR1)
    wait_for(lambda: error_log.exists(), "a new error log", 30)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert "served" in error_log.read_text()
    assert "USR1: reopening log files" in (tmp_path / "error.log.1").read_text()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
