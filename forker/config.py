"""One validated configuration object, filled alike by `serve(...)` keywords,
the command line and FORKER_* environment variables.

Each option is a row of OPTIONS: its name, default, converter (which validates
and raises ConfigError naming the option), command-line flag and help text. The
command line (forker/cli.py) is generated from this table, so adding a row here
is all it takes to add an option everywhere."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .errors import ConfigError

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple
else:
    from ._namedtuple import NamedTuple


def _int_range(lo: Optional[int] = None, hi: Optional[int] = None) -> Callable[[str, Any], int]:
    def convert(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if lo is not None and number < lo:
            raise ConfigError(f"{name}: must be at least {lo}, got {number}")
        if hi is not None and number > hi:
            raise ConfigError(f"{name}: must be at most {hi}, got {number}")
        return number

    return convert


def _limit(lo: int, hi: int) -> Callable[[str, Any], int]:
    """_int_range(lo, hi), and 0 for hi (gunicorn's 0: unlimited)."""
    within = _int_range(lo, hi)

    def convert(name: str, value: Any) -> int:
        if value in (0, "0") and not isinstance(value, bool):
            return hi
        return within(name, value)

    return convert


def _optional(convert: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """convert, letting None (the option's default) through."""
    def optional(name: str, value: Any) -> Any:
        return None if value is None else convert(name, value)

    return optional


def _float_range(lo: float = 0.0, hi: Optional[float] = None) -> Callable[[str, Any], float]:
    def convert(name: str, value: Any) -> float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number of seconds, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
        if number != number or number < lo or (hi is not None and number > hi):
            allowed = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(f"{name}: must be {allowed}, got {value!r}")
        return number

    return convert


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _str_or_none(name: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        text = os.fsdecode(value)
        if "\0" not in text:
            return text
    raise ConfigError(f"{name}: expected a string without NUL characters, got {value!r}")


def _control_characters(text: str) -> List[str]:
    return [ch for ch in text if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0]


def _field_value(name: str, value: Any) -> Optional[str]:
    """A response field value the worker loop writes as is (server_header): text
    encodable as Latin-1, without control characters (CR and LF would end the
    field and start another), nor spaces at either end. Empty: no field."""
    text = _str_or_none(name, value)
    if not text:
        return text
    bad = [ch for ch in _control_characters(text) if ch != "\t"]
    if bad:
        raise ConfigError(f"{name}: control character {bad[0]!r} not allowed in a header "
                          f"value, got {text!r}")
    if any(ord(ch) > 0xFF for ch in text):
        raise ConfigError(f"{name}: only Latin-1 characters can be sent in a header, "
                          f"got {text!r}")
    if text != text.strip(" \t"):
        raise ConfigError(f"{name}: a header value cannot begin or end with spaces, got {text!r}")
    return text


def _request_path(name: str, value: Any) -> Optional[str]:
    """A path the worker loop compares with request targets byte for byte
    (health_path): '/' then printable ASCII, with no query or fragment;
    other characters are written percent-encoded, as clients send them."""
    text = _str_or_none(name, value)
    if not text:
        return None
    if not text.startswith("/"):
        raise ConfigError(f"{name}: expected a path starting with '/', got {text!r}")
    bad = [ch for ch in text if not "!" <= ch <= "~" or ch in "?#"]
    if bad:
        raise ConfigError(f"{name}: {bad[0]!r} cannot be part of the path (printable ASCII "
                          f"without '?' and '#'; percent-encode the rest), got {text!r}")
    return text


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def convert(name: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{name}: must be one of {', '.join(choices)}; got {value!r}")
        return str(value)

    return convert


def _event_loop(name: str, value: Any) -> str:
    kind: str = _choice("auto", "asyncio", "uvloop")(name, value)
    if kind == "uvloop":
        import importlib.util

        if importlib.util.find_spec("uvloop") is None:
            raise ConfigError(f"{name}: uvloop is not installed (pip install uvloop)")
    return kind


def _bind_list(name: str, value: Any) -> List[str]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")] if "," in value else [value]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise ConfigError(f"{name}: expected an address or a list of addresses, got {value!r}")
    if not items or not all(isinstance(item, str) and item and "\0" not in item for item in items):
        raise ConfigError(f"{name}: expected non-empty address strings, got {value!r}")
    from .sockets import parse_address  # late: sockets imports nothing heavy, but keep config first

    for item in items:
        parse_address(item, option=name)
    return items


def _metrics_bind(name: str, value: Any) -> Optional[str]:
    """None (off), or the TCP address of the master's /metrics."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value.startswith(("http://", "https://", "unix:", "fd://")):
        raise ConfigError(f"{name}: expected HOST:PORT such as 127.0.0.1:9100, got {value!r}")
    from .sockets import parse_address

    parse_address(value, option=name)
    return value


def _statsd_host(name: str, value: Any) -> Optional[str]:
    """None (off), or gunicorn's statsd address: HOST:PORT, HOST, [IPv6]:PORT,
    unix:PATH (forker.statsd.parse_address)."""
    if value is None or value == "":
        return None
    from .statsd import parse_address

    parse_address(value, option=name)
    return str(value).strip()


def _statsd_text(*refused: str) -> Callable[[str, Any], str]:
    """Text a statsd line carries as it is (statsd_prefix, dogstatsd_tags):
    ASCII without controls, spaces or '|', which would end or split the line,
    nor the characters in refused."""
    def convert(name: str, value: Any) -> str:
        text = _str_or_none(name, value) or ""
        bad = [ch for ch in text if not "!" <= ch <= "~" or ch == "|" or ch in refused]
        if bad:
            raise ConfigError(f"{name}: {bad[0]!r} cannot be sent in a statsd line, "
                              f"got {text!r}")
        return text

    return convert


def _ip_list(name: str, value: Any) -> List[str]:
    """"*" (trust every peer) or comma-separated IP addresses and CIDR networks."""
    import ipaddress

    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, Iterable):
        items = [str(part).strip() for part in value]
    else:
        raise ConfigError(f"{name}: expected '*' or comma-separated IPs/networks, got {value!r}")
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP address or network") from None
    return items


def _root_path(name: str, value: Any) -> str:
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ConfigError(f"{name}: expected a path starting with '/', got {value!r}")
    if _control_characters(value) or any(ord(ch) > 0xFF for ch in value):
        # compared with PATH_INFO, which holds Latin-1 characters (PEP 3333)
        raise ConfigError(f"{name}: expected a path of printable Latin-1 characters, "
                          f"got {value!r}")
    return value.rstrip("/")


def _access_log_format(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}: expected common, combined, json or a %(h)s-style format")
    if value not in ("common", "combined", "json"):
        from collections import defaultdict

        try:
            value % defaultdict(str)
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"{name}: bad format {value!r}: {exc}") from None
    return value


def _file_mode(name: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and value.strip():
        try:
            mode = int(value.strip(), 8)
        except ValueError:
            raise ConfigError(f"{name}: expected octal permission bits such as 660, got {value!r}") from None
    else:
        raise ConfigError(f"{name}: expected octal permission bits such as 660, got {value!r}")
    if not 0 <= mode <= 0o7777:
        raise ConfigError(f"{name}: permission bits must be within 0 and 7777 (octal), got {oct(mode)}")
    return mode


def _account(kind: str, lookup: Callable[[str], int]) -> Callable[[str, Any], Optional[int]]:
    """A converter of a user or group given by name or number, checked to exist
    and stored as its numeric id."""

    def convert(name: str, value: Any) -> Optional[int]:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.isdigit():
            number = int(value)
            if not 0 <= number < 0xFFFFFFFF:  # uid_t and gid_t; -1 means "unchanged"
                raise ConfigError(f"{name}: {kind[0]}id must be within 0 and {0xFFFFFFFF - 1}, "
                                  f"got {number}")
            return number
        if isinstance(value, str) and value:
            try:
                return lookup(value)
            except KeyError:
                raise ConfigError(f"{name}: no such {kind} {value!r}") from None
        raise ConfigError(f"{name}: expected a {kind} name or {kind[0]}id, got {value!r}")

    return convert


def _uid_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _gid_of(group: str) -> int:
    import grp

    return grp.getgrnam(group).gr_gid


_user = _account("user", _uid_of)
_group = _account("group", _gid_of)


def _owner(name: str, value: Any) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """'USER[:GROUP]' (names or ids) -> (uid, gid); gid -1 keeps the group."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or value.startswith(":"):
        raise ConfigError(f"{name}: expected USER[:GROUP], got {value!r}")
    user, _, group = value.partition(":")
    return (_user(name, user), _group(name, group) if group else -1)


def _hook(name: str, value: Any) -> Optional[Callable[..., Any]]:
    """A callable, or 'module:function' naming one."""
    if value is None or callable(value):
        given: Optional[Callable[..., Any]] = value
        return given
    if isinstance(value, str) and value.count(":") == 1:
        import importlib

        module_name, _, attr = value.partition(":")
        try:
            hook = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{name}: cannot load {value!r}: {exc}") from None
        if callable(hook):
            loaded: Callable[..., Any] = hook
            return loaded
    raise ConfigError(f"{name}: expected a callable or 'module:function', got {value!r}")


def _accepts(hook: Callable[..., Any], count: int) -> Optional[bool]:
    """Whether hook can be called with count positional arguments; None when its
    signature cannot be read (a builtin): it is then taken as it is."""
    import inspect  # only for a hook that is set: workers without hooks never import it

    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _hook_of(*parameters: str, legacy: bool = False) -> Callable[[str, Any], Any]:
    """A converter of a hook called with gunicorn's arguments, checked against its
    signature so that a wrong one is refused at start rather than in each worker.
    legacy: forker's former one-argument form hook(worker_id) is also accepted (it
    cannot be mistaken for gunicorn's two arguments) and called so."""

    def convert(name: str, value: Any) -> Optional[Callable[..., Any]]:
        hook = _hook(name, value)
        if hook is None or _accepts(hook, len(parameters)) is not False:
            return hook
        if legacy and _accepts(hook, 1):
            def called_with_worker_id(server: Any, worker: Any) -> Any:
                return hook(worker.id)

            called_with_worker_id.legacy = hook  # type: ignore[attr-defined]
            return called_with_worker_id
        raise ConfigError(f"{name}: the hook must take gunicorn's arguments, "
                          f"{name}({', '.join(parameters)}); {hook!r} cannot")

    return convert


def _cert_reqs(name: str, value: Any) -> str:
    """none, optional, required; also gunicorn's 0, 1, 2 (ssl.CERT_NONE, ...)."""
    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) \
            and value.strip().isdigit():
        number = int(value)
        if 0 <= number <= 2:
            return ("none", "optional", "required")[number]
    return _choice("none", "optional", "required")(name, value)


def _proxy_protocol(name: str, value: Any) -> bool:
    """true/false; also gunicorn's off, v1, v2, auto (forker tells v1 from v2 itself)."""
    if isinstance(value, str) and value.strip().lower() in ("v1", "v2", "auto"):
        return True
    if isinstance(value, str) and value.strip().lower() == "off":
        return False
    return _bool(name, value)


def _str_list(name: str, value: Any) -> List[str]:
    """Paths: a list, or one string with commas between them."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Iterable) and all(isinstance(item, (str, os.PathLike)) for item in value):
        return [os.fspath(item) for item in value]
    raise ConfigError(f"{name}: expected a list of paths, got {value!r}")


def _ssl_context(name: str, value: Any) -> Any:
    """None, an ssl.SSLContext, or a function returning one (checked by forker.tls)."""
    if value is None or callable(value):
        return value
    import ssl

    if isinstance(value, ssl.SSLContext):
        return value
    raise ConfigError(f"{name}: expected an ssl.SSLContext or a function returning one, "
                      f"got {value!r}")


CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS"


def _ciphers(name: str, value: Any) -> str:
    """An OpenSSL cipher list, printable ASCII; None (gunicorn's default) is
    forker's list."""
    text = _str_or_none(name, value)
    if text is None:
        return CIPHERS
    if not all(" " <= ch <= "~" for ch in text):
        raise ConfigError(f"{name}: expected an OpenSSL cipher list (printable ASCII), "
                          f"got {text!r}")
    return text


def _default_workers() -> int:
    return os.cpu_count() or 1


class Option(NamedTuple):  # not a dataclass: dataclasses imports inspect and ast (~1 MB)
    name: str
    default: Any  # a value, or a zero-argument callable computing it
    convert: Callable[[str, Any], Any]
    help: str
    flag: Optional[str] = None  # command-line flag; None for API-only options
    metavar: Optional[str] = None
    repeatable: bool = False  # flag may be given several times (accumulates a list)
    switch: bool = False  # --flag/--no-flag although the default is None (decided later)
    # The field of the C core's fk_loop_config (csrc/fk_loop.h) that this
    # option's value fills, converted by that field's kind (seconds become
    # milliseconds, text Latin-1 bytes): docs/ARCHITECTURE.md, "Adding an option".
    c_field: Optional[str] = None

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


MiB = 1024 * 1024

OPTIONS: List[Option] = [
    Option("bind", ["127.0.0.1:8080"], _bind_list,
           "Address to listen on: HOST:PORT, :PORT or 0.0.0.0:PORT (all interfaces), "
           "[IPv6]:PORT or unix:PATH. The default serves this host only.",
           "--bind", "ADDRESS", repeatable=True),
    Option("workers", _default_workers, _int_range(1, 1024),
           "Number of worker processes (default: one per CPU core).", "--workers", "N"),
    Option("backlog", 2048, _int_range(1, 65535),
           "Length of the kernel's queue of connections not yet accepted.", "--backlog", "N"),
    Option("keepalive", 5.0, _float_range(0.0, 3600.0),
           "Seconds an idle keep-alive connection is kept open (0 disables keep-alive).",
           "--keep-alive", "SECONDS", c_field="keepalive_ms"),
    Option("graceful_timeout", 30.0, _float_range(0.0, 86400.0),
           "Seconds workers get to finish in-flight requests on a graceful stop.",
           "--graceful-timeout", "SECONDS", c_field="graceful_ms"),
    Option("header_timeout", 10.0, _float_range(0.1, 3600.0),
           "Seconds a client has to send a complete request head.", "--header-timeout", "SECONDS",
           c_field="header_timeout_ms"),
    Option("request_timeout", 60.0, _float_range(0.0, 86400.0),
           "Seconds a client has to send a whole request, head and body (0: no limit).",
           "--request-timeout", "SECONDS", c_field="request_timeout_ms"),
    Option("write_timeout", 60.0, _float_range(0.1, 86400.0),
           "Seconds a client may stall reading a response before it is closed.",
           "--write-timeout", "SECONDS", c_field="write_timeout_ms"),
    Option("max_connections_per_address", 0, _int_range(0, 1 << 20),
           "Most connections one client address may hold open per worker (0: no cap); "
           "more are closed at once. Not applied with --proxy-protocol, where every "
           "peer is the balancer.", "--max-connections-per-address", "N",
           c_field="max_per_addr"),
    Option("max_output_buffer", 256 * MiB, _int_range(0, 1 << 50),
           "Bytes of responses a worker may hold for clients that read slowly (0: no "
           "bound); beyond, the connections holding most are closed.",
           "--max-output-buffer", "BYTES", c_field="max_output"),
    Option("max_input_buffer", 256 * MiB, _int_range(0, 1 << 50),
           "Bytes of request bodies a worker may hold while receiving them whole (0: no "
           "bound; max-body-size bounds each); beyond, the connection holding most is "
           "answered 503 and closed.", "--max-input-buffer", "BYTES", c_field="max_input"),
    Option("min_request_rate", 500, _int_range(0, 1 << 40),
           "Bytes per second a request body must keep up on average once its first "
           "header_timeout has passed (0: no minimum); a client trickling its body "
           "is answered 408 and closed.", "--min-request-rate", "BYTES", c_field="min_rate"),
    Option("limit_request_line", 8190, _limit(64, 1 << 20),
           "Longest request line in bytes (414 beyond; 0: the most, 1 MiB).",
           "--limit-request-line", "BYTES", c_field="max_request_line"),
    Option("limit_request_field_size", 8190, _limit(64, 1 << 20),
           "Longest header field line in bytes (431 beyond; 0: the most, 1 MiB).",
           "--limit-request-field-size", "BYTES", c_field="max_field_size"),
    Option("limit_request_fields", 100, _limit(1, 32768),
           "Most header fields in a request (431 beyond; 0: the most, 32768).",
           "--limit-request-fields", "N", c_field="max_fields"),
    Option("max_body_size", 100 * MiB, _int_range(0, 1 << 62),
           "Largest request body in bytes (413 beyond; 0 means unlimited).", "--max-body-size", "BYTES",
           c_field="max_body_size"),
    Option("body_buffer_size", None, _optional(_int_range(0, 1 << 62)),
           "Request bodies up to this many bytes are received whole before the application "
           "is called; a larger one is read from the client as the application reads it "
           "(wsgi.input, request.stream, ASGI's receive). Default: 64 KiB with --threads above 1 "
           "and for ASGI applications; with "
           "--threads 1, every body is received whole (up to --max-body-size), so that a slow "
           "client never holds the worker's only thread; set it to stream there too, as "
           "gunicorn's sync worker does (0: every body whole).",
           "--body-buffer-size", "BYTES", c_field="body_buffer_size"),
    Option("max_connections", 1000, _int_range(1, 1 << 20),
           "Most open connections per worker; at the limit a new connection takes the slot "
           "of the one that made least progress (idle, or slowest to send its request).",
           "--max-connections", "N", c_field="max_connections"),
    Option("server_header", "forker", _field_value,
           "Value of the Server response header (empty string: no Server header).",
           "--server-header", "TEXT", c_field="server"),
    Option("health_path", None, _request_path,
           "Path answered by the worker loop itself, without calling the application: "
           "200 while serving, 503 once a graceful stop began (e.g. /healthz).",
           "--health-path", "PATH", c_field="health_path"),
    Option("metrics_bind", None, _metrics_bind,
           "HOST:PORT where the master serves the workers' counters at /metrics in the "
           "Prometheus text format (default: off).",
           "--metrics-bind", "ADDRESS"),
    Option("statsd_host", None, _statsd_host,
           "Send gunicorn's statsd metrics (gunicorn.requests, gunicorn.request.duration, "
           "gunicorn.request.status.CODE, gunicorn.workers, gunicorn.log.LEVEL) to HOST:PORT "
           "over UDP (HOST alone: port 8125) or to unix:PATH, from the master, every second "
           "(default: off).", "--statsd-host", "ADDRESS"),
    Option("statsd_prefix", "", _statsd_text(":"),
           "Prefix of the statsd metrics' names (a dot is added when it does not end with "
           "one).", "--statsd-prefix", "PREFIX"),
    Option("dogstatsd_tags", "", _statsd_text(),
           "DogStatsD tags added to each statsd metric, comma-separated "
           "(env:prod,service:web).", "--dogstatsd-tags", "TAGS"),
    Option("enable_backlog_metric", False, _bool,
           "With --statsd-host, also send the connections waiting in the listening sockets' "
           "accept queues each second (gunicorn.backlog, a histogram).",
           "--enable-backlog-metric"),
    Option("log_level", "info", _choice("debug", "info", "warning", "error", "critical"),
           "Level of the error log.", "--log-level", "LEVEL"),
    Option("interface", "auto", _choice("auto", "native", "wsgi", "asgi"),
           "How to call the application: native (handler(request)), wsgi (PEP 3333: "
           "app(environ, start_response)), asgi (ASGI 3: await app(scope, receive, send), "
           "on an asyncio event loop), or auto: asgi when the application takes three "
           "arguments, wsgi when it takes two, native when it takes one.",
           "--interface", "{auto,native,wsgi,asgi}"),
    Option("loop", "auto", _event_loop,
           "Event loop of an ASGI application's workers: uvloop, asyncio (the standard "
           "library's), or auto: uvloop when it is installed.",
           "--loop", "{auto,asyncio,uvloop}"),
    Option("lifespan", "auto", _choice("auto", "on", "off"),
           "ASGI lifespan protocol, run in each worker before it serves: on (a failed "
           "startup, or an application without lifespan support, is a boot error), auto "
           "(the same, but an application that raises on the lifespan scope is served "
           "without it), off.",
           "--lifespan", "{auto,on,off}"),
    Option("ws", "auto", _choice("auto", "none"),
           "Websockets of an ASGI application: auto (an upgrade to a websocket becomes a "
           "websocket scope) or none (it is answered 501 without calling the application).",
           "--ws", "{auto,none}"),
    Option("ws_max_size", 16 * MiB, _int_range(1, 1 << 40),
           "Largest websocket message a client may send, reassembled from its frames; a "
           "larger one closes the websocket with 1009.",
           "--ws-max-size", "BYTES", c_field="ws_max_size"),
    Option("ws_per_message_deflate", True, _bool,
           "Accept a websocket client's offer of permessage-deflate compression (RFC 7692), "
           "with windows of at most 4 KiB (12 bits) for the server's messages and, when the "
           "client allows it, for the client's.",
           "--ws-per-message-deflate"),
    Option("ws_ping_interval", 20.0, _float_range(0.0, 86400.0),
           "Seconds after which a quiet websocket is pinged (0: never).",
           "--ws-ping-interval", "SECONDS", c_field="ws_ping_interval_ms"),
    Option("ws_ping_timeout", 20.0, _float_range(0.001, 86400.0),
           "Seconds a websocket client has to answer the server's ping before the "
           "websocket is closed (1011).",
           "--ws-ping-timeout", "SECONDS", c_field="ws_ping_timeout_ms"),
    Option("threads", 1, _int_range(1, 1024),
           "Handler threads per worker (1: handlers run on the worker's loop thread).",
           "--threads", "N"),
    Option("access_log", None, _str_or_none,
           "Write an access log line per request to FILE ('-': standard output). Off by default.",
           "--access-log", "FILE"),
    Option("access_log_format", "combined", _access_log_format,
           "Access log format: common, combined, json, or a custom format of %(h)s-style atoms "
           "(%(Q)s: queue time in microseconds).",
           "--access-log-format", "FORMAT"),
    Option("error_log", "-", _str_or_none,
           "Write the error log to FILE ('-': standard error).", "--error-log", "FILE"),
    Option("forwarded_allow_ips", ["127.0.0.1", "::1"], _ip_list,
           "Peers trusted to set X-Forwarded-For/-Proto/-Host and Forwarded: comma-separated "
           "IPs or networks, or '*' for all (then the client is the address the peer saw, "
           "the last in X-Forwarded-For).", "--forwarded-allow-ips", "IPS"),
    Option("forwarded_host", False, _bool,
           "Also take the host and port (HTTP_HOST, SERVER_NAME, SERVER_PORT) from the "
           "X-Forwarded-Host or Forwarded host= of peers in forwarded_allow_ips. Off by "
           "default, as in gunicorn and uvicorn: the client address and the scheme are "
           "taken from them either way.", "--forwarded-host"),
    Option("proxy_protocol", False, _proxy_protocol,
           "Every connection opens with a PROXY protocol header, v1 or v2 (detected), as "
           "HAProxy's send-proxy/send-proxy-v2 and nginx's proxy_protocol send it; the client "
           "address it carries becomes the peer's: REMOTE_ADDR, remote_addr, the access log "
           "and forwarded-header trust. Only peers in forwarded_allow_ips (and unix-socket "
           "peers) may send it: others, and connections without a valid header, are closed "
           "without a response. On TLS listeners the header precedes the handshake.",
           "--proxy-protocol", c_field="proxy_protocol"),
    Option("root_path", "", _root_path,
           "Path prefix the application is mounted under (WSGI SCRIPT_NAME).",
           "--root-path", "PATH"),
    Option("chdir", None, _str_or_none,
           "Change to DIR before loading the application (also put on sys.path).",
           "--chdir", "DIR"),
    Option("reload", False, _bool,
           "For development: restart the workers when a source file of the application "
           "(any Python module they imported) or a --reload-extra-file changes.", "--reload"),
    Option("reload_extra_files", [], _str_list,
           "With --reload, also watch FILE (a template, a settings file).",
           "--reload-extra-file", "FILE", repeatable=True),
    Option("timeout", 30.0, _float_range(0.0, 86400.0),
           "Seconds a worker may go without a heartbeat (a handler running that long) "
           "before the master kills and replaces it (0: never).", "--timeout", "SECONDS"),
    Option("max_requests", 0, _int_range(0, 1 << 62),
           "Requests a worker serves before it is recycled gracefully (0: never).",
           "--max-requests", "N"),
    Option("max_requests_jitter", 0, _int_range(0, 1 << 62),
           "Up to this many requests added at random to max_requests per worker, so that "
           "workers do not recycle together.", "--max-requests-jitter", "N"),
    Option("max_worker_memory", 0, _int_range(0, 1 << 40),
           "Resident memory in MiB past which the master recycles a worker gracefully (0: no limit).",
           "--max-worker-memory", "MIB"),
    Option("reuse_port", False, _bool,
           "One SO_REUSEPORT listening socket per worker instead of one shared by all.",
           "--reuse-port"),
    Option("cpu_affinity", None, _optional(_bool),
           "Pin worker i to CPU i mod N; with reuse_port, also steer each connection to the "
           "worker on the CPU that received it. Default: pin (without steering) when there "
           "are at least as many workers as usable CPUs.", "--cpu-affinity", switch=True),
    Option("preload", False, _bool,
           "Import the application in the master before forking the workers.", "--preload"),
    Option("pidfile", None, _str_or_none, "File to write the master's process id to.",
           "--pid", "FILE"),
    Option("user", None, _user, "Workers switch to this user (name or uid) after binding.",
           "--user", "USER"),
    Option("group", None, _group, "Workers switch to this group (name or gid) after binding.",
           "--group", "GROUP"),
    Option("unix_socket_mode", None, _file_mode,
           "Permission bits of unix listening sockets, in octal (e.g. 660).",
           "--unix-socket-mode", "MODE"),
    Option("unix_socket_owner", None, _owner, "Owner of unix listening sockets, USER[:GROUP].",
           "--unix-socket-owner", "USER[:GROUP]"),
    Option("proc_name", None, _str_or_none,
           "Name shown in process titles, 'forker: master [NAME]' (default: the application).",
           "--name", "NAME"),
    # gunicorn's server hooks, with its names and arguments (forker/hooks.py).
    Option("on_starting", None, _hook_of("server"),
           "Hook on_starting(server), called in the master before it binds."),
    Option("on_reload", None, _hook_of("server"),
           "Hook on_reload(server), called in the master on HUP, with the new configuration."),
    Option("when_ready", None, _hook_of("server"),
           "Hook when_ready(server), called in the master once it listens, before the "
           "workers start."),
    Option("pre_fork", None, _hook_of("server", "worker"),
           "Hook pre_fork(server, worker), called in the master before each worker is forked."),
    Option("post_fork", None, _hook_of("server", "worker", legacy=True),
           "Hook post_fork(server, worker), called in each worker right after fork "
           "(forker's earlier post_fork(worker_id), one argument, is still called so)."),
    Option("post_worker_init", None, _hook_of("worker"),
           "Hook post_worker_init(worker), called in each worker once it has loaded the "
           "application, before it serves."),
    Option("worker_int", None, _hook_of("worker"),
           "Hook worker_int(worker), called in a worker when it gets INT or QUIT."),
    Option("worker_abort", None, _hook_of("worker"),
           "Hook worker_abort(worker), called in a worker that ran past timeout, before the "
           "master kills it (the master sends it SIGABRT)."),
    Option("pre_exec", None, _hook_of("server"),
           "Hook pre_exec(server), called in the new master of an upgrade (USR2) before exec."),
    Option("pre_request", None, _hook_of("worker", "req"),
           "Hook pre_request(worker, req), called in the worker before the application, "
           "with req.method, req.path, req.query, req.headers."),
    Option("post_request", None, _hook_of("worker", "req", "environ", "resp"),
           "Hook post_request(worker, req, environ, resp), called in the worker once the "
           "application's response is complete; resp.status is its status line."),
    Option("child_exit", None, _hook_of("server", "worker"),
           "Hook child_exit(server, worker), called in the master when a worker has exited."),
    Option("worker_exit", None, _hook_of("server", "worker"),
           "Hook worker_exit(server, worker), called in a worker that is exiting."),
    Option("nworkers_changed", None, _hook_of("server", "new_value", "old_value"),
           "Hook nworkers_changed(server, new_value, old_value), called in the master when "
           "the number of workers changes (old_value None the first time)."),
    Option("on_exit", None, _hook_of("server"),
           "Hook on_exit(server), called in the master just before it exits."),
    Option("certfile", None, _str_or_none,
           "PEM file of the TLS certificate (then its chain). Listeners without an http:// or "
           "https:// prefix serve HTTPS when it is set.", "--certfile", "FILE"),
    Option("keyfile", None, _str_or_none,
           "PEM file of the certificate's private key (unencrypted; default: in certfile).",
           "--keyfile", "FILE"),
    Option("ca_certs", None, _str_or_none,
           "PEM file of the CAs that client certificates must chain to (mTLS).",
           "--ca-certs", "FILE"),
    Option("cert_reqs", "none", _cert_reqs,
           "Client certificates: none (not asked for), optional (verified when sent) or "
           "required (the handshake fails without a valid one; also gunicorn's 0, 1, 2); "
           "needs ca_certs.",
           "--cert-reqs", "{none,optional,required}"),
    Option("ciphers", CIPHERS, _ciphers,
           "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults).",
           "--ciphers", "LIST"),
    Option("ssl_context", None, _ssl_context,
           "An ssl.SSLContext to serve TLS with instead of certfile and its options, or a "
           "function returning one, called in each worker (so that HUP reloads it)."),
]

OPTIONS_BY_NAME: Dict[str, Option] = {option.name: option for option in OPTIONS}
# gunicorn's names of options, readable from a Config (server.cfg.preload_app in a hook)
GUNICORN_ALIASES = {"accesslog": "access_log", "errorlog": "error_log", "loglevel": "log_level",
                    "preload_app": "preload", "worker_connections": "max_connections"}
ENV_PREFIX = "FORKER_"


class Config:
    """Every option, validated. Attribute access by option name: `config.workers`."""

    def __init__(self, **values: Any) -> None:
        self._values: Dict[str, Any] = {}
        for option in OPTIONS:
            self._values[option.name] = option.convert(option.name, option.default_value())
        self.update(values)

    def update(self, values: Mapping[str, Any]) -> "Config":
        for name, value in values.items():
            option = OPTIONS_BY_NAME.get(name)
            if option is None:
                raise ConfigError(f"{name}: unknown option")
            self._values[name] = option.convert(name, value)
        return self

    def update_from_env(self, environ: Optional[Mapping[str, str]] = None) -> "Config":
        """Apply FORKER_<NAME> environment variables (FORKER_WORKERS=4, ...)."""
        environ = os.environ if environ is None else environ
        values = {}
        for option in OPTIONS:
            raw = environ.get(ENV_PREFIX + option.name.upper())
            if raw is not None:
                values[option.name] = raw
        return self.update(values)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__["_values"]
        try:
            return values[name]
        except KeyError:
            if name in GUNICORN_ALIASES:
                return values[GUNICORN_ALIASES[name]]
            raise AttributeError(name) from None

    def as_dict(self) -> Dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"
