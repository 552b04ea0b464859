"""WSGI (PEP 3333) on top of forker's native handler API.

    handler = WSGIHandler(app, config)
    handler(request) -> forker.Response

Everything that does not change between requests (the constant part of the
environ, trusted proxy networks, header-name translations, parsed status
lines) is computed once per handler; a request costs one dict copy, one pass
over its header fields and the application call.

The response body handed to the engine is bytes when the application's
iterable is a list (or finished at its first chunk), so it goes out with a
Content-Length in one write; otherwise it is a wrapper that streams the
iterable and delegates close(). A FileWrapper from wsgi.file_wrapper is passed
through untouched so the engine can recognise it and send the file itself.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from http import HTTPStatus
from io import BytesIO
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union
from urllib.parse import unquote_to_bytes

from ._version import __version__
from .config import Config
from .logs import ErrorStream
from .response import Response

log = logging.getLogger("forker.wsgi")

# RFC 7230 6.1 and RFC 2616 13.5.1: meaningful for one connection only, so a
# WSGI application must not set them (PEP 3333, "Other HTTP Features").
HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
))

_token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# No CR, LF or NUL (header injection), and latin-1 only (PEP 3333 "native strings").
_bad_value = re.compile(r"[\r\n\x00]|[^\x00-\xff]").search
_status_line = re.compile(r"([1-9][0-9][0-9])(?: ([^\r\n\x00]*))?\Z").match

_REASONS = {status.value: status.phrase for status in HTTPStatus}
_CACHE_LIMIT = 1024  # bound on each per-handler cache filled from client or app input

ERROR_BODY = b"Internal Server Error\n"


class WSGIError(Exception):
    """The application broke a PEP 3333 rule the server has to enforce."""


class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in blocks.

    The engine may recognise this type (`type(body) is FileWrapper`) and send
    `filelike` with sendfile(2) from its current offset when it has a real
    fileno(); iterating it is the portable fallback. close() closes the file."""

    __slots__ = ("filelike", "blksize")

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data: bytes = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class _Body:
    """A streamed response: what write() buffered, the first chunk already taken
    from the application's iterator, then the rest; close() reaches the app."""

    __slots__ = ("_first", "_rest", "_result", "_written", "_closed")

    def __init__(self, first: bytes, rest: Any, result: Any, written: List[bytes]) -> None:
        self._first = first
        self._rest = rest
        self._result = result
        self._written = written
        self._closed = False

    def __iter__(self) -> Any:
        written = self._written
        if written:
            yield from _drain(written)
        yield self._first
        for chunk in self._rest:
            if written:  # write() called from inside the iterable
                yield from _drain(written)
            if chunk:
                yield chunk
        if written:
            yield from _drain(written)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


def _drain(written: List[bytes]) -> List[bytes]:
    chunks = written[:]
    del written[:]
    return chunks


