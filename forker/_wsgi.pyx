# cython: language_level=3
"""The per-request part of forker.wsgi, compiled: the environ, start_response
and write, the checks PEP 3333 asks of the response, and its body.

forker.wsgi.WSGIHandler subclasses Core: it computes what stays the same
between requests (the constant environ, the trusted proxies) and keeps the
rare paths (forwarded headers) in Python; the engine's call goes straight to
Core.__call__. A request is the engine's Request, whose fields are read
through its C declarations (forker/_worker.pxd), answered with a
forker._worker.Reply (a Response's four fields, which the engine reads without
attribute lookups), or any object with the same attributes, answered with a
Response."""

cimport cython
from cpython.dict cimport PyDict_Copy, PyDict_SetDefault
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.stdlib cimport free, malloc

from forker._platform cimport PyUnicode_1BYTE_DATA, PyUnicode_1BYTE_KIND, PyUnicode_KIND
from forker._csrc cimport fk_field_value_check, fk_tchar
from forker._worker cimport Reply, Request, error_body

import logging
import re
import sys
from io import BytesIO
from urllib.parse import unquote_to_bytes

from ._worker import standard_reason
from .errors import RequestBodyError
from .response import Response

log = logging.getLogger("forker.wsgi")

# RFC 7230 6.1 and RFC 2616 13.5.1: meaningful for one connection only, so a
# WSGI application must not set them (PEP 3333, "Other HTTP Features"). As
# gunicorn does, they are dropped (with a warning, once per name) rather than
# refused; Connection and Transfer-Encoding go on to the engine, which frames
# the answer itself and closes the connection after it on Connection: close.
cdef frozenset HOP_BY_HOP = frozenset((
    "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "upgrade",
))

cdef bytes ERROR_BODY = error_body(500)
cdef list ERROR_FIELDS = [("Content-Type", "text/plain; charset=utf-8")]

cdef object status_line = re.compile(r"([1-9][0-9][0-9])(?: ([^\r\n\x00]*))?\Z").match
cdef Py_ssize_t CACHE_LIMIT = 1024  # bound on each cache filled from client or app input
cdef enum:
    KEY_CACHE_SIZE = 128  # header names whose environ key is found by their address: sets of 2

# Fields whose presence sends the environ through the trusted-proxy check, and
# Host; the header-name cache hands out these very objects, so they are compared
# by identity.
cdef str K_FORWARDED = "HTTP_FORWARDED"
cdef str K_FOR = "HTTP_X_FORWARDED_FOR"
cdef str K_PROTO = "HTTP_X_FORWARDED_PROTO"
cdef str K_HOST = "HTTP_X_FORWARDED_HOST"
cdef str K_HTTP_HOST = "HTTP_HOST"
cdef dict PROXY_KEYS = {K_FORWARDED: K_FORWARDED, K_FOR: K_FOR, K_PROTO: K_PROTO, K_HOST: K_HOST,
                        K_HTTP_HOST: K_HTTP_HOST}


# Set on every request: the constant environ holds each, with the value most
# requests have (set again only when the request's differs) or None.
cdef str GET = "GET"
cdef str HTTP11 = "HTTP/1.1"
cdef str HTTP10 = "HTTP/1.0"
cdef dict REQUEST_KEYS = {
    "REQUEST_METHOD": GET, "PATH_INFO": None, "QUERY_STRING": "", "RAW_URI": None,
    "REQUEST_URI": None, "SERVER_PROTOCOL": HTTP11, "REMOTE_ADDR": None, "REMOTE_PORT": None,
    "wsgi.input": None, "SERVER_NAME": None, "SERVER_PORT": None,
}


