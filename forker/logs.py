"""Logging: the error log through the stdlib `logging` module, and the access log.

    setup(config)                       # the master, before fork: error log + level
    set_worker_id(3)                    # a worker after fork: lines say "[worker 3]"
    log = access_logger(config, 3)      # a worker: its access logger, or None when off
    log(request, status, body_bytes_sent, request_time_seconds)
    log.flush()                         # on the loop's tick; log.close() before exit
    reopen()                            # on USR1: reopen log files (after rotation)
    configure(config, "logconfig", "logging.ini")  # a logging configuration written for gunicorn

Error log lines look like

    [2026-11-26 11:01:35 +0000] [4242] [worker 3] [INFO] message

Access lines are formatted by the thread that ran the request and appended to
an in-memory buffer, written out with one write(2) when it passes 64 KiB, on
flush(), and at least once a second by a background thread, so logging a
request never waits on the disk. Formats: "common", "combined" (Apache), "json",
or a custom format of gunicorn-style atoms such as '%(h)s "%(r)s" %(s)s %(D)s'.
Besides gunicorn's atoms, %(Q)s is the request's queue time in microseconds:
from accept (or its arrival on a kept-alive connection) to the handler call
(the json format's "queue_time", in seconds).

A logging configuration written for gunicorn (--log-config, --log-config-json,
logconfig_dict) names gunicorn's loggers, and configure() makes forker log
through them as gunicorn does: forker's error log goes through
`gunicorn.error` (the loggers under `forker` hand their records to it, unless
the configuration names `forker` itself), and each access line is a record of
`gunicorn.access` instead of a line of forker's own buffered writer.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

log = logging.getLogger("forker")

_worker_label = "master"


def set_worker_id(worker_id: Optional[int]) -> None:
    """Mark this process as worker `worker_id` in its log lines (None: master)."""
    global _worker_label
    _worker_label = "master" if worker_id is None else f"worker {worker_id}"


class WorkerFilter(logging.Filter):
    """Adds `record.worker` ("master" or "worker N") for the format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = _worker_label
        return True


ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(worker)s] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"

_error_handler: Optional[logging.Handler] = None
_access_logs: "weakref.WeakSet[AccessLog]" = weakref.WeakSet()
# Set by configure(): access lines are records of this logger (gunicorn.access).
_access_via: Optional[logging.Logger] = None

GUNICORN_ERROR = "gunicorn.error"
GUNICORN_ACCESS = "gunicorn.access"
# What gunicorn updates with a logconfig_dict or a --log-config-json, key by key
# (gunicorn.glogging.CONFIG_DEFAULTS): an application's records go to standard
# output at INFO unless the configuration says otherwise, as under gunicorn.
CONFIG_DEFAULTS: Dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        GUNICORN_ERROR: {"level": "INFO", "handlers": ["error_console"], "propagate": True,
                         "qualname": GUNICORN_ERROR},
        GUNICORN_ACCESS: {"level": "INFO", "handlers": ["console"], "propagate": True,
                          "qualname": GUNICORN_ACCESS},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic",
                    "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic",
                          "stream": "ext://sys.stderr"},
    },
    "formatters": {
        "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
                    "datefmt": "[%Y-%m-%d %H:%M:%S %z]", "class": "logging.Formatter"},
    },
}


def setup(config: Any) -> None:
    """Configure the error log from config (error_log, log_level). Idempotent."""
    global _error_handler
    if _error_handler is not None:
        log.removeHandler(_error_handler)
        _error_handler.close()
    path = config.error_log
    if path in (None, "", "-"):
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(ERROR_FORMAT, DATE_FORMAT))
    handler.addFilter(WorkerFilter())
    log.addHandler(handler)
    log.setLevel(config.log_level.upper())
    log.propagate = False
    _error_handler = handler


