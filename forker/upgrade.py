"""USR2: a new master executed beside the running one, inheriting its
listening sockets, as nginx and gunicorn upgrade a binary.

The old master forks, and the child executes the master's own command line
again with the descriptors of the listening sockets in FORKER_UPGRADE_FDS
(forker/sockets.py adopts them in the new master, upgrade_fds()). The old
master's pidfile moves to PIDFILE.oldbin meanwhile, and back if the new
master fails; TERM to the old master then retires it and its workers.
"""

from __future__ import annotations

import logging
import os
import sys

from . import process
from .sockets import UPGRADE_ENV

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional

log = logging.getLogger("forker.master")


def working_directory() -> str:
    """The directory an upgrade re-executes in: $PWD, which keeps the symbolic
    links a deployment switches (/srv/app/current), when it is where we are; a
    PWD inherited from elsewhere (a parent that changed directory) is not."""
    cwd = os.getcwd()
    pwd = os.environ.get("PWD")
    try:
        if pwd and os.path.samefile(pwd, cwd):
            return pwd
    except OSError:
        pass
    return cwd


def start_new_master(sockets: List[Any], cwd: str, pidfile: Optional[process.Pidfile],
                     before_exec: Callable[[], None]) -> int:
    """Fork and execute the new master in cwd with sockets inherited; its pid,
    or 0 when the fork failed (logged). before_exec runs in the child just
    before it executes (the master's signal dispositions, the pre_exec hook)."""
    fds = [sock.fileno() for sock in sockets]
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable] + sys.argv
    if pidfile is not None:
        pidfile.rename(".oldbin")
    try:
        pid = os.fork()
    except OSError as exc:
        log.error("USR2: cannot fork the new master: %s", exc.strerror)
        if pidfile is not None:
            pidfile.rename(".oldbin", back=True)
        return 0
    if pid == 0:
        try:
            for fd in fds:
                os.set_inheritable(fd, True)
            environ = dict(os.environ, **{UPGRADE_ENV: ",".join(map(str, fds))})
            os.chdir(cwd)
            before_exec()
            os.execve(sys.executable, [sys.executable] + argv[1:], environ)
        except BaseException as exc:
            sys.stderr.write(f"forker: USR2: cannot re-execute the master: {exc}\n")
        finally:
            os._exit(1)
    log.info("USR2: new master pid %d started with %d inherited sockets; "
             "send TERM to this master (pid %d) to retire it", pid, len(fds), os.getpid())
    return pid


def new_master_exited(pid: int, code: int, pidfile: Optional[process.Pidfile]) -> None:
    """The new master exited before this one: this one serves on, under its
    pidfile again."""
    log.error("USR2: the new master pid %d exited (%s); this master goes on serving",
              pid, process.describe_exit(code))
    if pidfile is not None:
        pidfile.rename(".oldbin", back=True)