cdef dict shaped(dict base):
    """base with the keys of REQUEST_KEYS, in a hash table with room to spare:
    a copy of it takes the request's keys and its header fields without
    growing (growing rehashes every key). The room comes from keys added until
    the table grows, then deleted, which leaves it grown; a copy keeps the
    table as long as deleted slots are under a third."""
    cdef dict environ = dict(base)
    for key, value in REQUEST_KEYS.items():
        environ.setdefault(key, value)
    size = sys.getsizeof(environ)
    added = []
    while sys.getsizeof(environ) == size and len(added) < len(environ) // 2:
        key = f"\0{len(added)}"  # a str: a table of str keys only has the faster lookup
        added.append(key)
        environ[key] = None
    for key in added:
        del environ[key]
    return environ


class WSGIError(Exception):
    """The application broke a PEP 3333 rule the server has to enforce."""


cdef bint is_token(str text):
    """Whether text is a token (fk_tchar, the table the C core checks with)."""
    cdef Py_UCS4 c
    if not text:
        return False
    for c in text:
        if c > 0xFF or not fk_tchar[c]:
            return False
    return True


cpdef bint bad_value(str text):
    """Whether text cannot be a field value: a control character but HTAB (CR,
    LF and NUL would split the head), checked by the C core's rule
    (fk_field_value_check), or a character beyond latin-1 (PEP 3333 "native
    strings"), which a str of more than one byte per character always holds."""
    if PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND:
        return True
    return fk_field_value_check(<const char *>PyUnicode_1BYTE_DATA(text), len(text)) != 0


cdef inline int hex_value(unsigned char c) noexcept:
    if c"0" <= c <= c"9":
        return c - c"0"
    if c"a" <= c <= c"f":
        return c - c"a" + 10
    if c"A" <= c <= c"F":
        return c - c"A" + 10
    return -1


cdef str unquote(str path):
    """Percent-decodes a latin-1 path into latin-1 (PEP 3333), leaving
    malformed escapes as they are, as urllib's unquote_to_bytes does."""
    cdef const unsigned char *src
    cdef char *out
    cdef Py_ssize_t n = len(path), i = 0, j = 0
    cdef int hi, lo
    if PyUnicode_KIND(path) != PyUnicode_1BYTE_KIND:  # beyond latin-1: encode() raises
        return unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    src = PyUnicode_1BYTE_DATA(path)
    out = <char *>malloc(n)
    if out == NULL:
        raise MemoryError()
    try:
        while i < n:
            if src[i] == c"%" and i + 2 < n:
                hi = hex_value(src[i + 1])
                lo = hex_value(src[i + 2])
                if hi >= 0 and lo >= 0:
                    out[j] = <char>(hi * 16 + lo)
                    i += 3
                    j += 1
                    continue
            out[j] = <char>src[i]
            i += 1
            j += 1
        return PyUnicode_DecodeLatin1(out, j, NULL)
    finally:
        free(out)


cdef tuple split_host(str host, str default_port):
    """'example.com:8080' -> ('example.com', '8080'); IPv6 keeps its brackets."""
    cdef Py_ssize_t end
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            rest = host[end + 1:]
            if rest[:1] == ":" and rest[1:].isdigit():
                return host[:end + 1], rest[1:]
            return host[:end + 1], default_port
        return host, default_port
    name, sep, port = host.rpartition(":")
    if sep and ":" not in name and (port.isdigit() or not port):
        return name, port or default_port  # "a:" is "a" with an empty port (RFC 3986 §3.2.3)
    return host, default_port


cdef object respond(object body, int status, list headers, object reason, bint engine):
    """The answer: a Reply for the engine's own requests, else a Response."""
    cdef Reply reply
    if engine:
        reply = Reply.__new__(Reply)
        reply.body = body
        reply.status = status
        reply.headers = headers
        reply.reason = reason
        return reply
    cdef object response = Response.__new__(Response)
    response.body = body
    response.status = status
    response.headers = headers
    response.reason = reason
    return response


cdef void close_result(object result):
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("error closing the application's response iterable")