def access_logger(config: Any, worker_id: Optional[int] = None) -> Optional["AccessLog"]:
    """This worker's access logger (None when config.access_log is off and no
    logging configuration routes gunicorn.access anywhere): call it as
    log(request, status, body_bytes_sent, request_time_seconds) after each
    response. Giving worker_id also marks the process's error log lines."""
    if worker_id is not None:
        set_worker_id(worker_id)
    if _access_via is not None:
        # gunicorn logs access lines whenever a logging configuration is given;
        # a line no handler would write is not formatted at all
        if not (_access_via.isEnabledFor(logging.INFO) and _access_via.hasHandlers()):
            return None
        return AccessLog(None, config.access_log_format, logger=_access_via)
    if not config.access_log:
        return None
    return AccessLog(config.access_log, config.access_log_format)


class _Forward(logging.Handler):
    """On the `forker` logger: its records go on to gunicorn.error's handlers,
    as if they had been logged there."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def handle(self, record: logging.LogRecord) -> bool:
        self.target.handle(record)  # without a lock of its own: the target's handlers lock
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


def configure(config: Any, kind: str, value: Any) -> None:
    """Apply a logging configuration as gunicorn does: kind "logconfig" (an ini
    file for logging.config.fileConfig, with %(here)s and %(__file__)s),
    "logconfig_json" (a JSON file) or "logconfig_dict" (a dict), the last two
    over CONFIG_DEFAULTS. Raises OSError or ValueError (and what logging.config
    raises) on a bad configuration."""
    import logging.config

    global _access_via
    error = logging.getLogger(GUNICORN_ERROR)
    access = logging.getLogger(GUNICORN_ACCESS)
    own = logging.getLogger("forker")
    # As gunicorn's logger stands when it applies a configuration: the error log's
    # handler (forker's, to --error-logfile) on gunicorn.error at --log-level, and
    # --access-logfile's on gunicorn.access; a configuration naming them replaces them.
    error.propagate = access.propagate = False
    error.setLevel(config.log_level.upper())
    access.setLevel(logging.INFO)
    if _error_handler is not None:
        own.removeHandler(_error_handler)
        error.addHandler(_error_handler)
    forward = _Forward(error)
    own.addHandler(forward)
    if config.access_log:
        handler: logging.Handler = (logging.StreamHandler(sys.stdout) if config.access_log == "-"
                                    else logging.FileHandler(config.access_log, encoding="utf-8"))
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
    if kind == "logconfig":
        path = os.path.abspath(os.fspath(value))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {value}")
        logging.config.fileConfig(path, defaults={"__file__": path, "here": os.path.dirname(path)},
                                  disable_existing_loggers=False)
    else:
        if kind == "logconfig_json":
            import json

            with open(value, encoding="utf-8") as source:
                value = json.load(source)
        if not isinstance(value, dict):
            raise ValueError(f"expected a dict of logging.config.dictConfig, got {value!r}")
        import copy

        settings = copy.deepcopy(CONFIG_DEFAULTS)  # deep: dictConfig consumes what it reads
        settings.update(value)
        logging.config.dictConfig(settings)
    if forward in own.handlers:  # the configuration left forker's logger to gunicorn.error
        own.setLevel(error.getEffectiveLevel())
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if name.split(".")[0] == "forker" and isinstance(logger, logging.Logger):
                logger.disabled = error.disabled  # disable_existing_loggers, as for gunicorn's
    _access_via = access


def flush() -> None:
    """Write out buffered log lines (a worker calls this before exiting)."""
    for access in list(_access_logs):
        access.flush()
    if _error_handler is not None:
        _error_handler.flush()


def reopen() -> None:
    """Reopen the log files, e.g. after logrotate moved them (SIGUSR1): the
    access log's, and those of every logging.FileHandler of any logger (the
    error log's, and a logging configuration's), as gunicorn does."""
    loggers = [logging.root] + [logger for logger in list(logging.root.manager.loggerDict.values())
                                if isinstance(logger, logging.Logger)]
    handlers = {id(handler): handler for logger in loggers for handler in list(logger.handlers)}
    for handler in handlers.values():
        if not isinstance(handler, logging.FileHandler):
            continue
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.close()
            handler.stream = handler._open()
        finally:
            handler.release()
    for access in list(_access_logs):
        access.reopen()


class ErrorStream:
    """wsgi.errors: a text stream whose lines go to the error log."""

    def __init__(self, logger: Optional[logging.Logger] = None) -> None:
        self._logger = logger or logging.getLogger("forker.wsgi")
        self._partial = threading.local()

    def write(self, text: str) -> int:
        pending = getattr(self._partial, "text", "") + text
        *lines, rest = pending.split("\n")
        for line in lines:
            self._logger.error("%s", line)
        self._partial.text = rest
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        rest = getattr(self._partial, "text", "")
        if rest:
            self._partial.text = ""
            self._logger.error("%s", rest)


# -- access log ----------------------------------------------------------------

COMMON = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s'
COMBINED = COMMON + ' "%(f)s" "%(a)s"'
FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 1.0

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Escape what could forge or break a line: quotes, backslashes, controls.
_ESCAPES = {c: f"\\x{c:02x}" for c in list(range(0x20)) + [0x7F]}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"
_NEEDS_ESCAPE = frozenset(chr(c) for c in _ESCAPES)


def _escape(text: str) -> str:
    if _NEEDS_ESCAPE.isdisjoint(text):
        return text
    return text.translate(_ESCAPES)


def _rounded(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds, 6)


class _Clock:
    """Apache's [10/Oct/2000:13:55:36 -0700], computed once per second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def apache(self, when: float) -> str:
        second = int(when)
        if second != self.second:
            tm = time.localtime(second)
            offset = tm.tm_gmtoff // 60
            sign = "-" if offset < 0 else "+"
            offset = abs(offset)
            self.text = (f"[{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
                         f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} "
                         f"{sign}{offset // 60:02d}{offset % 60:02d}]")
            self.second = second
        return self.text


