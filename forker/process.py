"""Small process-level helpers for the master and its workers: parent-death
signal, process titles, CPU pinning, privilege dropping, memory and exit-status
reporting, the pidfile. Each does one system call's worth of work."""

from __future__ import annotations

import gc
import os
import signal

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Callable, Optional, Sequence

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send signum to this process when its parent thread dies."""
    from ._worker import set_parent_death_signal as prctl_pdeathsig  # C: no ctypes in workers

    prctl_pdeathsig(signum)


def prepare_fork() -> None:
    """In the master, before forking workers: collect the garbage (the command
    line's parser, the configuration's temporaries), freeze what is left so that
    a worker's collections never write to the pages it shares with the master
    (gc.freeze), and give the C heap's free pages back to the system, so that a
    worker does not start out with them resident."""
    from ._worker import trim_memory

    gc.collect()
    gc.freeze()
    trim_memory()


try:
    from setproctitle import setproctitle as _spt

    _setproctitle: Optional[Callable[[str], None]] = _spt
except ImportError:  # optional: titles are a nicety
    _setproctitle = None


def set_title(title: str, short: Optional[str] = None) -> None:
    """Set the process title shown by `ps -f` when setproctitle is installed,
    and the command name shown by `ps`, top and pgrep (15 bytes; without
    setproctitle, what there is) to short, written to /proc/self/comm as
    prctl(PR_SET_NAME) would."""
    if _setproctitle is not None:
        _setproctitle(title)
    if short:
        try:
            with open("/proc/self/comm", "w") as comm:
                comm.write(short.encode("utf-8")[:15].decode("utf-8", "ignore"))
        except OSError:
            pass


def usable_cpus() -> Sequence[int]:
    """The CPUs this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


def pin_to_cpu(worker_id: int, cpus: Sequence[int]) -> int:
    """Pin the calling process to CPU worker_id mod len(cpus); returns that CPU."""
    cpu = cpus[worker_id % len(cpus)]
    os.sched_setaffinity(0, {cpu})
    return cpu


def drop_privileges(uid: Optional[int], gid: Optional[int]) -> None:
    """Switch to gid then uid (supplementary groups those of the user)."""
    if uid is None and gid is None:
        return
    if uid is not None and gid is None:
        import pwd

        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = None
    if gid is not None and gid != os.getegid():
        try:
            if uid is not None:
                import pwd

                os.initgroups(pwd.getpwuid(uid).pw_name, gid)
            else:
                os.setgroups([gid])
        except (KeyError, PermissionError):
            pass  # unprivileged: only setgid below can tell whether this is allowed
        os.setgid(gid)
    if uid is not None and uid != os.geteuid():
        os.setuid(uid)


def rss_bytes(pid: int) -> Optional[int]:
    """Resident set size of pid from /proc, None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def describe_exit(code: int) -> str:
    """'exit status 3' or 'signal SIGKILL' from os.waitstatus_to_exitcode()."""
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class Pidfile:
    """The master's pidfile: written after binding, removed at exit if still ours."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self, pid: int) -> None:
        from .errors import ConfigError  # told in one line by the command line

        other = self.read()
        if other is not None and other not in (pid, os.getppid()) and _alive(other):
            raise ConfigError(f"pidfile: {self.path} names process {other}, which is running")
        tmp = f"{self.path}.{pid}.tmp"
        try:
            with open(tmp, "w") as out:
                out.write(f"{pid}\n")
            os.rename(tmp, self.path)  # readers never see a half-written file
        except OSError as exc:
            raise ConfigError(f"pidfile: cannot write {self.path}: {exc.strerror}") from None

    def read(self, path: Optional[str] = None) -> Optional[int]:
        try:
            with open(path or self.path) as pidfile:
                return int(pidfile.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def rename(self, suffix: str, back: bool = False) -> None:
        """Move the pidfile to path+suffix (an upgrade starts) or back (it failed)."""
        source, target = (self.path + suffix, self.path) if back else (self.path, self.path + suffix)
        try:
            os.rename(source, target)
        except OSError:
            pass

    def unlink(self, pid: int) -> None:
        for path in (self.path, self.path + ".oldbin"):
            if self.read(path) == pid:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
