"""The worker process: everything a forked child does, from setup to exit.

Contract with the master (forker/master.py):

    run_worker(app, config, listeners, worker_id, slot, schemes=None) -> int

is called in the child right after fork and returns the process exit status
(the master's child code then leaves with os._exit(status)). `app` is the
handler (already wrapped for its interface), `listeners` the list of listening
sockets inherited from the master, `worker_id` a small int (0..workers-1,
reused by a respawn), `slot` a writable 512-byte memoryview into memory shared
with the master (None when run without a master), `schemes` "http" or "https"
for each listener (forker.tls.listener_schemes). The C loop writes its
heartbeat, counters and running request into `slot`, laid out in
csrc/fk_metrics.h (read by forker/shm.py).
Signals in the worker: TERM = graceful stop (drain the accept queue, give up
the listening sockets, finish in-flight requests, close idle kept-alive
connections at their keep-alive deadline, exit 0 within
config.graceful_timeout), INT and QUIT = fast stop (exit at once).
"""

from __future__ import annotations



import logging
import os
import signal

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

    from .config import Config

log = logging.getLogger("forker.error")


def _access_logger(config: Config, worker_id: int) -> Optional[Any]:
    from . import logs  # also with access_log off: a logging configuration may ask for one

    return logs.access_logger(config, worker_id)


def _tls_inputs(config: Config, schemes: Optional[List[str]]) -> Dict[str, Any]:
    """What the engine makes an https listener's TLS context with: the session
    ticket keys the workers share and the ssl_context option's checked context
    (None: the certificate files). Raises ConfigError."""
    if not schemes or "https" not in schemes:
        return {}
    from .tls import context_from, ticket_keys

    context = None if config.ssl_context is None else context_from(config.ssl_context)
    return {"ticket_keys": ticket_keys(), "ssl_context": context}


def run_worker(app: Any, config: Config, listeners: List[Any], worker_id: int,
               slot: Optional[memoryview] = None, schemes: Optional[List[str]] = None,
               worker: Any = None, stats: Optional[memoryview] = None,
               first_to_fail: Optional[Callable[[], bool]] = None) -> int:
    """Serve on the inherited listeners until told to stop; returns the exit status.
    schemes: "http" or "https" per listener (default: all plain). worker: what the
    worker_int hook gets (the master's record of this worker). stats: the
    worker's statsd area (forker/statsd.py), None when statsd is off.
    first_to_fail: whether a failure to boot is this worker's to tell (the
    others would repeat it); None: always."""
    from ._worker import Engine
    from .app import greeting
    from .errors import WORKER_BOOT_ERROR, ConfigError

    asynchronous = getattr(app, "interface", None) == "asgi"
    aloop = None
    if asynchronous:  # before the loop accepts: lifespan startup on the worker's event loop
        import asyncio

        if config.threads != 1 and worker_id == 0:  # said once, not by every worker
            log.warning("--threads %d does not apply to an ASGI application: its requests "
                        "run on the worker's event loop (blocking work belongs in "
                        "run_in_executor)", config.threads)

        from .asgi import LifespanFailure

        aloop = app.event_loop()
        asyncio.set_event_loop(aloop)
        try:
            aloop.run_until_complete(app.startup())
        except LifespanFailure as exc:
            if first_to_fail is None or first_to_fail():
                log.error("worker %d: %s", worker_id, exc)
            aloop.close()
            return WORKER_BOOT_ERROR
    access_log = _access_logger(config, worker_id)
    tick = access_log.flush if access_log is not None else None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        engine = Engine(app, config, listeners, slot=slot, wake_fd=wake_r,
                        parent_pid=os.getppid(), access_log=access_log, tick=tick,
                        schemes=schemes, asynchronous=asynchronous,
                        constant_body=greeting(None) if app is greeting else None,
                        stats=stats, **_tls_inputs(config, schemes))
    except ConfigError as exc:  # the certificate files changed since the master read them
        log.error("worker %d: cannot set up TLS: %s", worker_id, exc)
        if access_log is not None:
            access_log.close()
        os.close(wake_r)
        os.close(wake_w)
        if aloop is not None:  # the lifespan started: it shuts down too
            aloop.run_until_complete(app.shutdown())
            aloop.close()
        return WORKER_BOOT_ERROR

    def graceful(signum: int, frame: Any) -> None:
        engine.stop(graceful=True)

    worker_int = config.worker_int

    def fast(signum: int, frame: Any) -> None:
        if worker_int is not None:
            from .hooks import call

            call("worker_int", worker_int, worker)
        engine.stop(graceful=False)

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, fast)
    signal.signal(signal.SIGQUIT, fast)
    # USR1 (reopen the log files) is the child's, set before the application loaded
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the master reloads; workers are replaced
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    from ._worker import trim_memory

    trim_memory()  # what loading the application freed goes back before serving
    try:
        if aloop is not None:
            try:
                engine.run_async(aloop)
            finally:
                aloop.run_until_complete(app.shutdown())
                aloop.close()
        else:
            engine.run()
    finally:
        signal.set_wakeup_fd(-1)
        if access_log is not None:
            access_log.close()
        os.close(wake_r)
        os.close(wake_w)
    return 0
