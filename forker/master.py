"""The master: binds, forks the workers and supervises them until stopped.

    run(app, options) -> exit status      # what forker.serve() calls
    Forker(handler, workers=4).listen_and_serve(":8080")

Signals (the master acts on them between loop turns; handlers only queue them):
    TERM         graceful stop: workers finish what they hold, SIGKILL after graceful_timeout
    INT, QUIT    fast stop (a second one during a graceful stop makes it fast)
    HUP          reload: re-read the configuration, re-import the application, start new
                 workers, and once they serve, stop the old ones gracefully
    TTIN, TTOU   one worker more, one fewer
    USR1         reopen log files, in the master and in every worker
    USR2         upgrade: re-execute the master with the listening sockets inherited;
                 TERM to the old master then retires it
    CHLD         reap, and replace what died

A worker is a forked child running forker.worker.run_worker(); the two share a
512-byte slot of memory (forker/shm.py) through which the master sees each
worker's heartbeat, request count and the start of the handler call running.

The Arbiter holds what shares its state: the loop, what each signal does, the
reload, and spawning, reaping and watching the workers. Beside it: the signal
queue (forker/signals.py), the USR2 re-execution (forker/upgrade.py), the
fork's child side (forker/child.py), the listeners (forker/sockets.py) and
the metrics it serves or sends (forker/metrics.py, forker/statsd.py).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time

from . import appspec, child, hooks, metrics, process, tls, upgrade
from .config import Config
from .errors import WORKER_BOOT_ERROR
from .shm import SlotTable
from .signals import HANDLED, SignalQueue
from .sockets import Listeners, attach_cpu_steering, enable_request_migration

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional

log = logging.getLogger("forker.master")

BOOT_FAILURES_MAX = 5  # consecutive boot failures within BOOT_WINDOW make the master give up
BOOT_WINDOW = 60.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 4.0
FAST_STOP_SECONDS = 2.0  # INT/QUIT: how long workers get before SIGKILL
DUMP_SECONDS = 0.3  # a timed-out worker gets this long to print its stack before SIGKILL
ABORT_SECONDS = 1.0  # ... and this long with a worker_abort hook to run, as gunicorn gives
MEMORY_CHECK_SECONDS = 1.0
SLOT_CAPACITY = 4096  # 1024 workers, a reload's second generation, and room to spare

RESTART_ONLY = ("bind", "reuse_port", "backlog", "user", "group", "pidfile",
                "unix_socket_mode", "unix_socket_owner", "metrics_bind")


class Worker:
    """The master's record of one worker process, also what hooks get as `worker`
    (gunicorn's attributes: pid, ppid, age, log, cfg)."""

    __slots__ = ("id", "slot", "generation", "pid", "born", "booted", "retiring",
                 "deadline", "kill_at", "timed_out", "ppid", "age", "cfg", "stats")

    log = log

    def __init__(self, worker_id: int, slot: int, generation: int, ppid: int = 0,
                 age: int = 0, cfg: Optional[Config] = None) -> None:
        self.id = worker_id
        self.slot = slot
        self.generation = generation
        self.pid = 0  # until forked; its own pid in the worker
        self.ppid = ppid  # the master
        self.age = age  # the how-manieth worker the master spawned
        self.cfg = cfg  # the configuration the worker runs with
        self.born = time.monotonic()
        self.booted = False  # its loop has written a heartbeat
        self.retiring = False  # sent TERM: it drains and exits, a successor may be running
        self.deadline = 0.0  # retiring: SIGKILL after this
        self.kill_at = 0.0  # timed out: SIGKILL after its stack dump
        self.timed_out = False
        self.stats = False  # has a statsd area (forker/statsd.py) at its slot's index


class _Reload:
    """What a HUP replaced, to go back to if the new workers cannot boot."""

    def __init__(self, arbiter: "Arbiter") -> None:
        self.generation = arbiter.generation
        self.config = arbiter.config
        self.app = arbiter.app
        self.num_workers = arbiter.num_workers


class Arbiter:
    """Keeps num_workers workers serving the listeners until told to stop."""

    def __init__(self, app: Any, options: Mapping[str, Any],
                 reload_options: Optional[Callable[[], Mapping[str, Any]]] = None) -> None:
        self.app_spec = app  # a callable, or "module:attr" for forker.app.load
        self.options = dict(options)
        self.reload_options = reload_options
        self.config = self._read_config()
        self.pid = os.getpid()
        self._num_workers: Optional[int] = None
        self.num_workers = self.config.workers
        self.app: Any = None  # the handler, when loaded in the master
        self._age = 0  # workers spawned so far
        self.cwd = upgrade.working_directory()
        self.workers: Dict[int, Worker] = {}
        self.generation = 0
        self._next_generation = 1
        self.listeners: Optional[Listeners] = None
        self.slots: Optional[SlotTable] = None
        self.metrics: Optional[metrics.MetricsServer] = None
        self.statsd: Optional[Any] = None  # forker.statsd.Statsd while statsd_host is set
        self.pidfile: Optional[process.Pidfile] = None
        self.cpus = process.usable_cpus()
        self.migrate = False
        self.signals = SignalQueue()
        self._stopping: Optional[str] = None  # "graceful" or "fast"
        self._exit_status = 0
        self._reload: Optional[_Reload] = None
        self._boot_failures: List[float] = []
        self._ever_booted = False  # a worker has served: boot failures are retried from now on
        # One byte: the worker that takes it reports a failed import with its traceback;
        # others failing alike at the same time say nothing (N workers, one traceback).
        self.boot_report = (-1, -1)
        self._spawn_after = 0.0
        self._upgrade_pid = 0
        self._last_memory_check = 0.0
        self._memory_warned = False

    # -- what hooks see (gunicorn's Arbiter attributes) --------------------------

    log = log

    @property
    def cfg(self) -> Config:
        return self.config

    @property
    def WORKERS(self) -> Dict[int, Worker]:  # noqa: N802 (gunicorn's name)
        return self.workers

    @property
    def num_workers(self) -> int:
        assert self._num_workers is not None
        return self._num_workers

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        old, self._num_workers = self._num_workers, value
        if value != old:
            hooks.call("nworkers_changed", self.config.nworkers_changed, self, value, old)

    # -- configuration and application ---------------------------------------

    def _read_config(self, reloading: bool = False) -> Config:
        """The configuration: the options given, or on a reload (HUP) those
        reload_options reads afresh (the config file and the environment)."""
        options = self.reload_options() if reloading and self.reload_options else self.options
        config = Config()
        config.update_from_env()
        config.update(options)
        tls.check(config)  # here, not after fork: a bad certificate is no boot loop
        _check_access_log(config)
        return config

    def load_app(self, config: Config, fresh: bool) -> Any:
        """The handler, imported (again, if fresh); raises AppImportError."""
        return appspec.load_handler(self.app_spec, config, fresh)

    def title(self) -> str:
        return self.config.proc_name or appspec.describe(self.app_spec)

    def short_title(self, role: str) -> str:
        """The 15-byte command name: 'NAME master', 'NAME w3' (NAME: proc_name or forker)."""
        suffix = f" {role}"
        return (self.config.proc_name or "forker")[: 15 - len(suffix)] + suffix

    # -- the loop ---------------------------------------------------------------

    def run(self) -> int:
        """Start, supervise until stopped, return the exit status."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the forker master must run in the main thread (it owns signals)")
        self._start()
        try:
            self._loop()
        except BaseException:
            log.exception("the master failed; stopping the workers")
            self._stopping, self._exit_status = "fast", 1
            self._stop()
            raise
        finally:
            self._cleanup()
            try:
                hooks.call("on_exit", self.config.on_exit, self, fatal=True)
            except hooks.HookError:
                self._exit_status = self._exit_status or 1  # as gunicorn's
        return self._exit_status

    def _start(self) -> None:
        """Starting: hooks, logging, preload, bind, pidfile, slots, signals."""
        config = self.config
        _setup_logging(config)
        hooks.call("on_starting", config.on_starting, self, fatal=True)  # nothing to undo yet
        if config.preload:
            self.app = self.load_app(config, fresh=False)  # fails fast, before binding
        elif not isinstance(self.app_spec, str):
            self.app = self.load_app(config, fresh=False)
        self.listeners = Listeners.open(config, os.environ)
        try:
            self._start_listeners()
            if config.pidfile:
                self.pidfile = process.Pidfile(config.pidfile)
                self.pidfile.create(self.pid)
            self.slots = SlotTable(SLOT_CAPACITY)
            self.boot_report = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            os.write(self.boot_report[1], b"!")
            self.metrics = metrics.MetricsServer.open(self, log)
            self._configure_statsd(config)
            self.signals.install()
        except BaseException:
            self.listeners.close()
            if self.metrics is not None:
                self.metrics.close()
            if self.statsd is not None:
                self.statsd.close()
            raise
        process.set_title(f"forker: master [{self.title()}]", self.short_title("master"))
        log.info("forker master pid %d: %d workers, %s", self.pid, self.num_workers,
                 "preloaded application" if config.preload else "workers import the application")
        if self.pins_workers():
            log.info("cpu_affinity: worker i runs on CPU i mod %d of %s%s", len(self.cpus),
                     ",".join(map(str, self.cpus)),
                     "" if config.cpu_affinity else " (a worker per CPU; --no-cpu-affinity to "
                     "let them move)")
        try:
            hooks.call("when_ready", config.when_ready, self, fatal=True)
        except hooks.HookError:  # stop before any worker, as gunicorn does (status 1)
            self._stopping, self._exit_status = "fast", 1

    def _start_listeners(self) -> None:
        """Starting: per-worker sockets, request migration and CPU steering."""
        listeners = self.listeners
        assert listeners is not None
        listeners.ensure(self.num_workers)
        schemes = tls.listener_schemes(self.config, listeners.for_worker(0), listeners.source)
        for address, per_worker, scheme in zip(listeners.addresses(), listeners.per_worker,
                                               schemes):
            mode = "one SO_REUSEPORT socket per worker" if per_worker else "shared by the workers"
            log.info("listening on %s (%s, %s%s)", address, mode, listeners.source,
                     ", TLS" if scheme == "https" else "")
        if self.config.proxy_protocol:
            # refused peers are closed without a word: say once whom we listen to
            log.info("proxy_protocol: every connection opens with a PROXY header; accepted "
                     "from %s (--forwarded-allow-ips) and unix sockets, others are closed",
                     ",".join(self.config.forwarded_allow_ips))
        if self.config.reuse_port:
            if not any(listeners.per_worker):
                log.warning("reuse_port: no socket supports SO_REUSEPORT; they are shared")
            self.migrate, message = enable_request_migration()
            (log.info if self.migrate else log.warning)("reuse_port: %s", message)
        self._steer()

    def pins_workers(self) -> bool:
        """cpu_affinity, or by default whether every usable CPU has a worker:
        then a worker that stays on its CPU keeps its caches warm (measured
        in benchmarks/RESULTS.md); with fewer workers than CPUs the kernel
        is left to place them."""
        if self.config.cpu_affinity is not None:
            return bool(self.config.cpu_affinity)
        return self.num_workers >= len(self.cpus)

    def _steer(self) -> None:
        """cpu_affinity in reuse_port mode: steer each group by receiving CPU."""
        if self.config.cpu_affinity and self.listeners is not None:
            for group in self.listeners.reuse_port_groups():
                log.info("cpu_affinity: %s", attach_cpu_steering(group[: self.num_workers], self.cpus))

    def _loop(self) -> None:
        if self._stopping is not None:  # when_ready failed: no worker is started
            self._stop()
            return
        self._manage_workers()  # at once: a client connecting right after start is not kept waiting
        while True:
            self._wait(self._timeout())
            self._dispatch()
            self._reap()
            if self._stopping is not None:
                break
            self._check_workers()
            if self._stopping is not None:  # gave up on boot failures
                break
            self._manage_workers()
            self._send_statsd()
        self._stop()

    def _timeout(self) -> float:
        now = time.monotonic()
        wake = now + min(1.0, max(0.1, self.config.timeout / 2 or 1.0))  # heartbeats, memory
        if self._spawn_after > now:
            wake = min(wake, self._spawn_after)
        for worker in self.workers.values():
            if worker.kill_at:
                wake = min(wake, worker.kill_at)
        if self._reload is not None:
            wake = min(wake, now + 0.05)  # watch the new generation boot
        if self.statsd is not None:
            wake = min(wake, self.statsd.due())
        return max(0.0, wake - now)

    def _wait(self, timeout: float) -> None:
        """Block until a signal arrives or timeout seconds pass; answer /metrics meanwhile."""
        if self.signals.pending:
            timeout = 0.0
        poller = select.poll()  # not select(): descriptors beyond 1023 with many workers
        poller.register(self.signals.fd, select.POLLIN)
        for fd, events in self.metrics.watch() if self.metrics is not None else ():
            poller.register(fd, events)
        try:
            ready = poller.poll(timeout * 1000.0)
        except InterruptedError:
            return
        if self.metrics is not None:
            self.metrics.handle([(fd, ev) for fd, ev in ready if fd != self.signals.fd])
        if any(fd == self.signals.fd for fd, _ in ready):
            self.signals.drain()

    # -- signals (queued by forker/signals.py, acted on here) -----------------------

    def _dispatch(self) -> None:
        while (signum := self.signals.pop()) is not None:
            handler = getattr(self, f"_on_{signal.Signals(signum).name[3:].lower()}", None)
            if handler is not None:
                handler()

    def _on_term(self) -> None:
        """TERM: graceful stop."""
        if self._stopping is None:
            log.info("TERM: stopping gracefully (graceful_timeout %gs)", self.config.graceful_timeout)
            self._stopping = "graceful"

    def _on_int(self) -> None:
        """INT: fast stop."""
        if self._stopping != "fast":
            log.info("INT/QUIT: stopping fast%s",
                     "" if self._stopping is None else " (graceful stop cut short)")
            self._stopping = "fast"

    _on_quit = _on_int

    def _on_chld(self) -> None:
        """CHLD: nothing here; the loop reaps next."""

    def _on_ttin(self) -> None:
        """TTIN: one worker more."""
        self.num_workers += 1
        log.info("TTIN: %d workers", self.num_workers)
        if self.listeners is not None and self.listeners.ensure(self.num_workers):
            self._steer()

    def _on_ttou(self) -> None:
        """TTOU: one worker fewer (never below one)."""
        if self.num_workers <= 1:
            log.info("TTOU: already at one worker")
            return
        self.num_workers -= 1
        log.info("TTOU: %d workers", self.num_workers)
        if self._reload is None:
            self._steer()  # stop steering to the departing worker's socket first

    def _on_usr1(self) -> None:
        """USR1: reopen log files here and in the workers."""
        log.info("USR1: reopening log files")
        child.reopen_logs()
        self._signal_workers(signal.SIGUSR1)

    def _on_hup(self) -> None:
        """HUP: reload configuration and application, then replace the workers."""
        if self._reload is not None:
            log.warning("HUP: a reload is already under way")
            return
        try:
            config = self._read_config(reloading=True)
        except Exception as exc:  # a reload must never take the server down
            log.error("HUP: bad configuration, keeping the current one: %s", exc)
            return
        for name in RESTART_ONLY:
            if getattr(config, name) != getattr(self.config, name):
                log.warning("HUP: %s changed; that takes an upgrade (USR2) or a restart", name)
                config.update({name: getattr(self.config, name)})
        try:
            app = (self.load_app(config, fresh=True)
                   if config.preload or not isinstance(self.app_spec, str) else None)
        except Exception as exc:
            log.error("HUP: cannot load the application, keeping the current workers: %s", exc)
            return
        self._reload = _Reload(self)
        self.config, self.app, self.num_workers = config, app, config.workers
        self._configure_statsd(config)
        self.generation, self._next_generation = self._next_generation, self._next_generation + 1
        if self.listeners is not None:
            self.listeners.ensure(max(self.num_workers, self._reload.num_workers))
        self._spawn_after = 0.0
        log.info("HUP: reloading; starting %d new workers", self.num_workers)
        hooks.call("on_reload", config.on_reload, self)

    def _on_usr2(self) -> None:
        """USR2: re-execute the master with the listening sockets inherited."""
        if self._upgrade_pid:
            log.warning("USR2: the new master pid %d is already running", self._upgrade_pid)
            return
        assert self.listeners is not None

        def before_exec() -> None:  # in the new master's process
            self.signals.restore()
            hooks.call("pre_exec", self.config.pre_exec, self)

        self._upgrade_pid = upgrade.start_new_master(self.listeners.sockets(), self.cwd,
                                                     self.pidfile, before_exec)

    # -- workers ------------------------------------------------------------------

    def _reap(self) -> None:
        """Reap every exited child; account for each worker."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid == self._upgrade_pid:
                self._upgrade_pid = 0
                upgrade.new_master_exited(pid, code, self.pidfile)
                continue
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._worker_exited(worker, code)

    def _worker_exited(self, worker: Worker, code: int) -> None:
        """A worker is gone: report it, count boot failures, free its slot."""
        assert self.slots is not None
        state = self.slots.read(worker.slot)
        if self.metrics is not None:
            self.metrics.worker_exited(worker.id, self.slots.counters(worker.slot))
        if self.statsd is not None and worker.stats:
            self.statsd.worker_exited(worker.slot)
        self.slots.free(worker.slot)
        how = process.describe_exit(code)
        if self._stopping is not None:
            log.info("worker %d pid %d served %d requests", worker.id, worker.pid, state.requests)
        elif worker.timed_out and worker.booted:
            log.info("worker %d pid %d killed after its timeout, having served %d requests",
                     worker.id, worker.pid, state.requests)
        elif worker.retiring and not worker.timed_out:
            log.info("worker %d pid %d retired (%s) after %d requests",
                     worker.id, worker.pid, how, state.requests)
        elif code == WORKER_BOOT_ERROR or not (worker.booted or state.heartbeat_ms):
            self._boot_failed(worker, code)
        elif code == 0:
            log.info("worker %d pid %d exited after %d requests; replacing it",
                     worker.id, worker.pid, state.requests)
        else:
            log.warning("worker %d pid %d died (%s) after %d requests; replacing it",
                        worker.id, worker.pid, how, state.requests)
        hooks.call("child_exit", self.config.child_exit, self, worker)

    def _boot_failed(self, worker: Worker, code: int) -> None:
        """A worker died before serving: back off, abort a reload, or give up."""
        why = ("the application could not be loaded" if code == WORKER_BOOT_ERROR
               else process.describe_exit(code))
        if code == WORKER_BOOT_ERROR and not self._ever_booted and self._reload is None:
            log.error("worker %d pid %d could not load the application; exiting (as no "
                      "worker has served yet, retrying would fail alike)", worker.id, worker.pid)
            self._stopping = "fast"
            self._exit_status = WORKER_BOOT_ERROR
            return
        if code == WORKER_BOOT_ERROR:  # retried: the next failure tells its traceback again
            try:
                os.read(self.boot_report[0], 1)
            except BlockingIOError:
                pass
            os.write(self.boot_report[1], b"!")
        if self._reload is not None and worker.generation == self.generation:
            log.error("HUP: a new worker failed to boot (%s); keeping the old workers", why)
            self._abort_reload()
            return
        now = time.monotonic()
        self._boot_failures = [t for t in self._boot_failures if now - t < BOOT_WINDOW] + [now]
        count = len(self._boot_failures)
        if count >= BOOT_FAILURES_MAX:
            log.error("worker %d failed to boot %d times in a row within %.0f s (last: %s); "
                      "giving up", worker.id, count, now - self._boot_failures[0], why)
            self._stopping = "fast"
            self._exit_status = WORKER_BOOT_ERROR
            return
        delay = min(BACKOFF_FIRST * 2 ** (count - 1), BACKOFF_MAX)
        self._spawn_after = max(self._spawn_after, now + delay)
        log.error("worker %d pid %d failed to boot (%s); retrying in %.1f s",
                  worker.id, worker.pid, why, delay)

    def _abort_reload(self) -> None:
        """HUP failed: retire the new generation, go back to the old one."""
        previous = self._reload
        assert previous is not None
        self._reload = None
        for worker in list(self.workers.values()):
            if worker.generation == self.generation and not worker.retiring:
                self._retire(worker)
        self.generation, self.config = previous.generation, previous.config
        self.app, self.num_workers = previous.app, previous.num_workers
        self._configure_statsd(self.config)

    def _check_workers(self) -> None:
        """Heartbeats, deadlines and memory of every worker."""
        assert self.slots is not None
        now = time.monotonic()
        now_ms = now * 1000.0
        timeout_ms = self.config.timeout * 1000.0
        memory_limit = self.config.max_worker_memory * 1024 * 1024
        check_memory = memory_limit and now - self._last_memory_check >= MEMORY_CHECK_SECONDS
        if check_memory:
            self._last_memory_check = now
        for worker in list(self.workers.values()):
            state = self.slots.read(worker.slot)
            if state.heartbeat_ms and not worker.booted:
                worker.booted = True
                self._ever_booted = True
                if worker.generation == self.generation:
                    self._boot_failures.clear()
            if worker.kill_at:
                if now >= worker.kill_at:
                    worker.kill_at = 0.0
                    _kill(worker.pid, signal.SIGKILL)
                continue
            if worker.retiring and now > worker.deadline:
                log.warning("worker %d pid %d still running %g s after TERM; killing it",
                            worker.id, worker.pid, self.config.graceful_timeout)
                worker.deadline = float("inf")
                _kill(worker.pid, signal.SIGKILL)
                continue
            last_ms = state.heartbeat_ms or worker.born * 1000.0
            if state.busy_since_ms:  # with handler threads the loop turns on: look at the call
                last_ms = min(last_ms, state.busy_since_ms)
            if timeout_ms and not worker.timed_out and now_ms - last_ms > timeout_ms:
                self._timed_out(worker, state, now_ms)
            elif check_memory and not worker.retiring:
                rss = process.rss_bytes(worker.pid)
                if rss is None or rss <= memory_limit:
                    continue
                if not state.requests:  # born that big: recycling would only churn
                    if not self._memory_warned:
                        self._memory_warned = True
                        log.warning("max_worker_memory %d MiB is below the %d MiB of a worker "
                                    "that has served nothing yet (preloaded code counts); "
                                    "such workers are not recycled",
                                    self.config.max_worker_memory, rss >> 20)
                    continue
                log.warning("worker %d pid %d uses %d MiB > max_worker_memory %d MiB; "
                            "recycling it", worker.id, worker.pid, rss >> 20,
                            self.config.max_worker_memory)
                self._retire(worker)

    def _timed_out(self, worker: Worker, state: Any, now_ms: float) -> None:
        """A worker missed its heartbeat by more than timeout: log, dump, kill."""
        assert self.slots is not None
        if state.busy_since_ms:
            request = self.slots.request_text(worker.slot)
            log.error("worker %d pid %d: handler running for %.1f s > timeout %g s on request "
                      "#%d%s; killing it (its stack follows)", worker.id, worker.pid,
                      (now_ms - state.busy_since_ms) / 1000.0, self.config.timeout,
                      state.requests + 1, f" ({request})" if request else "")
        elif state.heartbeat_ms:
            log.error("worker %d pid %d: no heartbeat for %.1f s > timeout %g s; killing it",
                      worker.id, worker.pid, (now_ms - state.heartbeat_ms) / 1000.0,
                      self.config.timeout)
        else:
            log.error("worker %d pid %d did not boot within timeout %g s; killing it",
                      worker.id, worker.pid, self.config.timeout)
        worker.timed_out = True
        worker.retiring = True  # its successor starts now
        worker.deadline = float("inf")  # kill_at below is its deadline
        _kill(worker.pid, signal.SIGUSR2)  # faulthandler prints its stack
        if self.config.worker_abort is not None:  # gunicorn's SIGABRT: the hook, then exit
            _kill(worker.pid, signal.SIGABRT)
            worker.kill_at = time.monotonic() + ABORT_SECONDS
        else:
            worker.kill_at = time.monotonic() + DUMP_SECONDS

    def _retire(self, worker: Worker) -> None:
        """Ask a worker to stop gracefully; a successor may start at once."""
        worker.retiring = True
        worker.deadline = time.monotonic() + self.config.graceful_timeout + 1.0
        _kill(worker.pid, signal.SIGTERM)

    def _manage_workers(self) -> None:
        """Keep num_workers workers of the current generation; finish a reload."""
        active = [w for w in self.workers.values()
                  if w.generation == self.generation and not w.retiring]
        for worker in sorted(active, key=lambda w: -w.id):
            if worker.id >= self.num_workers:
                self._retire(worker)
        if self.listeners is not None and self._reload is None:
            self.listeners.shrink(self.num_workers)
        if time.monotonic() < self._spawn_after:
            return
        taken = {w.id for w in active}
        missing = [worker_id for worker_id in range(self.num_workers) if worker_id not in taken]
        if missing:
            process.prepare_fork()  # once per batch: what the workers inherit, made small
        for worker_id in missing:
            self._spawn(worker_id)
        if self._reload is not None:
            current = [w for w in self.workers.values()
                       if w.generation == self.generation and not w.retiring]
            if len(current) >= self.num_workers and all(w.booted for w in current):
                old = [w for w in self.workers.values()
                       if w.generation != self.generation and not w.retiring]
                log.info("HUP: %d new workers serving; stopping %d old ones gracefully",
                         len(current), len(old))
                for worker in old:
                    self._retire(worker)
                self._reload = None
                self._steer()

    def _spawn(self, worker_id: int) -> None:
        """Fork worker worker_id of the current generation."""
        assert self.slots is not None and self.listeners is not None
        try:
            slot = self.slots.allocate()
        except LookupError as exc:
            log.error("cannot start worker %d: %s", worker_id, exc)
            return
        self._age += 1
        worker = Worker(worker_id, slot, self.generation, self.pid, self._age, self.config)
        if self.statsd is not None:
            self.statsd.spawning(slot)
            worker.stats = True
        listeners = self.listeners.for_worker(worker_id)
        hooks.call("pre_fork", self.config.pre_fork, self, worker)
        # Blocked across fork: a TERM meant for the child must not reach the
        # master's handler copy in it before it has reset its dispositions.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            self.slots.free(slot)
            log.error("cannot fork worker %d: %s", worker_id, exc.strerror)
            self._spawn_after = time.monotonic() + 1.0
            return
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            worker.pid = pid
            self.workers[pid] = worker
            return
        child.run(self, worker, listeners)  # never returns

    # -- statsd ---------------------------------------------------------------------

    def _configure_statsd(self, config: Config) -> None:
        """At start and on HUP: a statsd client for statsd_host, or none."""
        if not config.statsd_host:
            if self.statsd is not None:
                self.statsd.close()  # the workers still counting go unread
                self.statsd = None
            return
        if self.statsd is None:
            from .statsd import Statsd  # only when asked for: the master's socket, its table

            assert self.slots is not None
            self.statsd = Statsd(config, self.slots.capacity)
        else:
            self.statsd.configure(config)

    def _send_statsd(self, force: bool = False) -> None:
        """What the workers counted, once a second (forker/statsd.py)."""
        if self.statsd is None:
            return
        serving = sum(1 for w in self.workers.values()
                      if w.generation == self.generation and not w.retiring)
        sockets = self.listeners.sockets() if self.listeners is not None else ()
        try:
            self.statsd.flush([w.slot for w in self.workers.values() if w.stats], serving,
                              sockets, force=force)
        except Exception:  # metrics must never take the master down
            log.exception("statsd: sending failed; statsd is off until a reload (HUP)")
            self.statsd.close()
            self.statsd = None

    def _signal_workers(self, signum: int) -> None:
        for pid in list(self.workers):
            _kill(pid, signum)

    # -- stopping -------------------------------------------------------------------

    def _stop(self) -> None:
        """Stopping: close listeners, TERM (or INT), reap until the deadline, KILL."""
        assert self.listeners is not None
        self.listeners.close()
        graceful = self._stopping == "graceful"
        self._signal_workers(signal.SIGTERM if graceful else signal.SIGINT)
        limit = self.config.graceful_timeout if graceful else FAST_STOP_SECONDS
        deadline = time.monotonic() + limit
        while self.workers and time.monotonic() < deadline:
            self._wait(min(0.5, max(0.0, deadline - time.monotonic())))
            self._dispatch()
            if graceful and self._stopping == "fast":
                graceful = False
                self._signal_workers(signal.SIGINT)
                deadline = min(deadline, time.monotonic() + FAST_STOP_SECONDS)
            self._reap()
        for pid, worker in list(self.workers.items()):
            log.warning("worker %d pid %d still running after %g s; killing it",
                        worker.id, pid, limit)
            _kill(pid, signal.SIGKILL)
        for pid in list(self.workers):
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            self._worker_exited(self.workers.pop(pid), os.waitstatus_to_exitcode(status))
        if self._upgrade_pid:
            log.info("the new master pid %d goes on serving", self._upgrade_pid)
        log.info("master pid %d exiting with status %d", self.pid, self._exit_status)
        self._send_statsd(force=True)  # what the last workers counted, and these lines

    def _cleanup(self) -> None:
        """Stopped: pidfile, signal dispositions, pipe, shared memory."""
        if self.pidfile is not None:
            self.pidfile.unlink(self.pid)
        self.signals.restore()
        self.signals.close()
        if self.listeners is not None:
            self.listeners.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.statsd is not None:
            self.statsd.close()
            self.statsd = None
        if self.slots is not None:
            self.slots.close()
        for fd in self.boot_report:
            if fd >= 0:
                os.close(fd)
        self.boot_report = (-1, -1)


def _check_access_log(config: Config) -> None:
    """An access log file that cannot be written is refused at start (or HUP),
    not found by each worker at its first request."""
    from .errors import ConfigError

    path = config.access_log
    if not path or path == "-":
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError as exc:
        raise ConfigError(f"access_log: cannot write to {path}: {exc.strerror}") from None


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _setup_logging(config: Config) -> None:
    """Make sure the master's lines reach stderr when nobody configured logging."""
    forker_log = logging.getLogger("forker")
    if forker_log.handlers or logging.getLogger().handlers:
        return
    from . import logs

    logs.setup(config)


def run(app: Any, options: Mapping[str, Any],
        reload_options: Optional[Callable[[], Mapping[str, Any]]] = None) -> int:
    """Serve app with the options of forker.config until stopped; the exit status.

    app is a handler or a WSGI application (see the interface option), or a
    "module:attr" string that the master (preload) or each worker imports.
    reload_options, when given, is called on HUP for the options to reload."""
    return Arbiter(app, options, reload_options).run()


class Forker:
    """The object form of serve(): Forker(handler, workers=4, reuse_port=True, ...).

    listen_and_serve(address) runs the master in this process until it is
    stopped and returns its exit status; meanwhile (from another thread or a
    hook) num_workers is the number of workers kept and worker_pids the process
    ids of the live workers, true across respawns, reloads and scaling."""

    def __init__(self, handler: Any, **options: Any) -> None:
        Config(**options)  # a bad option fails here, naming it
        self.handler = handler
        self.options = options
        self._arbiter: Optional[Arbiter] = None

    def listen_and_serve(self, address: Optional[Any] = None) -> int:
        options = dict(self.options)
        if address is not None:
            options["bind"] = address
        self._arbiter = Arbiter(self.handler, options)
        return self._arbiter.run()

    def listen_and_serve_tls(self, address: Optional[Any], certfile: str,
                             keyfile: Optional[str] = None) -> int:
        """listen_and_serve() over TLS: the certificate chain in certfile, its key in
        keyfile (or in certfile)."""
        options = dict(self.options, certfile=certfile, keyfile=keyfile)
        if address is not None:
            options["bind"] = address
        self._arbiter = Arbiter(self.handler, options)
        return self._arbiter.run()

    @property
    def num_workers(self) -> int:
        if self._arbiter is None:
            workers: int = Config(**self.options).workers
            return workers
        return self._arbiter.num_workers

    @property
    def worker_pids(self) -> List[int]:
        if self._arbiter is None:
            return []
        return sorted(list(self._arbiter.workers))  # list(dict) is atomic under the GIL


__all__ = ["run", "Forker", "Arbiter", "WORKER_BOOT_ERROR"]