@cython.final
@cython.freelist(8)
cdef class StartResponse:
    """start_response for one request; what it was given, and what write() buffered."""

    cdef Core core
    cdef tuple status    # (code, reason or None), None until called
    cdef list headers
    cdef list written    # None until write() is called
    cdef bint sent       # the status has left: exc_info re-raises

    def __call__(self, status_text, response_headers, exc_info=None):
        cdef tuple parsed
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called again without exc_info")
        parsed = self.core._statuses.get(status_text)
        if parsed is None:
            parsed = self.core._parse_status(status_text)
        self.headers = self.core._check_headers(response_headers)
        self.status = parsed
        cdef Write write = Write.__new__(Write)
        write.start = self
        return write

    cdef list take_written(self):
        cdef list chunks = self.written
        self.written = None
        return chunks


@cython.final
@cython.freelist(8)
cdef class Write:
    """The write() callable start_response returns (PEP 3333)."""

    cdef StartResponse start

    def __call__(self, data):
        if self.start.status is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, got {type(data).__name__}")
        if self.start.written is None:
            self.start.written = [data]
        else:
            self.start.written.append(data)


@cython.final
cdef class Body:
    """A streamed response: what write() buffered, the first chunk already
    taken from the application's iterator, then the rest; close() reaches the
    application's iterable."""

    cdef object first      # the first chunk, None once given out
    cdef object rest       # the application's iterator
    cdef object result     # the application's iterable, whose close() we owe
    cdef StartResponse start
    cdef list pending      # chunks to give out before going on
    cdef Py_ssize_t taken  # of pending
    cdef bint ended
    cdef bint closed

    def __iter__(self):
        return self

    def __next__(self):
        cdef list written
        while True:
            if self.pending is not None:
                if self.taken < len(self.pending):
                    self.taken += 1
                    return self.pending[self.taken - 1]
                self.pending = None
            written = self.start.take_written()
            if written:  # write() called before, or from inside the iterable
                self.pending = written
                self.taken = 0
                continue
            if self.first is not None:
                chunk, self.first = self.first, None
                return chunk
            if self.ended:
                raise StopIteration
            try:
                chunk = next(self.rest)
            except StopIteration:
                self.ended = True
                continue
            written = self.start.take_written()
            if written:
                if chunk:
                    written.append(chunk)
                self.pending = written
                self.taken = 0
            elif chunk:
                return chunk

    def close(self):
        if self.closed:
            return
        self.closed = True
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