def _user(request: Any) -> str:
    auth = request.headers.get("authorization")
    if auth and auth[:6].lower() == "basic ":
        import base64
        import binascii

        try:
            decoded = base64.b64decode(auth[6:].strip()).decode("latin-1")
        except (binascii.Error, ValueError):
            return "-"
        return _escape(decoded.partition(":")[0]) or "-"
    return "-"


class _Atoms(dict):  # type: ignore[type-arg]
    """The gunicorn atoms of one request, computed as the format asks for them."""

    def __init__(self, request: Any, status: int, sent: int, request_time: float,
                 clock: _Clock) -> None:
        super().__init__()
        self.request = request
        self.status = status
        self.sent = sent
        self.request_time = request_time
        self.clock = clock

    def __missing__(self, key: str) -> str:
        request = self.request
        if key == "h":
            return request.remote_addr or "-"
        if key in ("l", "o"):
            return "-"
        if key == "u":
            return _user(request)
        if key == "t":
            return self.clock.apache(time.time() - self.request_time)
        if key == "r":
            return _escape(f"{request.method} {request.target} {request.version}")
        if key == "m":
            return str(request.method)
        if key == "U":
            return _escape(request.path)
        if key == "q":
            return _escape(request.query)
        if key == "H":
            return str(request.version)
        if key == "s":
            return str(self.status)
        if key == "B":
            return str(self.sent)
        if key == "b":
            return str(self.sent) if self.sent else "-"
        if key == "f":
            return _escape(request.headers.get("referer", "-"))
        if key == "a":
            return _escape(request.headers.get("user-agent", "-"))
        if key == "T":
            return str(int(self.request_time))
        if key == "D":
            return str(int(self.request_time * 1_000_000))
        if key == "M":
            return str(int(self.request_time * 1000))
        if key == "L":
            return f"{self.request_time:.6f}"
        if key == "Q":  # queue time: accept (or arrival) to handler call, microseconds
            queued = getattr(request, "queue_time", None)
            return "-" if queued is None else str(int(queued * 1_000_000))
        if key == "p":
            return f"<{os.getpid()}>"
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                return _escape(request.headers.get(name.lower(), "-"))
            if kind == "e":
                return _escape(os.environ.get(name, "-"))
            return "-"  # response headers ({name}o) are not known to the logger
        return "-"


