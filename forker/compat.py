"""gunicorn's settings, each mapped to forker's equivalent, or refused or warned
about by name: what lets a `gunicorn.conf.py` and a gunicorn command line run
under forker unchanged.

SETTINGS has a row for every setting gunicorn documents (tests/test_compat.py
walks gunicorn.config.KNOWN_SETTINGS to keep it so): its command-line flags,
how the flag takes its value, and what forker does with it:

- the name of the forker option it sets (the value goes through that option's
  converter, which accepts gunicorn's spellings);
- a function of the value returning forker options and command-line extras
  (EXTRAS: what the command line does itself, such as daemon or raw_env);
- None: forker has no such thing. A value that asks nothing of the server
  (gunicorn's default, or an option that is off) passes in silence; any other
  is warned about, or refused (exit status 2) when serving without it would do
  something else than the user asked.
"""

from __future__ import annotations

import os

from .errors import ConfigError

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

# What the command line does itself rather than the master (forker/cli.py).
EXTRAS = ("config", "wsgi_app", "daemon", "raw_env", "pythonpath",
          "enable_stdio_inheritance", "capture_output", "check_config", "print_config",
          "logconfig", "logconfig_dict", "logconfig_json", "paste", "raw_paste_global_conf",
          "worker_class")

_NOTHING = object()


class Setting:
    """One gunicorn setting. kind: how its flag takes a value, "value", "append",
    "switch" (store_true), "off" (store_const False) or "optional" (nargs="?")."""

    __slots__ = ("flags", "kind", "to", "why", "neutral", "refuse")

    def __init__(self, flags: Tuple[str, ...] = (), kind: str = "value",
                 to: Any = None, why: str = "", neutral: Any = _NOTHING,
                 refuse: bool = False) -> None:
        self.flags = flags
        self.kind = kind
        self.to = to
        self.why = why
        self.neutral = neutral  # values that ask nothing of a server forker lacks
        self.refuse = refuse

    def asks_nothing(self, value: Any) -> bool:
        neutral = (None, False, "", [], (), {}) if self.neutral is _NOTHING else self.neutral
        if callable(value) and str(getattr(value, "__module__", "")).startswith("gunicorn."):
            return True  # gunicorn's own default hook, which does nothing
        try:
            return value in neutral
        except TypeError:
            return False


# -- converters of gunicorn values into forker options ---------------------------

_SYNC = ("sync", "gthread", "gunicorn.workers.sync.SyncWorker",
         "gunicorn.workers.gthread.ThreadWorker", "egg:gunicorn#sync", "egg:gunicorn#gthread")


# gunicorn's own ASGI worker, and uvicorn's worker classes for gunicorn (in uvicorn
# until 0.30, then in the uvicorn-worker package)
_ASGI = ("asgi", "egg:gunicorn#asgi", "uvicorn.workers.UvicornWorker",
         "uvicorn.workers.UvicornH11Worker", "uvicorn_worker.UvicornWorker",
         "uvicorn_worker.UvicornH11Worker")


def check_worker_class(name: str, value: Any) -> Dict[str, Any]:
    """-k: sync and gthread are forker's workers (threads from --threads); an
    ASGI worker class (gunicorn's asgi, uvicorn's) is forker's ASGI interface,
    on the same workers; any other worker class is refused, saying what forker
    has instead."""
    text = value if isinstance(value, str) else getattr(value, "__module__", "") + "." + \
        getattr(value, "__qualname__", repr(value))
    if text in _SYNC or text.endswith((".SyncWorker", ".ThreadWorker")) and "gunicorn" in text:
        return {"worker_class": text}
    if text in _ASGI or text.endswith((".UvicornWorker", ".UvicornH11Worker", ".ASGIWorker")):
        return {"worker_class": text, "interface": "asgi"}
    if "uvicorn" in text.lower() or "asgi" in text.lower():
        what = ("an ASGI application needs no worker class: forker serves it on each "
                "worker's event loop (detected, or --interface asgi)")
    elif any(word in text.lower() for word in ("gevent", "eventlet", "tornado")):
        what = ("forker has no green-thread workers: each worker runs a C event loop, and "
                "--threads N runs handlers on N threads while the loop goes on serving")
    else:
        what = "forker's workers are its own"
    raise ConfigError(f"{name}: worker class {text!r} is not supported; sync and gthread are "
                      f"(the same worker, with --threads N). {what}")