def _split_host(host: str, default_port: str) -> Tuple[str, str]:
    """'example.com:8080' -> ('example.com', '8080'); IPv6 keeps its brackets."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            rest = host[end + 1:]
            if rest[:1] == ":" and rest[1:].isdigit():
                return host[:end + 1], rest[1:]
            return host[:end + 1], default_port
        return host, default_port
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, port
    return host, default_port


def _forwarded_elements(value: str) -> List[Dict[str, str]]:
    """RFC 7239 Forwarded: 'for=1.2.3.4;proto=https, for="[::1]:80"' -> dicts."""
    elements = []
    for element in _split_quoted(value, ","):
        pairs: Dict[str, str] = {}
        for pair in _split_quoted(element, ";"):
            key, sep, val = pair.partition("=")
            if not sep:
                continue
            val = val.strip()
            if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
                val = re.sub(r"\\(.)", r"\1", val[1:-1])
            pairs[key.strip().lower()] = val
        elements.append(pairs)
    return elements


def _split_quoted(text: str, sep: str) -> List[str]:
    if '"' not in text:
        return text.split(sep)
    parts, start, quoted, i = [], 0, False, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and quoted:
            i += 1
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _node_address(node: str) -> Tuple[str, str]:
    """A Forwarded 'for' node ('1.2.3.4:80', '[::1]:80', 'unknown') -> (addr, port)."""
    if node.startswith("["):
        end = node.find("]")
        addr, rest = node[1:end], node[end + 1:]
        return addr, rest[1:] if rest[:1] == ":" and rest[1:].isdigit() else "0"
    addr, sep, port = node.partition(":")
    return addr, port if sep and port.isdigit() else "0"


class WSGIHandler:
    """A native forker handler running a PEP 3333 application."""

    def __init__(self, app: Callable[..., Iterable[bytes]],
                 config: Union[Config, Mapping[str, Any], None] = None) -> None:
        if config is None:
            config = Config()
        elif not isinstance(config, Config):
            config = Config(**config)
        self.app = app
        self.root_path = config.root_path
        self._base: Dict[str, Any] = {
            "SERVER_SOFTWARE": f"forker/{__version__}",
            "SCRIPT_NAME": self.root_path,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": config.threads > 1,
            "wsgi.multiprocess": config.workers > 1,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }
        allowed = config.forwarded_allow_ips
        self._trust_all = "*" in allowed
        self._trusted_nets = []
        trusted = {""}  # unix socket peers: a proxy on the same host
        for item in allowed:
            if item == "*":
                continue
            net = ipaddress.ip_network(item, strict=False)
            if net.num_addresses == 1:
                trusted.add(str(net.network_address))
            else:
                self._trusted_nets.append(net)
        self._trusted = trusted
        self._trust_cache: Dict[str, bool] = {}
        self._keys: Dict[str, str] = {}
        self._hosts: Dict[str, Tuple[str, str]] = {}  # Host -> (SERVER_NAME, SERVER_PORT)
        self._valid: Set[Tuple[str, str]] = set()  # response header pairs found valid
        self._statuses: Dict[str, Tuple[int, Optional[str]]] = {}

    # -- per request --------------------------------------------------------

    def __call__(self, request: Any) -> Response:
        environ = self._base.copy()
        scheme = request.scheme
        if scheme != "http":
            environ["wsgi.url_scheme"] = scheme
        path = request.path
        if "%" in path:
            path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
        elif not path:
            path = "/"  # absolute-form target without a path: "http://host"
        root = self.root_path
        if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
            path = path[len(root):]
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = path
        environ["QUERY_STRING"] = request.query
        environ["RAW_URI"] = environ["REQUEST_URI"] = request.target
        environ["SERVER_PROTOCOL"] = request.version
        environ["REMOTE_ADDR"] = remote = request.remote_addr
        environ["REMOTE_PORT"] = str(request.remote_port)
        body = request.body
        environ["wsgi.input"] = BytesIO(body)

        keys = self._keys
        for name, value in request.headers:
            key = keys.get(name)
            if key is None:
                key = self._header_key(name)
            if not key:
                continue
            if key in environ:
                environ[key] = f"{environ[key]}{'; ' if key == 'HTTP_COOKIE' else ', '}{value}"
            else:
                environ[key] = value
        if body:
            environ["CONTENT_LENGTH"] = str(len(body))  # chunked bodies arrive decoded

        host = request.host
        if host is not None:
            environ["HTTP_HOST"] = host  # absolute-form authority wins over Host (RFC 7230 5.4)
        default_port = "80" if scheme == "http" else "443"
        if ("HTTP_FORWARDED" in environ or "HTTP_X_FORWARDED_FOR" in environ
                or "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ) \
                and self._is_trusted(remote):
            self._apply_forwarded(environ)
            host = environ.get("HTTP_HOST")
            default_port = "443" if environ["wsgi.url_scheme"] == "https" else "80"
        if host:
            if ":" in host:
                hosts = self._hosts if default_port == "80" else {}
                split = hosts.get(host)
                if split is None:
                    split = _split_host(host, default_port)
                    if len(hosts) < _CACHE_LIMIT:
                        hosts[host] = split
                environ["SERVER_NAME"], environ["SERVER_PORT"] = split
            else:
                environ["SERVER_NAME"] = host
                environ["SERVER_PORT"] = default_port
        else:  # HTTP/1.0 without Host: the listener's address ("localhost" for unix sockets)
            server = request.server_addr
            environ["SERVER_NAME"] = server if server and server[0] != "/" else "localhost"
            environ["SERVER_PORT"] = str(request.server_port)
        return self._run(environ)

    def _run(self, environ: Dict[str, Any]) -> Response:
        status: Optional[Tuple[int, Optional[str]]] = None
        headers: Optional[List[Tuple[str, str]]] = None
        written: List[bytes] = []
        sent = False

        def write(data: bytes) -> None:
            if status is None:
                raise AssertionError("write() called before start_response()")
            if type(data) is not bytes:
                raise TypeError(f"write() takes bytes, got {type(data).__name__}")
            written.append(data)

        def start_response(status_text: str, response_headers: List[Tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            nonlocal status, headers
            if exc_info is not None:
                try:
                    if sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif status is not None:
                raise AssertionError("start_response() called again without exc_info")
            parsed = self._statuses.get(status_text)
            if parsed is None:
                parsed = self._parse_status(status_text)
            self._check_headers(response_headers)
            status, headers = parsed, response_headers
            return write

        try:
            result = self.app(environ, start_response)
        except Exception:
            return self._error(environ, "application raised")
        chunks: Any  # the body's chunks known so far: result itself if a list or tuple
        rest: Any  # the iterator of the chunks still to come, or None
        try:
            kind = type(result)
            if kind is list or kind is tuple:
                chunks = result
                rest = None
            elif kind is FileWrapper and not written:
                rest = result
                chunks = None
            else:
                rest = iter(result)
                chunks = []
                for chunk in rest:
                    if chunk:
                        chunks = [chunk]
                        break
                else:
                    rest = None
            if status is None:
                raise WSGIError("the application returned without calling start_response()")
        except Exception:
            _close(result)
            return self._error(environ, "application raised")
        sent = True
        code, reason = status
        if rest is None:  # the whole body is known: send it with a Content-Length
            if written:
                chunks = written + list(chunks)
            try:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if type(data) is not bytes:
                    raise TypeError(f"response body chunks must be bytes, got {type(data).__name__}")
            except Exception:
                sent = False
                _close(result)
                return self._error(environ, "bad response body")
            if kind is not list and kind is not tuple:
                _close(result)
            # The engine frames bytes by their length; an application's own
            # Content-Length stands only on a HEAD answer without a body.
            return Response(data, code, headers, reason)
        if chunks is None:  # FileWrapper
            return Response(result, code, headers, reason)
        return Response(_Body(chunks[0], rest, result, written), code, headers, reason)

    # -- helpers (run once per new value, then cached) -------------------------

    def _header_key(self, name: str) -> str:
        lowered = name.lower()
        if "_" in name:
            key = ""  # X_Forwarded_For must not pass as X-Forwarded-For (as gunicorn)
        elif lowered == "content-type":
            key = "CONTENT_TYPE"
        elif lowered == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if len(self._keys) < _CACHE_LIMIT:
            self._keys[name] = key
        return key

    def _parse_status(self, text: Any) -> Tuple[int, Optional[str]]:
        if type(text) is not str:
            raise TypeError(f"status must be a str such as '200 OK', got {text!r}")
        match = _status_line(text)
        if match is None:
            raise ValueError(f"invalid status {text!r}: expected '200 OK'")
        code = int(match.group(1))
        reason = match.group(2)
        if reason is None or reason == _REASONS.get(code):
            reason = None  # the engine's standard phrase
        parsed = (code, reason)
        if len(self._statuses) < _CACHE_LIMIT:
            self._statuses[text] = parsed
        return parsed

    def _check_headers(self, headers: Any) -> None:
        """Validate the application's header list (PEP 3333: when start_response
        is called, so the application sees the error). Pairs already seen valid
        are remembered: most are constants of the application."""
        if type(headers) is not list:
            raise TypeError(f"response headers must be a list, got {type(headers).__name__}")
        valid = self._valid
        for pair in headers:
            if pair in valid:
                continue
            if type(pair) is not tuple or len(pair) != 2:
                raise TypeError(f"response header must be a (name, value) tuple, got {pair!r}")
            name, value = pair
            if type(name) is not str or not _token(name):
                raise ValueError(f"invalid response header name {name!r}")
            if name.lower() in HOP_BY_HOP:
                raise WSGIError(f"hop-by-hop header {name!r} is not allowed in a WSGI response")
            if type(value) is not str or _bad_value(value):
                raise ValueError(f"invalid value for response header {name!r}: {value!r}")
            if len(valid) < _CACHE_LIMIT:
                valid.add(pair)

    def _is_trusted(self, addr: str) -> bool:
        if self._trust_all or addr in self._trusted:
            return True
        if not self._trusted_nets:
            return False
        trusted = self._trust_cache.get(addr)
        if trusted is None:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                trusted = False
            else:
                mapped = getattr(ip, "ipv4_mapped", None)
                if mapped is not None:
                    ip = mapped  # a v4 peer on a [::] listener
                trusted = any(ip in net for net in self._trusted_nets if net.version == ip.version)
            if len(self._trust_cache) < _CACHE_LIMIT:
                self._trust_cache[addr] = trusted
        return trusted

    def _apply_forwarded(self, environ: Dict[str, Any]) -> None:
        """Take the client address, scheme and host from a trusted proxy's headers.

        The client is the rightmost forwarded address that is not itself a
        trusted proxy (the leftmost when all are trusted). With Forwarded, the
        scheme and host come from that same element; X-Forwarded-Proto and
        -Host are taken from their last value, the one our own proxy set."""
        proto = host = None
        addr = port = None
        forwarded = environ.get("HTTP_FORWARDED")
        if forwarded is not None:
            elements = [e for e in _forwarded_elements(forwarded) if e]
            chosen = None
            for element in reversed(elements):
                chosen = element
                node = element.get("for")
                if node is not None and not self._is_trusted(_node_address(node)[0]):
                    break
            if chosen is not None:
                node = chosen.get("for")
                if node is not None:
                    addr, port = _node_address(node)
                proto = chosen.get("proto")
                host = chosen.get("host")
        else:
            chain = environ.get("HTTP_X_FORWARDED_FOR")
            if chain is not None:
                hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
                for hop in reversed(hops):
                    addr = hop
                    if not self._is_trusted(hop):
                        break
                if addr is not None:
                    addr, port = _node_address(addr) if addr.startswith("[") else (addr, "0")
            value = environ.get("HTTP_X_FORWARDED_PROTO")
            if value is not None:
                proto = value.rpartition(",")[2].strip()
            value = environ.get("HTTP_X_FORWARDED_HOST")
            if value is not None:
                host = value.rpartition(",")[2].strip()
        if addr and addr not in ("unknown",) and not addr.startswith("_"):
            environ["REMOTE_ADDR"] = addr
            environ["REMOTE_PORT"] = port or "0"
        if proto:
            proto = proto.lower()
            if proto in ("https", "wss"):
                environ["wsgi.url_scheme"] = "https"
                environ["HTTPS"] = "on"
            elif proto in ("http", "ws"):
                environ["wsgi.url_scheme"] = "http"
        if host and not _bad_value(host):
            environ["HTTP_HOST"] = host

    def _error(self, environ: Dict[str, Any], what: str) -> Response:
        log.exception("%s handling %s %s", what, environ.get("REQUEST_METHOD"),
                      environ.get("RAW_URI"))
        return Response(ERROR_BODY, 500, [("Content-Type", "text/plain; charset=utf-8")])


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("error closing the application's response iterable")