class AccessLog:
    """Formats access lines and buffers them for _Writer. Call it per response."""

    def __init__(self, path: Optional[str], fmt: str = "combined",
                 logger: Optional[logging.Logger] = None) -> None:
        """Lines to the file at path ("-": standard output), or, given logger,
        as its INFO records."""
        self._writer: Any = _LogWriter(logger) if logger is not None else _Writer(str(path))
        _access_logs.add(self)
        self._clock = _Clock()
        if fmt == "common":
            self._format = self._common
        elif fmt == "combined":
            self._format = self._combined
        elif fmt == "json":
            self._format = self._json
        else:
            self._custom = fmt
            self._format = self._custom_line

    def __call__(self, request: Any, status: int, sent: int = 0,
                 request_time: float = 0.0) -> None:
        try:
            line = self._format(request, status, sent, request_time)
        except Exception:
            log.exception("cannot format an access log line")
            return
        self._writer.write(line + "\n")

    def _common(self, request: Any, status: int, sent: int, request_time: float) -> str:
        headers = request.headers
        user = _user(request) if "authorization" in headers else "-"
        return (f"{request.remote_addr or '-'} - {user} "
                f"{self._clock.apache(time.time() - request_time)} "
                f'"{_escape(request.method)} {_escape(request.target)} {request.version}" '
                f"{status} {sent if sent else '-'}")

    def _combined(self, request: Any, status: int, sent: int, request_time: float) -> str:
        headers = request.headers
        return (f"{self._common(request, status, sent, request_time)} "
                f'"{_escape(headers.get("referer", "-"))}" '
                f'"{_escape(headers.get("user-agent", "-"))}"')

    def _json(self, request: Any, status: int, sent: int, request_time: float) -> str:
        headers = request.headers
        record: Dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - request_time)),
            "remote_addr": request.remote_addr,
            "method": request.method,
            "target": request.target,
            "protocol": request.version,
            "status": status,
            "bytes": sent,
            "duration": round(request_time, 6),
            "queue_time": _rounded(getattr(request, "queue_time", None)),
            "host": request.host,
            "referer": headers.get("referer"),
            "user_agent": headers.get("user-agent"),
        }
        import json  # here: only this format needs it

        return json.dumps(record, separators=(",", ":"))

    def _custom_line(self, request: Any, status: int, sent: int, request_time: float) -> str:
        return self._custom % _Atoms(request, status, sent, request_time, self._clock)

    def flush(self) -> None:
        self._writer.flush()

    def reopen(self) -> None:
        self._writer.reopen()

    def close(self) -> None:
        self._writer.close()


class _LogWriter:
    """Access lines as INFO records of a logger: gunicorn's gunicorn.access, to
    the handlers a logging configuration gave it."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def write(self, line: str) -> None:
        self._logger.info("%s", line[:-1])  # without its newline: the handler ends records

    def flush(self) -> None:
        pass

    def reopen(self) -> None:
        pass  # reopen() reopens the handlers' files

    def close(self) -> None:
        pass


class _Writer:
    """Buffered, thread-safe appends to a file ("-": standard output)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._lines: List[str] = []
        self._size = 0
        self._fd = -1
        self._pid = -1  # the process whose flusher thread runs; checked after fork
        self._closed = False

    def _open(self) -> int:
        if self._path == "-":
            return sys.stdout.fileno()
        return os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _start(self) -> None:
        # First line in this process (a fresh worker): own fd state, own flusher.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._lines = []
        self._size = 0
        if self._fd < 0:
            self._fd = self._open()
        thread = threading.Thread(target=self._flush_loop, args=(self._pid,),
                                  name="forker-access-log", daemon=True)
        thread.start()

    def write(self, line: str) -> None:
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            full = self._size >= FLUSH_BYTES
        if full:
            self.flush()

    def _flush_loop(self, pid: int) -> None:
        while not self._closed and self._pid == pid:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._lines:
                return
            data = "".join(self._lines).encode("utf-8", "backslashreplace")
            self._lines = []
            self._size = 0
            fd = self._fd
            if fd < 0:
                return
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError as exc:
                log.error("cannot write the access log %s: %s", self._path, exc)

    def reopen(self) -> None:
        if self._path == "-":
            return
        self.flush()
        with self._lock:
            old, self._fd = self._fd, self._open()
            if old >= 0:
                os.close(old)

    def close(self) -> None:
        self.flush()
        self._closed = True
        with self._lock:
            if self._fd >= 0 and self._path != "-":
                os.close(self._fd)
            self._fd = -1