def _initgroups(name: str, value: Any) -> Dict[str, Any]:
    return {}  # forker always gives workers the user's supplementary groups


_SCHEME_HEADERS = {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https",
                   "X-FORWARDED-SSL": "on"}  # gunicorn's default


def _secure_scheme_headers(name: str, value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a dict of header: value, got {value!r}")
    if value == _SCHEME_HEADERS:
        return {}  # what forker does by default (README: differences from gunicorn)
    other = {key: val for key, val in value.items()
             if not (str(key).upper() == "X-FORWARDED-PROTO" and str(val).lower() == "https")}
    if other:
        warn(f"{name}: forker takes the scheme from X-Forwarded-Proto and Forwarded "
             f"(proto=) only; {', '.join(f'{k}: {v}' for k, v in other.items())} is not read")
    return {}


def _umask(name: str, value: Any) -> Dict[str, Any]:
    """gunicorn applies its umask to the unix sockets it creates."""
    mask = umask_value(name, value)
    return {"unix_socket_mode": 0o777 & ~mask} if mask else {}


def _control_socket(name: str, value: Any) -> Dict[str, Any]:
    if value is None or str(value).endswith("gunicorn.ctl"):  # gunicorn's default place
        return {}
    warn(f"{name} = {value!r}: forker has no control socket (signals and `forker stats "
         f"--pid PIDFILE` do its work); ignored")
    return {}


def _ssl_context(name: str, value: Any) -> Dict[str, Any]:
    """gunicorn's ssl_context(config, default_ssl_context_factory) hook; forker's
    ssl_context is a context or a function of no arguments."""
    if value is None or not callable(value):
        return {"ssl_context": value}
    from .config import _accepts

    if _accepts(value, 2) and not _accepts(value, 0):
        return {"ssl_context": _GunicornSSLContext(value)}
    return {"ssl_context": value}


class _GunicornSSLContext:
    """Calls gunicorn's ssl_context(config, factory) in each worker, the factory
    making the context gunicorn's would: the certificate files loaded."""

    def __init__(self, hook: Callable[..., Any]) -> None:
        self.hook = hook
        self.config: Any = None

    def __call__(self) -> Any:
        import ssl

        config = self.config

        def default_ssl_context_factory() -> ssl.SSLContext:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            if config is not None and config.certfile:
                context.load_cert_chain(config.certfile, config.keyfile)
            return context

        return self.hook(config, default_ssl_context_factory)


_dirty = "forker has no dirty arbiters (gunicorn's pool of workers for long tasks)"
_h2 = "forker serves HTTP/1.1 only"
_asgi = ("forker never cancels an ASGI task whose client left: the task runs to its end "
         "and learns of the leaving from http.disconnect and send raising")
_strict = "forker parses requests strictly (RFC 9112) and relaxes nothing"
_syslog = ("forker does not log to syslog; the error log goes to --error-logfile, or "
           "anywhere with --log-config")


def _hook(name: str) -> Setting:
    return Setting(to=name)


SETTINGS: Dict[str, Setting] = {
    "config": Setting(("-c", "--config"), to=lambda name, value: {"config": value}),
    "wsgi_app": Setting(to=lambda name, value: {"wsgi_app": value}),
    "bind": Setting(("-b", "--bind"), "append", "bind"),
    "backlog": Setting(("--backlog",), to="backlog"),
    "workers": Setting(("-w", "--workers"), to="workers"),
    "worker_class": Setting(("-k", "--worker-class"), to=check_worker_class),
    "threads": Setting(("--threads",), to="threads"),
    "worker_connections": Setting(("--worker-connections",), to="max_connections"),
    "max_requests": Setting(("--max-requests",), to="max_requests"),
    "max_requests_jitter": Setting(("--max-requests-jitter",), to="max_requests_jitter"),
    "timeout": Setting(("-t", "--timeout"), to="timeout"),
    "graceful_timeout": Setting(("--graceful-timeout",), to="graceful_timeout"),
    "keepalive": Setting(("--keep-alive",), to="keepalive"),
    "limit_request_line": Setting(("--limit-request-line",), to="limit_request_line"),
    "limit_request_fields": Setting(("--limit-request-fields",), to="limit_request_fields"),
    "limit_request_field_size": Setting(("--limit-request-field_size",),
                                        to="limit_request_field_size"),
    "reload": Setting(("--reload",), "switch", "reload"),
    "reload_engine": Setting(("--reload-engine",), neutral=("auto", "poll", "inotify")),
    "reload_extra_files": Setting(("--reload-extra-file",), "append", "reload_extra_files"),
    "spew": Setting(("--spew",), "switch", why="forker has no line-by-line trace of the server"),
    "check_config": Setting(("--check-config",), "switch",
                            to=lambda name, value: {"check_config": value}),
    "print_config": Setting(("--print-config",), "switch",
                            to=lambda name, value: {"print_config": value}),
    "preload_app": Setting(("--preload",), "switch", "preload"),
    "sendfile": Setting(("--no-sendfile",), "off", neutral=(None, True),
                        why="forker always sends file bodies with sendfile(2) on plain HTTP"),
    "reuse_port": Setting(("--reuse-port",), "switch", "reuse_port"),
    "chdir": Setting(("--chdir",), to="chdir"),
    "daemon": Setting(("-D", "--daemon"), "switch", to=lambda name, value: {"daemon": value}),
    "raw_env": Setting(("-e", "--env"), "append", to=lambda name, value: {"raw_env": value}),
    "pidfile": Setting(("-p", "--pid"), to="pidfile"),
    "worker_tmp_dir": Setting(("--worker-tmp-dir",),
                              why="forker's workers beat in shared memory, not in a file"),
    "user": Setting(("-u", "--user"), to="user"),
    "group": Setting(("-g", "--group"), to="group"),
    "umask": Setting(("-m", "--umask"), to=lambda name, value: _umask(name, value)),
    "initgroups": Setting(("--initgroups",), "switch", _initgroups),
    "tmp_upload_dir": Setting(why="forker streams large bodies to the application instead "
                                  "of a temporary file (--body-buffer-size)"),
    "secure_scheme_headers": Setting(to=_secure_scheme_headers),
    "forwarded_allow_ips": Setting(("--forwarded-allow-ips",), to="forwarded_allow_ips"),
    "accesslog": Setting(("--access-logfile",), to="access_log"),
    "disable_redirect_access_to_syslog": Setting(("--disable-redirect-access-to-syslog",),
                                                 "switch", why=_syslog),
    "access_log_format": Setting(("--access-logformat",), to="access_log_format"),
    "errorlog": Setting(("--error-logfile", "--log-file"), to="error_log"),
    "loglevel": Setting(("--log-level",), to="log_level"),
    "capture_output": Setting(("--capture-output",), "switch",
                              to=lambda name, value: {"capture_output": value}),
    "logger_class": Setting(("--logger-class",), neutral=("gunicorn.glogging.Logger",),
                            why="forker logs through Python's logging: configure it with "
                                "--log-config or logconfig_dict"),
    "logconfig": Setting(("--log-config",), to=lambda name, value: {"logconfig": value}),
    "logconfig_dict": Setting(to=lambda name, value: {"logconfig_dict": value}),
    "logconfig_json": Setting(("--log-config-json",),
                              to=lambda name, value: {"logconfig_json": value}),
    "syslog_addr": Setting(("--log-syslog-to",), neutral=("udp://localhost:514",), why=_syslog),
    "syslog": Setting(("--log-syslog",), "switch", why=_syslog),
    "syslog_prefix": Setting(("--log-syslog-prefix",), why=_syslog),
    "syslog_facility": Setting(("--log-syslog-facility",), neutral=("user",), why=_syslog),
    "enable_stdio_inheritance": Setting(("-R", "--enable-stdio-inheritance"), "switch",
                                        to=lambda name, value: {"enable_stdio_inheritance": value}),
    "statsd_host": Setting(("--statsd-host",), to="statsd_host"),
    "dogstatsd_tags": Setting(("--dogstatsd-tags",), to="dogstatsd_tags"),
    "statsd_prefix": Setting(("--statsd-prefix",), to="statsd_prefix"),
    "enable_backlog_metric": Setting(("--enable-backlog-metric",), "switch",
                                     "enable_backlog_metric"),
    "proc_name": Setting(("-n", "--name"), to="proc_name"),
    "default_proc_name": Setting(neutral=("gunicorn",),
                                 why="forker's process titles are 'forker: master [NAME]'"),
    "pythonpath": Setting(("--pythonpath",), to=lambda name, value: {"pythonpath": value}),
    "paste": Setting(("--paste", "--paster"), to=lambda name, value: {"paste": value}),
    "proxy_protocol": Setting(("--proxy-protocol",), "optional", "proxy_protocol"),
    "proxy_allow_ips": Setting(("--proxy-allow-from",),
                               neutral=("127.0.0.1,::1", "127.0.0.1", ["127.0.0.1", "::1"]),
                               why="forker accepts PROXY headers from --forwarded-allow-ips"),
    "protocol": Setting(("--protocol",), neutral=("http",), refuse=True,
                        why="forker speaks HTTP/1.1 only, not uwsgi"),
    "uwsgi_allow_ips": Setting(("--uwsgi-allow-from",),
                               neutral=("127.0.0.1,::1", "127.0.0.1", ["127.0.0.1", "::1"]),
                               why="forker speaks HTTP/1.1 only, not uwsgi"),
    "keyfile": Setting(("--keyfile",), to="keyfile"),
    "certfile": Setting(("--certfile",), to="certfile"),
    "ssl_version": Setting(("--ssl-version",), neutral=(2, 16, 17, "TLS", "TLS_SERVER",
                                                        "TLSv1_2", "SSLv23"),
                           why="forker serves TLS 1.2 and 1.3; for other limits pass an "
                               "ssl_context"),
    "cert_reqs": Setting(("--cert-reqs",), to="cert_reqs"),
    "ca_certs": Setting(("--ca-certs",), to="ca_certs"),
    "suppress_ragged_eofs": Setting(("--suppress-ragged-eofs",), "switch", neutral=(True,),
                                    why="forker's TLS reads treat an EOF without "
                                        "close_notify as the end of the connection"),
    "do_handshake_on_connect": Setting(("--do-handshake-on-connect",), "switch",
                                       why="forker's loop does the handshake as data "
                                           "arrives, without blocking"),
    "ciphers": Setting(("--ciphers",), to="ciphers"),
    "http_protocols": Setting(("--http-protocols",), neutral=("h1",), why=_h2),
    "http2_cleartext": Setting(("--http2-cleartext",), neutral=("off", False), why=_h2),
    "http2_max_concurrent_streams": Setting(("--http2-max-concurrent-streams",),
                                            neutral=(100,), why=_h2),
    "http2_initial_window_size": Setting(("--http2-initial-window-size",),
                                         neutral=(65535,), why=_h2),
    "http2_max_frame_size": Setting(("--http2-max-frame-size",), neutral=(16384,), why=_h2),
    "http2_max_header_list_size": Setting(("--http2-max-header-list-size",),
                                          neutral=(65536,), why=_h2),
    "raw_paste_global_conf": Setting(("--paste-global",), "append",
                                     to=lambda name, value: {"raw_paste_global_conf": value}),
    "permit_obsolete_folding": Setting(("--permit-obsolete-folding",), "switch", why=_strict),
    "strip_header_spaces": Setting(("--strip-header-spaces",), "switch", why=_strict),
    "permit_unconventional_http_method": Setting(("--permit-unconventional-http-method",),
                                                 "switch", why=_strict),
    "permit_unconventional_http_version": Setting(("--permit-unconventional-http-version",),
                                                  "switch", why=_strict),
    "casefold_http_method": Setting(("--casefold-http-method",), "switch", why=_strict),
    "forwarder_headers": Setting(("--forwarder-headers",),
                                 neutral=("SCRIPT_NAME,PATH_INFO", ["SCRIPT_NAME", "PATH_INFO"]),
                                 why="forker drops every header field whose name has an "
                                     "underscore, from any peer"),
    "header_map": Setting(("--header-map",), neutral=("drop",),
                          why="forker drops every header field whose name has an underscore"),
    "asgi_loop": Setting(("--asgi-loop",), to="loop"),
    "asgi_lifespan": Setting(("--asgi-lifespan",), to="lifespan"),
    "asgi_disconnect_grace_period": Setting(("--asgi-disconnect-grace-period",),
                                            neutral=(3,), why=_asgi),
    "websocket_max_message_size": Setting(("--websocket-max-message-size",),
                                          to="ws_max_size"),
    "http_parser": Setting(("--http-parser",), neutral=("auto",),
                           why="forker has one request parser, in C"),
    "root_path": Setting(("--root-path",), to="root_path"),
    "dirty_apps": Setting(("--dirty-app",), "append", refuse=True, why=_dirty),
    "dirty_workers": Setting(("--dirty-workers",), refuse=True, why=_dirty),
    "dirty_timeout": Setting(("--dirty-timeout",), neutral=(300,), why=_dirty),
    "dirty_threads": Setting(("--dirty-threads",), neutral=(1,), why=_dirty),
    "dirty_graceful_timeout": Setting(("--dirty-graceful-timeout",), neutral=(30,), why=_dirty),
    "on_dirty_starting": Setting(why=_dirty),
    "dirty_post_fork": Setting(why=_dirty),
    "dirty_worker_init": Setting(why=_dirty),
    "dirty_worker_exit": Setting(why=_dirty),
    "control_socket": Setting(("--control-socket",), to=lambda name, value: _control_socket(
        name, value)),
    "control_socket_mode": Setting(("--control-socket-mode",), neutral=(0o600,),
                                   why="forker has no control socket"),
    "control_socket_disable": Setting(("--no-control-socket",), "switch", neutral=(True, False),
                                      why="forker has no control socket"),
    "ssl_context": Setting(to=_ssl_context),
}
for _name in ("on_starting", "on_reload", "when_ready", "pre_fork", "post_fork",
              "post_worker_init", "worker_int", "worker_abort", "pre_exec", "pre_request",
              "post_request", "child_exit", "worker_exit", "nworkers_changed", "on_exit"):
    SETTINGS[_name] = _hook(_name)

_warnings: List[str] = []


def warn(message: str) -> None:
    _warnings.append(message)


def take_warnings() -> List[str]:
    """The warnings so far (to be logged once logging is set up), emptied."""
    taken = list(_warnings)
    del _warnings[:]
    return taken


def translate(name: str, value: Any, where: str) -> Dict[str, Any]:
    """A gunicorn setting -> forker options and EXTRAS; warns or raises
    ConfigError (prefixed with where) for what forker lacks."""
    setting = SETTINGS[name]
    to = setting.to
    try:
        if isinstance(to, str):
            return {to: value}
        if to is not None:
            result: Dict[str, Any] = to(name, value)
            return result
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    if setting.asks_nothing(value):
        return {}
    message = f"{where}{name} = {value!r}: {setting.why}"
    if setting.refuse:
        raise ConfigError(message)
    warn(message + "; ignored")
    return {}


def gunicorn_flag(name: str) -> str:
    """How a message names a setting given on the command line."""
    flags = SETTINGS[name].flags
    return flags[-1] if flags else name


def env_pairs(name: str, value: Any) -> List[Tuple[str, str]]:
    """raw_env / -e: ["KEY=VALUE", ...] -> pairs."""
    items = [value] if isinstance(value, str) else list(value or ())
    pairs = []
    for item in items:
        key, sep, val = str(item).partition("=")
        if not sep or not key:
            raise ConfigError(f"{name}: expected KEY=VALUE, got {item!r}")
        pairs.append((key, val))
    return pairs


def umask_value(name: str, value: Any) -> int:
    """gunicorn's umask: an int, or a string in any base Python reads ("0o22", "022")."""
    if isinstance(value, int) and not isinstance(value, bool):
        mask = value
    else:
        text = str(value).strip()
        try:
            mask = int(text, 8) if text.startswith("0") and text[1:].isdigit() else int(text, 0)
        except ValueError:
            raise ConfigError(f"{name}: expected a umask such as 0o22, got {value!r}") from None
    if not 0 <= mask <= 0o777:
        raise ConfigError(f"{name}: a umask is within 0 and 0o777, got {value!r}")
    return mask


def pythonpath_dirs(value: Any) -> List[str]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return [os.path.abspath(item.strip()) for item in items if str(item).strip()]
