"""Listening sockets: parse bind addresses, create or adopt the sockets the
master shares with its workers (bound here, inherited by fork; handed over by
systemd, by file descriptor number, or by the previous master on an upgrade),
and in reuse_port mode keep one SO_REUSEPORT socket per worker id.

The master holds every listening socket for the whole of its life, so a worker
that dies or is recycled closes nothing: its replacement inherits the very
socket and the connections queued on it. A socket is only closed when the
worker count shrinks or the server stops; then the kernel's request migration
(net.ipv4.tcp_migrate_req) moves its queue to the group's other sockets."""

from __future__ import annotations

import errno
import os
import socket
import stat

from .errors import BindError, ConfigError

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Dict, List, MutableMapping, NamedTuple, Optional, Sequence, Tuple, Union
else:
    from ._namedtuple import NamedTuple


FD = 0  # Address.family of "fd://N": an already open socket, target is N


class Address(NamedTuple):
    family: int
    target: Union[Tuple[str, int], str, int]  # (host, port) for TCP, a path for unix, an fd

    def __str__(self) -> str:
        if self.family == FD:
            return f"fd://{self.target}"
        if self.family == socket.AF_UNIX:
            return f"unix:{self.target}"
        assert isinstance(self.target, tuple)
        host, port = self.target
        return f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"


def parse_address(text: str, option: str = "bind") -> Address:
    """Parse 'HOST:PORT', ':PORT', '[V6]:PORT', 'PORT', 'unix:PATH' or 'fd://N', each
    optionally prefixed by 'http://' or 'https://' (the scheme is forker.tls's business)."""
    if isinstance(text, str) and text.startswith(("http://", "https://")):
        text = text.split("://", 1)[1]
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{option}: expected an address such as ':8080', got {text!r}")
    if text.startswith("fd://"):
        if not text[5:].isdigit():
            raise ConfigError(f"{option}: fd:// needs a file descriptor number, got {text!r}")
        return Address(FD, int(text[5:]))
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"{option}: unix socket address needs a path, got {text!r}")
        return Address(socket.AF_UNIX, path)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{option}: expected [IPv6]:PORT, got {text!r}")
        family, port_text = socket.AF_INET6, rest[1:]
    elif text.isdigit():
        host, family, port_text = "0.0.0.0", socket.AF_INET, text
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ConfigError(f"{option}: expected HOST:PORT, :PORT or unix:PATH, got {text!r}")
        host = host or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{option}: port must be a number from 0 to 65535, got {text!r}")
    if family == socket.AF_INET:
        try:
            socket.inet_pton(socket.AF_INET, host)
        except OSError:
            family = _resolve_family(host, option, text)
    else:
        try:
            socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            raise ConfigError(f"{option}: {host!r} is not an IPv6 address in {text!r}") from None
    return Address(family, (host, int(port_text)))


def _resolve_family(host: str, option: str, text: str) -> socket.AddressFamily:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"{option}: cannot resolve host {host!r} in {text!r}: {exc}") from None
    return infos[0][0]


def create_listener(
    address: Address,
    backlog: int,
    reuse_port: bool = False,
    unix_mode: Optional[int] = None,
    unix_owner: Optional[Tuple[Optional[int], int]] = None,
) -> socket.socket:
    """Bind and listen on address. The socket is non-blocking and inheritable by
    forked workers (they get it through fork, not exec)."""
    if address.family == FD:
        return adopt_fd(int(address.target), backlog)  # type: ignore[arg-type]
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        if address.family == socket.AF_UNIX:
            path = str(address.target)
            _remove_stale_unix_socket(path)
            sock.bind(path)
            # Mode and owner before listen(): nobody can connect in between.
            if unix_mode is not None:
                os.chmod(path, unix_mode)
            if unix_owner is not None:
                os.chown(path, -1 if unix_owner[0] is None else unix_owner[0], unix_owner[1])
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if address.family == socket.AF_INET6:
                # "[::]:PORT" serves IPv4 too (dual stack), as nginx's ipv6only=off.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert isinstance(address.target, tuple)  # (host, port) for TCP
            sock.bind(address.target)
        sock.listen(backlog)
        sock.setblocking(False)
    except BindError:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, f"cannot listen on {address}: "
                                   f"{_reason(address, exc)}") from None
    return sock


