"""In-process tests of the master's helpers: shared slots, socket plumbing,
request migration detection, the steering program, the pidfile."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from forker import process
from forker.errors import ConfigError
from forker.master import Arbiter
from forker.shm import SLOT_SIZE, SlotTable
from forker.sockets import (
    FD, Address, Listeners, adopt_fd, enable_request_migration, parse_address, steering_program,
    systemd_fds, upgrade_fds)


def test_slots_are_shared_with_a_forked_child_and_zeroed_on_reuse():
    table = SlotTable(4)
    index = table.allocate()
    pid = os.fork()
    if pid == 0:
        view = table.view(index)
        struct.pack_into("=QQQ", view, 0, 1234, 56, 78)
        view[24:31] = b"GET /x\0"
        os._exit(0)
    os.waitpid(pid, 0)
    state = table.read(index)
    assert (state.heartbeat_ms, state.requests, state.busy_since_ms) == (1234, 56, 78)
    assert table.request_text(index) == "GET /x"
    table.free(index)
    assert table.allocate() == index
    assert table.read(index) == (0, 0, 0) and table.request_text(index) == ""
    assert len(table.view(index)) == SLOT_SIZE


def test_slot_table_runs_out_loudly():
    table = SlotTable(1)
    table.allocate()
    with pytest.raises(LookupError):
        table.allocate()


def test_fd_addresses():
    assert parse_address("fd://3") == Address(FD, 3)
    assert str(parse_address("fd://7")) == "fd://7"
    with pytest.raises(ConfigError, match="^bind: fd:// needs"):
        parse_address("fd://three")


def test_adopt_fd_listens_and_rejects_datagram_sockets():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    adopted = adopt_fd(os.dup(sock.fileno()), 16)
    assert adopted.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    assert not adopted.get_inheritable()
    adopted.close()
    sock.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError, match="not a stream socket"):
        adopt_fd(udp.fileno(), 16)
    udp.close()


def test_systemd_fds_only_for_this_pid_and_consumed():
    environ = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "a:b"}
    assert systemd_fds(environ) == [3, 4]
    assert environ == {}
    assert systemd_fds({"LISTEN_FDS": "1", "LISTEN_PID": "1"}) == []
    environ = {"FORKER_UPGRADE_FDS": "5,6"}
    assert upgrade_fds(environ) == [5, 6] and environ == {}


def test_request_migration_is_set_when_permitted(tmp_path):
    sysctl = tmp_path / "tcp_migrate_req"
    sysctl.write_text("0\n")
    enabled, message = enable_request_migration(str(sysctl))
    assert enabled and "was 0" in message and sysctl.read_text() == "1"
    assert enable_request_migration(str(sysctl))[0]
    enabled, message = enable_request_migration(str(tmp_path / "missing"))
    assert not enabled and "Linux < 5.14" in message
    if os.geteuid() != 0:
        sysctl.write_text("0")
        sysctl.chmod(0o444)
        enabled, message = enable_request_migration(str(sysctl))
        assert not enabled and "cannot be set" in message


def test_steering_program_maps_cpus_to_sockets():
    ld, mod, ret = 0x20, 0x94, 0x16
    cpu = (-0x1000 + 36) & 0xFFFFFFFF
    assert steering_program(2, 2) == [(ld, cpu), (mod, 2), (ret, 0)]
    # More sockets than CPUs: CPU, plus ncpu times a random pick among its workers.
    program = steering_program(2, 6)
    assert program[:2] == [(ld, cpu), (mod, 2)] and (mod, 3) in program and program[-1] == (ret, 0)


class _Config:
    backlog = 16
    reuse_port = True
    unix_socket_mode = None
    unix_socket_owner = None

    def __init__(self, bind):
        self.bind = bind


def test_listeners_keep_one_reuse_port_socket_per_worker(tmp_path):
    config = _Config(["127.0.0.1:0", f"unix:{tmp_path / 's'}"])
    listeners = Listeners.open(config, {})
    try:
        assert listeners.per_worker == [True, False]
        assert listeners.ensure(3)
        tcp, unix = listeners.groups
        assert len(tcp) == 3 and len(unix) == 1
        assert len({sock.getsockname() for sock in tcp}) == 1
        assert listeners.for_worker(2) == [tcp[2], unix[0]]
        assert listeners.shrink(1) and len(listeners.groups[0]) == 1
    finally:
        listeners.close()


def test_listeners_adopt_an_upgrade_and_regroup_by_address():
    first = socket.socket()
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    first.bind(("127.0.0.1", 0))
    first.listen(8)
    second = socket.socket()
    second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    second.bind(first.getsockname())
    second.listen(8)
    fds = [first.detach(), second.detach()]
    listeners = Listeners.open(_Config(["127.0.0.1:1"]), {"FORKER_UPGRADE_FDS": ",".join(map(str, fds))})
    try:
        assert listeners.source == "upgrade"
        assert [len(group) for group in listeners.groups] == [2]
        assert [sock.fileno() for sock in listeners.groups[0]] == fds
    finally:
        listeners.close()


def test_pidfile_refuses_a_running_owner_and_is_removed_only_by_its_own(tmp_path):
    path = tmp_path / "app.pid"
    pidfile = process.Pidfile(str(path))
    pidfile.create(os.getpid())
    assert path.read_text() == f"{os.getpid()}\n"
    other = process.Pidfile(str(path))
    with pytest.raises(ConfigError, match="names process"):
        other.create(1)  # pid 1 is alive, and it is not us
    pidfile.unlink(12345678)
    assert path.exists()
    pidfile.unlink(os.getpid())
    assert not path.exists()


def test_describe_exit():
    assert process.describe_exit(3) == "exit status 3"
    assert process.describe_exit(-9) == "signal SIGKILL"


def test_master_forks_the_first_workers_before_its_first_wait(monkeypatch):
    """A client that connects right after start is served as soon as a worker
    boots, not after the master's first wait (up to a second) has passed."""
    arbiter = Arbiter(lambda request: b"", {"workers": 2})
    events = []

    class Listeners:
        def shrink(self, count):
            return False

    def wait(timeout):
        events.append("wait")
        arbiter._stopping = "fast"

    arbiter.listeners = Listeners()
    monkeypatch.setattr(process, "prepare_fork", lambda: None)
    monkeypatch.setattr(arbiter, "_spawn", lambda worker_id: events.append(f"fork {worker_id}"))
    monkeypatch.setattr(arbiter, "_wait", wait)
    monkeypatch.setattr(arbiter, "_reap", lambda: None)
    monkeypatch.setattr(arbiter, "_stop", lambda: events.append("stop"))
    arbiter._loop()
    assert events == ["fork 0", "fork 1", "wait", "stop"]
