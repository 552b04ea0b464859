"""The master's socket modes on real process trees: reuse_port without resets
while workers recycle or the count shrinks, several addresses (IPv4, IPv6, dual
stack, unix), systemd socket activation, fd://N, CPU affinity and steering."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import sys
import threading
import time

import pytest
from harness import wait_for
from test_master import Load, get, record, server_pool


@pytest.fixture
def servers(tmp_path):
    with server_pool(tmp_path) as start:
        yield start


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")


def test_reuse_port_recycling_resets_no_connection(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "reuse_port": True,
                      "max_requests": 25}).start(2)
    log = server.log()
    assert "one SO_REUSEPORT socket per worker" in log
    assert "tcp_migrate_req" in log  # detected, set or reported
    with Load(server.address, threads=3, pause=0.0, limit=900) as load:
        wait_for(lambda: load.total >= 900, "900 requests", 40)
    record("reuse_port, max_requests=25 recycling, connection per request", load,
           f"({len(load.served_by())} worker pids)")
    assert load.failures == []
    assert len(load.served_by()) >= 900 // 25 - 2


def test_reuse_port_sigkill_loses_only_in_flight(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "reuse_port": True}).start(2)
    with Load(server.address, threads=3) as load:
        load.wait_requests(100)
        os.kill(server.worker_pids()[0], signal.SIGKILL)
        server.wait_workers(2, 2)
        load.wait_requests(300)
    record("reuse_port, SIGKILL a worker", load)
    # The socket outlives its worker in the master: its queue waits for the
    # replacement; only a request the killed worker held may fail.
    assert len(load.failures) <= 3, load.failures


def test_reuse_port_ttou_under_load_resets_nothing(servers):
    server = servers({"bind": "127.0.0.1:0", "workers": 3, "reuse_port": True}).start(3)
    with Load(server.address, threads=3) as load:
        load.wait_requests(100)
        for count in (2, 1):
            server.signal(signal.SIGTTOU)
            server.wait_workers(count, 10)
            load.wait_requests(150)
        server.signal(signal.SIGTTIN)
        server.wait_workers(2, 5)
        load.wait_requests(150)
    migrate = "off" if "reuse_port: net.ipv4.tcp_migrate_req=0" in server.log() else "on"
    record("reuse_port, TTOU twice then TTIN", load, f"(tcp_migrate_req {migrate})")
    assert load.failures == []


SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSCTL) or not shutil.which("unshare"),
                    reason="needs root, unshare and net.ipv4.tcp_migrate_req")
def test_reuse_port_reports_request_migration_it_cannot_set(servers, tmp_path):
    fake = tmp_path / "tcp_migrate_req"
    fake.write_text("0\n")
    code = ("import sys; from forker.master import run; "
            "sys.exit(run('master_app:app', {'bind': '127.0.0.1:0', 'workers': 2, 'reuse_port': True}))")
    # A private mount namespace where the sysctl reads 0 and is read-only.
    script = (f"mount --bind {fake} {SYSCTL} && mount -o remount,bind,ro {SYSCTL} && "
              f'exec "{sys.executable}" -c "{code}"')
    server = servers({}, argv=["unshare", "-m", "sh", "-c", script])
    try:
        server.start(2)
    except AssertionError:
        if "mount" in server.log() or "unshare" in server.log():
            pytest.skip(f"cannot make a private read-only sysctl here: {server.log()[:200]}")
        raise
    assert ("reuse_port: net.ipv4.tcp_migrate_req=0 and cannot be set (Read-only file system)"
            in server.log())
    assert fake.read_text() == "0\n"
    assert server.answers()


@needs_ipv6
def test_several_addresses_ipv4_ipv6_unix(servers, tmp_path):
    path = tmp_path / "forker.sock"
    server = servers({"bind": ["127.0.0.1:0", "[::1]:0", f"unix:{path}"], "workers": 2,
                      "unix_socket_mode": "600"}).start(2)
    assert len(server.addresses) == 3
    v4, v6, unix = server.addresses
    assert v6.startswith("[::1]:") and unix == f"unix:{path}"
    for address in server.addresses:
        status, body = get(address)
        assert status == 200 and body.split()[1] == str(server.pid)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


@needs_ipv6
def test_dual_stack_any_address_serves_ipv4_too(servers):
    port = _free_port()
    server = servers({"bind": f"[::]:{port}", "workers": 1}).start(1)
    assert get(f"127.0.0.1:{port}")[0] == 200
    assert get(f"[::1]:{port}")[0] == 200
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def test_systemd_socket_activation(servers):
    sock = _listener()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    code = "import sys; from forker.master import run; sys.exit(run('master_app:app', {'workers': 2}))"
    # As systemd does: the socket is fd 3, LISTEN_PID is the service's pid ($$, kept by exec).
    script = f'export LISTEN_PID=$$ LISTEN_FDS=1; exec "{sys.executable}" -c "{code}"'
    server = servers({}, argv=["bash", "-c", script], pass_fds=(3, fd),
                     preexec=lambda: os.dup2(fd, 3))
    sock.close()
    server.start(2)
    assert server.address == f"127.0.0.1:{port}"
    assert "(shared by the workers, systemd)" in server.log()
    with Load(server.address, threads=2, limit=200) as load:
        wait_for(lambda: load.total >= 200, "200 requests", 20)
    assert load.failures == []
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_fd_url_adopts_a_given_socket(servers):
    sock = _listener()
    fd, port = sock.fileno(), sock.getsockname()[1]
    server = servers({"bind": f"fd://{fd}", "workers": 1}, pass_fds=(fd,))
    sock.close()
    server.start(1)
    assert server.address == f"127.0.0.1:{port}"
    assert get(server.address)[0] == 200


def test_cpu_affinity_pins_workers_and_steers_connections(servers):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or cpus[:2] != [0, 1]:
        pytest.skip("needs CPUs 0 and 1")
    server = servers({"bind": "127.0.0.1:0", "workers": 2, "reuse_port": True,
                      "cpu_affinity": True}).start(2)
    pinned = {min(os.sched_getaffinity(pid)): pid for pid in server.worker_pids()}
    assert all(len(os.sched_getaffinity(pid)) == 1 for pid in server.worker_pids())
    assert sorted(pinned) == [0, 1]
    assert "BPF program steers connections" in server.log()
    # On loopback the connection is received on the client's CPU: a client pinned
    # to CPU c must always be served by the worker pinned to CPU c.
    for cpu in (0, 1):
        seen = []

        def client():
            os.sched_setaffinity(0, {cpu})  # this thread only
            for _ in range(30):
                seen.append(int(get(server.address)[1].split()[0]))

        thread = threading.Thread(target=client)
        thread.start()
        thread.join(20)
        assert set(seen) == {pinned[cpu]}, (cpu, pinned, seen)


@pytest.mark.parametrize("workers, option, pinned", [
    ("all", None, True),      # a worker per usable CPU: pinned by default
    ("all", False, False),    # --no-cpu-affinity
    (1, None, False),         # fewer workers than CPUs: the kernel places them
])
def test_cpu_affinity_by_default_pins_a_worker_per_cpu(servers, workers, option, pinned):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    count = len(cpus) if workers == "all" else workers
    options = {"bind": "127.0.0.1:0", "workers": count}
    if option is not None:
        options["cpu_affinity"] = option
    server = servers(options).start(count)
    # a worker pins itself once forked: wait for that (20 s only bound a hang)
    deadline = time.monotonic() + 20
    while True:
        allowed = [sorted(os.sched_getaffinity(pid)) for pid in server.worker_pids()]
        spread = sorted(cpu for worker in allowed for cpu in worker) == cpus
        if not pinned or spread or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if pinned:
        assert sorted(cpu for worker in allowed for cpu in worker) == cpus
        assert "cpu_affinity: worker i runs on CPU i mod" in server.log()
    else:
        assert all(worker == cpus for worker in allowed), allowed
    assert get(server.address)[0] == 200


def test_unix_socket_owner_and_stale_socket_cleanup(servers, tmp_path):
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a crashed server leaves
    servers({"bind": f"unix:{path}", "workers": 1, "unix_socket_owner": "0:0",
             "unix_socket_mode": 0o660}).start(1)
    info = os.stat(path)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o660)
    assert get(f"unix:{path}")[0] == 200