def _reason(address: Address, exc: OSError) -> str:
    """Why bind or listen failed, in the terms of the address."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        return f"{reason} (another process listens there)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{reason} (no interface of this host has that address)"
    if exc.errno == errno.EACCES and address.family != socket.AF_UNIX:
        return f"{reason} (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    folder = os.path.dirname(str(address.target)) or "."
    if address.family == socket.AF_UNIX and exc.errno == errno.ENOENT and not os.path.isdir(folder):
        return f"the directory {folder} does not exist"
    return reason


def adopt_fd(fd: int, backlog: int) -> socket.socket:
    """A socket object for an already open listening socket (fd://N, systemd,
    an upgrade). A stream socket not yet listening is made to listen."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(exc.errno, f"cannot use fd://{fd}: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise BindError(88, f"fd://{fd} is not a stream socket")
    sock.set_inheritable(False)  # an upgrade passes it on explicitly; nothing else may
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise BindError(17, f"cannot listen on unix:{path}: it exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens there: a leftover from a previous run
    else:
        raise BindError(98, f"cannot listen on unix:{path}: another server listens there")
    finally:
        probe.close()


def bound_address(sock: socket.socket) -> Optional[str]:
    """The address a listener really got (port 0 resolved), in bind syntax."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"


# -- sockets handed over by systemd or by the previous master -----------------

UPGRADE_ENV = "FORKER_UPGRADE_FDS"  # "3,4,5": listeners inherited across a USR2 re-exec
SD_LISTEN_FDS_START = 3


def systemd_fds(environ: MutableMapping[str, str]) -> List[int]:
    """File descriptors passed by systemd socket activation (LISTEN_FDS for this
    LISTEN_PID), removing the variables so that no child mistakes them as its own."""
    count = environ.pop("LISTEN_FDS", None)
    pid = environ.pop("LISTEN_PID", None)
    environ.pop("LISTEN_FDNAMES", None)
    if not count or not count.isdigit() or pid is None or pid != str(os.getpid()):
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def upgrade_fds(environ: MutableMapping[str, str]) -> List[int]:
    """File descriptors inherited from the master that re-executed us on USR2."""
    text = environ.pop(UPGRADE_ENV, "")
    return [int(part) for part in text.split(",") if part.strip().isdigit()]


def _key(sock: socket.socket) -> Tuple[int, object]:
    return (sock.family, sock.getsockname())


def has_reuse_port(sock: socket.socket) -> bool:
    return sock.family != socket.AF_UNIX and bool(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    )


def clone_reuse_port(sock: socket.socket, backlog: int) -> socket.socket:
    """Another SO_REUSEPORT socket bound to the address sock is bound to."""
    host, port = sock.getsockname()[:2]
    family = socket.AF_INET6 if sock.family == socket.AF_INET6 else socket.AF_INET
    return create_listener(Address(family, (host, port)), backlog, reuse_port=True)


# -- the kernel's help in reuse_port mode ---------------------------------------

MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"


def enable_request_migration(path: str = MIGRATE_SYSCTL) -> Tuple[bool, str]:
    """Turn on net.ipv4.tcp_migrate_req when permitted: connections queued on a
    closing SO_REUSEPORT socket then move to another socket of its group instead
    of being reset. Returns (enabled, what to report)."""
    try:
        with open(path) as sysctl:
            current = sysctl.read().strip()
    except FileNotFoundError:
        return False, ("net.ipv4.tcp_migrate_req is missing (Linux < 5.14): connections queued "
                       "on a socket closed when the worker count shrinks are reset")
    except OSError as exc:
        return False, f"cannot read net.ipv4.tcp_migrate_req: {exc.strerror}"
    if current == "1":
        return True, "net.ipv4.tcp_migrate_req=1: queued connections migrate between sockets"
    try:
        with open(path, "w") as sysctl:
            sysctl.write("1")
    except OSError as exc:
        return False, (f"net.ipv4.tcp_migrate_req={current} and cannot be set ({exc.strerror}): "
                       "connections queued on a socket closed when the worker count shrinks "
                       "are reset; run `sysctl -w net.ipv4.tcp_migrate_req=1` to avoid it")
    return True, f"set net.ipv4.tcp_migrate_req=1 (was {current}): queued connections migrate"


SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)
SO_ATTACH_REUSEPORT_CBPF = 51
_SKF_AD_OFF = -0x1000
_SKF_AD_CPU = 36
_SKF_AD_RANDOM = 56


def steering_program(ncpu: int, nsockets: int) -> List[Tuple[int, int]]:
    """Classic BPF (code, k) pairs choosing the reuseport group index from the CPU
    that received the connection: index = cpu % nsockets when there are no more
    sockets than CPUs, else cpu % ncpu plus ncpu times a random 0..nsockets//ncpu-1
    (the sockets of the workers pinned to that CPU). Worker i is pinned to CPU
    i % ncpu and owns group index i, so both land on the same core."""
    ld_abs, mod_k, tax, mul_k, add_x, ret_a = 0x20, 0x94, 0x07, 0x24, 0x0C, 0x16
    program = [(ld_abs, (_SKF_AD_OFF + _SKF_AD_CPU) & 0xFFFFFFFF)]
    if nsockets <= ncpu:
        program.append((mod_k, nsockets))
    else:
        program += [(mod_k, ncpu), (tax, 0), (ld_abs, (_SKF_AD_OFF + _SKF_AD_RANDOM) & 0xFFFFFFFF),
                    (mod_k, nsockets // ncpu), (mul_k, ncpu), (add_x, 0)]
    program.append((ret_a, 0))
    return program


def attach_cpu_steering(group: Sequence[socket.socket], cpus: Sequence[int]) -> str:
    """Steer the connections of a reuseport group to the socket of the worker on
    the receiving CPU: a classic-BPF program, else SO_INCOMING_CPU hints."""
    import ctypes  # here: a worker never needs it

    class _SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class _SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]

    program = steering_program(len(cpus), len(group))
    filters = (_SockFilter * len(program))(*[_SockFilter(code, 0, 0, k) for code, k in program])
    try:
        group[0].setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                            bytes(_SockFprog(len(program), filters)))
        return "reuseport BPF program steers connections to the receiving CPU's worker"
    except OSError as bpf_error:
        try:
            for index, sock in enumerate(group):
                sock.setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU, cpus[index % len(cpus)])
        except OSError as exc:
            return f"no CPU steering: BPF: {bpf_error.strerror}; SO_INCOMING_CPU: {exc.strerror}"
        return f"SO_INCOMING_CPU hints steer connections (BPF: {bpf_error.strerror})"


# -- the master's set of listeners ----------------------------------------------


class Listeners:
    """Every listening socket of the master, grouped by address. A group is one
    socket shared by all workers, or in reuse_port mode one socket per worker id
    (a unix socket or an adopted socket without SO_REUSEPORT stays shared)."""

    def __init__(self, groups: List[List[socket.socket]], per_worker: List[bool], backlog: int):
        self.groups = groups
        self.per_worker = per_worker
        self.backlog = backlog
        self.source = "bind"

    @classmethod
    def open(cls, config: object, environ: MutableMapping[str, str]) -> "Listeners":
        """Adopt the previous master's sockets, else systemd's, else bind config.bind."""
        backlog = config.backlog  # type: ignore[attr-defined]
        reuse_port = config.reuse_port  # type: ignore[attr-defined]
        inherited, source = upgrade_fds(environ), "upgrade"
        systemd = systemd_fds(environ)
        if not inherited:
            inherited, source = systemd, "systemd"
        if inherited:
            by_key: Dict[Tuple[int, object], List[socket.socket]] = {}
            for fd in inherited:
                sock = adopt_fd(fd, backlog)
                by_key.setdefault(_key(sock), []).append(sock)
            groups = list(by_key.values())
        else:
            groups, source = [], "bind"
            seen: Dict[str, str] = {}
            try:
                for text in config.bind:  # type: ignore[attr-defined]
                    address = parse_address(text)
                    ephemeral = isinstance(address.target, tuple) and address.target[1] == 0
                    if str(address) in seen and not ephemeral:  # not "another process"
                        raise BindError(errno.EADDRINUSE, f"cannot listen on {address}: it is "
                                        f"given twice (--bind {seen[str(address)]} and {text})")
                    seen[str(address)] = text
                    groups.append([create_listener(
                        address, backlog, reuse_port and address.family != socket.AF_UNIX,
                        config.unix_socket_mode, config.unix_socket_owner)])  # type: ignore[attr-defined]
            except BaseException:
                for group in groups:
                    group[0].close()
                raise
        per_worker = []
        for group in groups:
            per_worker.append(reuse_port and has_reuse_port(group[0]))
            if not per_worker[-1]:
                for extra in group[1:]:  # an upgrade from reuse_port to shared sockets
                    extra.close()
                del group[1:]
        listeners = cls(groups, per_worker, backlog)
        listeners.source = source
        return listeners

    def ensure(self, count: int) -> bool:
        """Have a socket for worker ids 0..count-1 in every per-worker group;
        True if one was added."""
        added = False
        for group, per_worker in zip(self.groups, self.per_worker):
            while per_worker and len(group) < count:
                group.append(clone_reuse_port(group[0], self.backlog))
                added = True
        return added

    def shrink(self, count: int) -> bool:
        """Close the master's copy of the sockets of worker ids >= count."""
        removed = False
        for group, per_worker in zip(self.groups, self.per_worker):
            while per_worker and len(group) > max(count, 1):
                group.pop().close()
                removed = True
        return removed

    def for_worker(self, worker_id: int) -> List[socket.socket]:
        return [group[worker_id] if per_worker else group[0]
                for group, per_worker in zip(self.groups, self.per_worker)]

    def sockets(self) -> List[socket.socket]:
        return [sock for group in self.groups for sock in group]

    def reuse_port_groups(self) -> List[List[socket.socket]]:
        return [group for group, per_worker in zip(self.groups, self.per_worker) if per_worker]

    def addresses(self) -> List[str]:
        return [str(bound_address(group[0])) for group in self.groups]

    def close(self) -> None:
        for sock in self.sockets():
            sock.close()
        for group in self.groups:
            group.clear()
