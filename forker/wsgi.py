"""WSGI (PEP 3333) on top of forker's native handler API.

    handler = WSGIHandler(app, config)
    handler(request) -> forker.Response

Everything that does not change between requests (the constant part of the
environ, trusted proxy networks, header-name translations, parsed status
lines) is computed once per handler; a request costs one dict copy, one pass
over its header fields and the application call. That per-request part is
compiled (forker/_wsgi.pyx, the base class of WSGIHandler); this module
configures it and keeps the rare paths: proxies' forwarded headers.

The response body handed to the engine is bytes when the application's
iterable is a list (or finished at its first chunk), so it goes out with a
Content-Length in one write; otherwise it is a wrapper that streams the
iterable and delegates close(). A FileWrapper from wsgi.file_wrapper is passed
through untouched so the engine can recognise it and send the file itself.
The engine's own requests are answered with a forker._worker.Reply instead of
a Response: the same four fields, which the engine reads without attribute
lookups.
"""

from __future__ import annotations

import ipaddress
import re

from ._version import __version__
from ._wsgi import Core
from ._wsgi import WSGIError as WSGIError
from .config import Config
from .logs import ErrorStream

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

_CACHE_LIMIT = 1024  # bound on the trusted-address cache, filled from client input


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


def _node_address(node: str) -> Optional[Tuple[str, str]]:
    """A Forwarded 'for' node or an X-Forwarded-For hop ('1.2.3.4', '1.2.3.4:80',
    '[::1]:80', '::1') -> (addr, port); None when it names no IP address
    ('unknown', an obfuscated '_id', anything malformed such as '[::1')."""
    port = "0"
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            return None
        addr, rest = node[1:end], node[end + 1:]
        if rest:
            if rest[:1] != ":" or not rest[1:].isdigit():
                return None
            port = rest[1:]
    elif node.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has more colons
        addr, _, port = node.partition(":")
        if not port.isdigit():
            return None
    else:
        addr = node
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return None
    return addr, port


# host [":" port] (RFC 3986 §3.2.2, §3.2.3): an IP-literal or a non-empty
# reg-name of unreserved characters, sub-delims and percent-encodings; what the
# request parser accepts in Host.
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)"
                      r"(?::[0-9]*)?\Z")


def _is_host(value: str) -> bool:
    """Whether a forwarded host (X-Forwarded-Host, Forwarded host=) is a host
    with an optional port, fit to stand as Host; anything else is ignored."""
    match = _HOST_RE.match(value)
    if match is None:
        return False
    name = match.group(1)
    if name[0] == "[":
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return False
    return True


class Proxies:
    """The trusted proxies of forwarded_allow_ips, and the client address, scheme
    and host their forwarded header fields give (WSGIHandler's environ, and
    forker.asgi's scope through an environ of those fields)."""

    def _init_proxies(self, config: Config) -> None:
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
        self._forwarded_host = bool(config.forwarded_host)

    # -- proxies (called by Core for requests with forwarded header fields) ----------

    def _is_trusted(self, addr: str, hop: bool = False) -> bool:
        """Whether addr is a trusted proxy: the peer, or (hop) an address a
        forwarded field names, which "*" does not make trusted: "*" trusts
        whichever peer comes, not the addresses a client may write."""
        if (self._trust_all and not hop) or addr in self._trusted:
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
        """Take the client address and scheme from a trusted proxy's headers, and
        the host with forwarded_host.

        The client is the rightmost forwarded address that is not itself a
        listed proxy (the leftmost when all are listed). With "*", the rightmost:
        the address the peer saw, as gunicorn leaves REMOTE_ADDR to be the peer
        whatever forwarded_allow_ips says; the leftmost would be any client's
        say (X-Forwarded-For: 6.6.6.6 sent to a proxy that appends). With Forwarded, the
        scheme and host come from that same element; X-Forwarded-Proto and
        -Host are taken from their last value, the one our own proxy set.

        Forwarded is read only when no X-Forwarded-For, -Proto or -Host came:
        the proxies in front of most servers (nginx's usual configuration,
        HAProxy's forwardfor, cloud balancers) set the X-Forwarded fields and
        pass a client's own Forwarded field through untouched, so with both
        present, Forwarded is the client's word (gunicorn and uvicorn never
        read it at all)."""
        proto = host = None
        addr = port = None
        forwarded = environ.get("HTTP_FORWARDED")
        if forwarded is not None and not any(
                name in environ for name in ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                                             "HTTP_X_FORWARDED_HOST")):
            elements = [e for e in _forwarded_elements(forwarded) if e]
            chosen = None
            for element in reversed(elements):
                chosen = element
                node = element.get("for")
                if node is not None:
                    parsed = _node_address(node)
                    if parsed is None or not self._is_trusted(parsed[0], hop=True):
                        break
            if chosen is not None:
                node = chosen.get("for")
                parsed = _node_address(node) if node is not None else None
                if parsed is not None:
                    addr, port = parsed
                proto = chosen.get("proto")
                host = chosen.get("host")
        else:
            chain = environ.get("HTTP_X_FORWARDED_FOR")
            if chain is not None:
                hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
                chosen_hop = None
                for hop in reversed(hops):
                    chosen_hop = hop
                    if not self._is_trusted(hop, hop=True):
                        break
                parsed = _node_address(chosen_hop) if chosen_hop is not None else None
                if parsed is not None:
                    addr, port = parsed
            value = environ.get("HTTP_X_FORWARDED_PROTO")
            if value is not None:
                proto = value.rpartition(",")[2].strip()
            value = environ.get("HTTP_X_FORWARDED_HOST")
            if value is not None:
                host = value.rpartition(",")[2].strip()
        if addr:  # an IP address: unknown, obfuscated or malformed nodes are ignored
            environ["REMOTE_ADDR"] = addr
            environ["REMOTE_PORT"] = port or "0"
        if proto:
            proto = proto.lower()
            if proto in ("https", "wss"):
                environ["wsgi.url_scheme"] = "https"
                environ["HTTPS"] = "on"
            elif proto in ("http", "ws"):
                environ["wsgi.url_scheme"] = "http"
        if host and self._forwarded_host and _is_host(host):
            environ["HTTP_HOST"] = host


class WSGIHandler(Core, Proxies):
    """A native forker handler running a PEP 3333 application."""

    def __init__(self, app: Callable[..., Iterable[bytes]],
                 config: Union[Config, Mapping[str, Any], None] = None) -> None:
        if config is None:
            config = Config()
        elif not isinstance(config, Config):
            config = Config(**config)
        base: Dict[str, Any] = {
            "SERVER_SOFTWARE": f"forker/{__version__}",
            "SCRIPT_NAME": config.root_path,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": config.threads > 1,
            "wsgi.multiprocess": config.workers > 1,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }
        super().__init__(app, base, config.root_path)
        self._init_proxies(config)
