"""The master's side of fork: what a new worker process does between fork()
and forker.worker.run_worker(), and how it leaves. run() never returns: the
child always ends in os._exit, never back in the master's code."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys

from . import process
from .errors import WORKER_BOOT_ERROR, AppImportError
from .signals import HANDLED, IGNORED

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, List, NoReturn, Optional

log = logging.getLogger("forker.master")


def run(arbiter: Any, worker: Any, listeners: List[Any]) -> NoReturn:
    """In the child: set up, run the worker loop, leave with its status."""
    status: Any = 1
    worker.pid = os.getpid()
    try:
        status = _main(arbiter, worker, listeners)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("worker %d crashed", worker.id)
    finally:
        _leave(arbiter, worker, status)


def _leave(arbiter: Any, worker: Any, status: Any) -> NoReturn:
    """The worker_exit hook, then the exit itself."""
    try:
        from . import hooks

        hooks.call("worker_exit", arbiter.config.worker_exit, arbiter, worker)
    finally:
        _exit(status)


def _main(arbiter: Any, worker: Any, listeners: List[Any]) -> int:
    process.set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != arbiter.pid:
        return 0  # the master died before we could ask to be told
    _reset_signals(arbiter)
    keep = {id(sock) for sock in listeners}
    for sock in arbiter.listeners.sockets():
        if id(sock) not in keep:
            sock.close()  # another worker's reuse_port socket: its queue is not ours
    if getattr(arbiter, "metrics", None) is not None:
        arbiter.metrics.close()  # the master's /metrics sockets
    from . import logs

    logs.set_worker_id(worker.id)
    statsd = getattr(arbiter, "statsd", None)  # from here on, its log records are counted
    stats = statsd.in_worker(worker.slot) if statsd is not None and worker.stats else None
    process.set_title(f"forker: worker {worker.id} [{arbiter.title()}]",
                      arbiter.short_title(f"w{worker.id}"))
    config = arbiter.config
    if arbiter.pins_workers():
        process.pin_to_cpu(worker.id, arbiter.cpus)
    if config.user is not None or config.group is not None:
        process.drop_privileges(config.user, config.group)
        # A change of credentials clears the parent-death signal (prctl(2)): again.
        process.set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != arbiter.pid:
            return 0
    if config.post_fork is not None:
        config.post_fork(arbiter, worker)
    app = arbiter.app
    try:
        if app is None:
            app = arbiter.load_app(config, fresh=False)
        from .worker import run_worker
    except (AppImportError, ImportError) as exc:
        if _first_to_fail(arbiter):  # the others would repeat it
            log.error("worker %d: cannot load the application: %s", worker.id, exc)
        return WORKER_BOOT_ERROR
    if config.pre_request is not None or config.post_request is not None:
        from .hooks import wrap_requests

        app = wrap_requests(app, config, worker)
    if config.worker_abort is not None:
        _on_abort(arbiter, worker)
    if config.post_worker_init is not None:
        config.post_worker_init(worker)
    if config.reload and worker.id == 0:  # one watcher is enough; HUP replaces them all
        _watch_sources(arbiter.pid, config.reload_extra_files)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
    from .tls import listener_schemes

    return run_worker(app, config, listeners, worker.id, arbiter.slots.view(worker.slot),
                      schemes=listener_schemes(config, listeners, arbiter.listeners.source),
                      worker=worker, stats=stats,
                      first_to_fail=lambda: _first_to_fail(arbiter))


def _first_to_fail(arbiter: Any) -> bool:
    """Whether this worker is the first to fail to boot since the master last
    heard of a failure (it takes the master's token): the one that says why."""
    try:
        return os.read(arbiter.boot_report[0], 1) != b""
    except (BlockingIOError, AttributeError):
        return False


RELOAD_POLL_SECONDS = 1.0


def _watch_sources(master: int, extra: List[str]) -> None:
    """--reload: a thread that polls the modification times of the modules this
    worker imported and of the extra files, and sends HUP to the master when
    one changes: the master reloads (a new generation imports the code anew; a
    broken one leaves the running workers in place, as any reload does)."""
    import threading
    import time

    def files() -> List[str]:
        paths = list(extra)
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if path and path.endswith(".py"):
                paths.append(path)
        return paths

    def stamps() -> Dict[str, Optional[int]]:
        found: Dict[str, Optional[int]] = {}
        for path in files():
            try:
                found[path] = os.stat(path).st_mtime_ns
            except OSError:
                found[path] = None
        return found

    def watch() -> None:
        seen = stamps()
        while os.getppid() == master:
            time.sleep(RELOAD_POLL_SECONDS)
            now = stamps()
            changed = [path for path, stamp in now.items() if seen.get(path, stamp) != stamp]
            seen = now
            if changed:
                log.info("reload: %s changed; reloading", changed[0])
                os.kill(master, signal.SIGHUP)

    threading.Thread(target=watch, name="forker-reload", daemon=True).start()


def _on_abort(arbiter: Any, worker: Any) -> None:
    """SIGABRT, which the master sends past timeout when worker_abort is set:
    the hook, worker_exit, and exit status 1, as in gunicorn."""

    def abort(signum: int, frame: Any) -> None:
        from . import hooks

        hooks.call("worker_abort", arbiter.config.worker_abort, worker)
        _leave(arbiter, worker, 1)

    signal.signal(signal.SIGABRT, abort)


def _reset_signals(arbiter: Any) -> None:
    """Drop the master's handlers, wakeup fd and pipe; USR2 prints the stack."""
    signal.set_wakeup_fd(-1)
    arbiter.signals.close()
    for signum in HANDLED:
        signal.signal(signum, signal.SIG_IGN if signum in IGNORED else signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, lambda signum, frame: reopen_logs())
    try:
        # The master sends USR2 to a worker past its timeout, then SIGKILL.
        faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError, RuntimeError):
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # no usable stderr to dump to


def _exit(status: Any) -> NoReturn:
    try:
        from . import logs

        logs.flush()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BaseException:
        pass
    finally:
        if status is None:
            status = 0
        os._exit(status & 0xFF if isinstance(status, int) and status >= 0 else 1)


def reopen_logs() -> None:
    """USR1: forker.logs.reopen(); logging must never take a worker down."""
    from . import logs

    try:
        logs.reopen()
    except OSError as exc:
        log.error("cannot reopen the log files: %s", exc)
    except Exception:
        log.exception("reopening log files failed")