cdef class Core:
    """A native handler running a PEP 3333 application: handler(request) ->
    forker.Response. Subclassed by forker.wsgi.WSGIHandler, which configures it
    and supplies _is_trusted(addr) and _apply_forwarded(environ)."""

    cdef readonly object app
    cdef readonly str root_path
    cdef dict _base           # the constant part of the environ
    cdef object _file_wrapper
    cdef dict _keys           # header name -> environ key ("" to drop)
    cdef list _recent         # (name, key) pairs by the name object's address, 2 per set
    cdef dict _hosts          # Host -> (SERVER_NAME, SERVER_PORT), default port 80
    cdef set _names           # response header names found valid
    cdef set _dropped         # hop-by-hop names warned about once
    cdef dict _statuses       # status line -> (code, reason or None)
    cdef tuple _port          # (REMOTE_PORT as int, as str) of the last request
    cdef tuple _host          # (Host, SERVER_NAME, SERVER_PORT) of the last request on port 80

    def __init__(self, app, dict base, str root_path):
        self.app = app
        self.root_path = root_path
        self._base = shaped(base)
        self._file_wrapper = base["wsgi.file_wrapper"]
        self._keys = {}
        self._recent = [None] * KEY_CACHE_SIZE
        self._hosts = {}
        self._names = set()
        self._dropped = set()
        self._statuses = {}
        self._port = (None, None)
        self._host = (None, None, None)

    def __call__(self, request):
        return self._run(self._environ(request), type(request) is Request)

    # -- the environ ---------------------------------------------------------------

    cdef dict _environ(self, request):
        cdef dict environ = PyDict_Copy(self._base)
        cdef str root = self.root_path
        cdef bint proxied = False
        cdef Py_ssize_t i, n, size
        cdef PyObject *old
        cdef list fields
        cdef Request req
        cdef str method, target, path, query, version, scheme, host, key
        if type(request) is Request:  # the engine's: its fields read in C
            req = <Request>request
            method = req._get_method()
            target = req._get_target()
            path = req._get_path()
            query = req._get_query()
            version = HTTP11 if req._minor == 1 else HTTP10
            scheme = req._scheme()
            if req._remote_addr is None:
                req._peer()
            remote = req._remote_addr
            port = req._remote_port
            fields = req._flat_fields()  # before the host, which it decodes too
            host = req._get_host()
            body = req._get_stream() if req._conn.body_stream else req._get_body()
            # not when a PROXY protocol header left the balancer as the peer
            named = not req._conn.proxy_local
        else:
            (method, target, path, query, version, scheme, host, body, remote, port, fields,
             named) = request_parts(request)
        if scheme != "http":
            environ["wsgi.url_scheme"] = scheme
        if "%" in path:
            path = unquote(path)
        elif not path:
            path = "/"  # absolute-form target without a path: "http://host"
        if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
            path = path[len(root):]
        if method != GET:
            environ["REQUEST_METHOD"] = method
        environ["PATH_INFO"] = path
        if query:
            environ["QUERY_STRING"] = query
        environ["RAW_URI"] = target
        environ["REQUEST_URI"] = target
        if version != HTTP11:
            environ["SERVER_PROTOCOL"] = version
        environ["REMOTE_ADDR"] = remote
        environ["REMOTE_PORT"] = self._port_text(port)
        environ["wsgi.input"] = BytesIO(body) if type(body) is bytes else body  # or streamed

        n = len(fields)
        for i in range(0, n, 2):
            key = self._key(fields[i])
            if not key:
                continue
            if key is K_HTTP_HOST and host is not None:
                continue  # set from request.host below
            if key is K_FORWARDED or key is K_FOR or key is K_PROTO or key is K_HOST:
                proxied = True
            value = fields[i + 1]
            size = len(environ)
            old = PyDict_SetDefault(environ, key, value)  # borrowed
            if len(environ) == size:  # a repeated field: the values are joined
                if key == "CONTENT_LENGTH":
                    continue  # identical repeats (the parser refuses others): one integer
                environ[key] = f"{<object>old}{'; ' if key == 'HTTP_COOKIE' else ', '}{value}"
        if type(body) is not bytes:
            if body.length is not None:  # a streamed chunked body has no length
                environ["CONTENT_LENGTH"] = str(body.length)
        elif body:
            environ["CONTENT_LENGTH"] = str(len(body))  # chunked bodies arrive decoded

        if host is not None:
            environ["HTTP_HOST"] = host  # absolute-form authority wins over Host (RFC 7230 5.4)
        default_port = "80" if scheme == "http" else "443"
        # named: a PROXY protocol header did not leave the balancer's own address
        # as the peer (LOCAL, UNKNOWN): a layer-4 balancer never cleans the
        # client's forwarded fields, so they are believed only from a peer the
        # header named
        if proxied and named and (<object>self)._is_trusted(remote):
            (<object>self)._apply_forwarded(environ)
            host = environ.get("HTTP_HOST")
            default_port = "443" if environ["wsgi.url_scheme"] == "https" else "80"
        if host:
            if ":" in host:
                self._set_server(environ, host, default_port)
            else:
                environ["SERVER_NAME"] = host
                environ["SERVER_PORT"] = default_port
        else:  # HTTP/1.0 without Host: the listener's address ("localhost" for unix sockets)
            server = request.server_addr
            environ["SERVER_NAME"] = server if server and server[0] != "/" else "localhost"
            environ["SERVER_PORT"] = str(request.server_port)
        return environ

    cdef str _port_text(self, port):
        cdef tuple last = self._port  # one read: handler threads share it
        if last[0] == port:
            return last[1]
        text = str(port)
        self._port = (port, text)
        return text

    cdef void _set_server(self, dict environ, str host, str default_port) except *:
        cdef tuple last = self._host  # one read: handler threads share it
        cdef dict hosts
        cdef tuple split
        if last[0] == host and default_port == "80":  # most requests name the same host
            environ["SERVER_NAME"] = last[1]
            environ["SERVER_PORT"] = last[2]
            return
        hosts = self._hosts if default_port == "80" else {}
        split = hosts.get(host)
        if split is None:
            split = split_host(host, default_port)
            if len(hosts) < CACHE_LIMIT:
                hosts[host] = split
        if default_port == "80":
            self._host = (host,) + split
        environ["SERVER_NAME"] = split[0]
        environ["SERVER_PORT"] = split[1]

    cdef str _key(self, str name):
        """The environ key of a header field name ("" to drop the field). The
        engine hands out one str object per name it keeps seeing: an entry found
        by the object's address answers without hashing the name (the entry
        holds the name, so no other string can take that address meanwhile)."""
        cdef list recent = self._recent
        cdef size_t way = (((<size_t><PyObject *>name >> 4) * <size_t>0x9E3779B97F4A7C15)
                           >> (8 * sizeof(size_t) - 6)) * 2  # the 6 high bits: 64 sets
        cdef str key
        known = recent[way]
        if known is not None and (<tuple>known)[0] is name:
            return (<tuple>known)[1]
        other = recent[way + 1]
        if other is not None and (<tuple>other)[0] is name:
            return (<tuple>other)[1]
        key = self._keys.get(name)
        if key is None:
            key = self._header_key(name)
        recent[way], recent[way + 1] = (name, key), known
        return key

    cdef str _header_key(self, str name):
        if "_" in name:
            key = ""  # X_Forwarded_For must not pass as X-Forwarded-For (as gunicorn)
        else:
            lowered = name.lower()
            if lowered == "content-type":
                key = "CONTENT_TYPE"
            elif lowered == "content-length":
                key = "CONTENT_LENGTH"
            else:
                key = "HTTP_" + name.upper().replace("-", "_")
                key = PROXY_KEYS.get(key, key)
        if len(self._keys) < CACHE_LIMIT:
            self._keys[name] = key
        return key

    # -- the application and its answer ----------------------------------------------

    cdef object _run(self, dict environ, bint engine):
        cdef StartResponse start = StartResponse.__new__(StartResponse)
        cdef list written
        start.core = self
        try:
            result = self.app(environ, start)
        except Exception:
            return self._error(environ, "application raised", engine)
        rest = None  # the iterator of the chunks still to come
        chunks = None  # the body's chunks known so far: result itself if a list or tuple
        kind = type(result)
        try:
            if kind is list or kind is tuple:
                chunks = result
            elif kind is self._file_wrapper and start.written is None:
                rest = result
            else:
                rest = iter(result)
                for chunk in rest:
                    if chunk:
                        chunks = [chunk]
                        break
                else:
                    rest = None
                    chunks = ()
            if start.status is None:
                raise WSGIError("the application returned without calling start_response()")
        except Exception:
            close_result(result)
            return self._error(environ, "application raised", engine)
        start.sent = True
        code, reason = start.status
        if rest is None:  # the whole body is known: send it with a Content-Length
            written = start.take_written()
            if written:
                chunks = written + list(chunks)
            try:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if type(data) is not bytes:
                    raise TypeError(f"response body chunks must be bytes, got {type(data).__name__}")
            except Exception:
                start.sent = False
                close_result(result)
                return self._error(environ, "bad response body", engine)
            if kind is not list and kind is not tuple:
                close_result(result)
            # The engine frames bytes by their length; an application's own
            # Content-Length stands only on a HEAD answer without a body.
            return respond(data, code, start.headers, reason, engine)
        if chunks is None:  # a file wrapper: the engine may send the file itself
            return respond(result, code, start.headers, reason, engine)
        cdef Body body = Body.__new__(Body)
        body.first = chunks[0]
        body.rest = rest
        body.result = result
        body.start = start
        return respond(body, code, start.headers, reason, engine)

    cdef tuple _parse_status(self, text):
        if type(text) is not str:
            raise TypeError(f"status must be a str such as '200 OK', got {text!r}")
        match = status_line(text)
        if match is None:
            raise ValueError(f"invalid status {text!r}: expected '200 OK'")
        code = int(match.group(1))
        reason = match.group(2)
        if reason is None or reason == standard_reason(code):
            reason = None  # the engine's standard phrase
        parsed = (code, reason)
        if len(self._statuses) < CACHE_LIMIT:
            self._statuses[text] = parsed
        return parsed

    cdef list _check_headers(self, headers):
        """Validates the application's header list (PEP 3333: when start_response
        is called, so the application sees the error) and returns the fields to
        send: the list itself, or without its hop-by-hop fields (HOP_BY_HOP).
        Names already seen valid are remembered: most are constants of the
        application, whose str hash is computed once. Values are scanned each
        time, which costs less than hashing the many made afresh (a
        Content-Length). A tuple is taken as gunicorn takes it."""
        cdef set names = self._names
        cdef list kept = None
        cdef Py_ssize_t i
        if type(headers) is tuple:
            headers = list(<tuple>headers)
        elif type(headers) is not list:
            raise TypeError(f"response headers must be a list, got {type(headers).__name__}")
        for i in range(len(<list>headers)):
            pair = (<list>headers)[i]
            if type(pair) is not tuple or len(<tuple>pair) != 2:
                raise TypeError(f"response header must be a (name, value) tuple, got {pair!r}")
            name, value = <tuple>pair
            if name not in names:
                if type(name) is not str or not is_token(name):
                    raise ValueError(f"invalid response header name {name!r}")
                if name.lower() in HOP_BY_HOP:
                    if kept is None:
                        kept = (<list>headers)[:i]
                    if name.lower() not in self._dropped and len(self._dropped) < CACHE_LIMIT:
                        self._dropped.add(name.lower())
                        log.warning("dropped the hop-by-hop header %r of a WSGI response (PEP "
                                    "3333 forbids them; the server manages the connection)",
                                    name)
                    continue
                if len(names) < CACHE_LIMIT:
                    names.add(name)
            if type(value) is not str or bad_value(value):
                raise ValueError(f"invalid value for response header {name!r}: {value!r}")
            if kept is not None:
                kept.append(pair)
        return headers if kept is None else kept

    cdef object _error(self, dict environ, str what, bint engine):
        exc = sys.exc_info()[1]
        if isinstance(exc, RequestBodyError):  # the client's fault: its status, no traceback
            log.info("%s %s: %s", environ.get("REQUEST_METHOD"), environ.get("RAW_URI"), exc)
            return respond(f"{exc.status} {exc}\n".encode(), exc.status, list(ERROR_FIELDS),
                           None, engine)
        log.exception("%s handling %s %s", what, environ.get("REQUEST_METHOD"),
                      environ.get("RAW_URI"))
        return respond(ERROR_BODY, 500, list(ERROR_FIELDS), None, engine)


cdef tuple request_parts(request):
    """What _environ reads of the engine's Request, read from the attributes
    of any other request object."""
    cdef list fields = []
    for name, value in request.headers:
        fields.append(name)
        fields.append(value)
    return (request.method, request.target, request.path, request.query, request.version,
            request.scheme, request.host, request.body, request.remote_addr,
            request.remote_port, fields, True)
