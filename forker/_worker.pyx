# cython: language_level=3
"""The worker engine: drives the C event loop (csrc/fk_loop.c) and calls the
handler. The loop runs without the GIL; it is taken only to build a Request,
call the handler and hand its answer back to C."""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from forker._csrc cimport *

import logging
import os

from .response import Response

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(object o)

log = logging.getLogger("forker.error")

cdef bytes ERROR_BODY = b"500 Internal Server Error\n"
cdef bytes ERROR_FIELDS = b"Content-Type: text/plain; charset=utf-8\r\n"


class EngineError(OSError):
    """The C loop could not be set up (errno from the failing call)."""


cdef inline str latin1(const char *p, size_t n):
    return PyUnicode_DecodeLatin1(p, <Py_ssize_t>n, NULL)


cdef class Headers:
    """The request's header fields: a case-insensitive mapping that iterates the
    raw (name, value) pairs in their original order, repeated names kept."""

    cdef readonly list raw
    cdef dict _index

    def __cinit__(self, list raw):
        self.raw = raw
        self._index = None

    cdef dict _lookup(self):
        cdef dict index
        if self._index is None:
            index = {}
            for name, value in self.raw:
                index.setdefault(name.lower(), []).append(value)
            self._index = index
        return self._index

    def __getitem__(self, name):
        values = self._lookup()[name.lower()]
        return values[0] if len(values) == 1 else ", ".join(values)

    def get(self, name, default=None):
        values = self._lookup().get(name.lower())
        if values is None:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def getall(self, name):
        return list(self._lookup().get(name.lower(), ()))

    def __contains__(self, name):
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self):
        return iter(self.raw)

    def __len__(self):
        return len(self.raw)

    def items(self):
        return list(self.raw)

    def keys(self):
        return [name for name, _ in self.raw]

    def values(self):
        return [value for _, value in self.raw]

    def __repr__(self):
        return f"Headers({self.raw!r})"


@cython.freelist(16)
cdef class Request:
    """One HTTP request. Attributes are built on first access from the bytes the
    loop received, so a handler pays only for what it reads."""

    cdef fk_conn *_conn
    cdef Engine _engine
    cdef object _method, _path, _query, _target, _headers, _body, _host
    cdef object _remote_addr, _remote_port
    cdef int _minor, _flags, _listener

    cdef void _bind(self, Engine engine, fk_conn *conn):
        self._engine = engine
        self._conn = conn
        self._minor = conn.req.minor_version
        self._flags = conn.req.flags
        self._listener = conn.listener

    cdef fk_conn *_live(self) except NULL:
        if self._conn == NULL:
            raise RuntimeError("request data read after the request was answered")
        return self._conn

    cdef void _detach(self):
        """Copies what is still lazy before the loop reuses the buffer."""
        if self._conn == NULL:
            return
        self.method, self.target, self.path, self.query, self.headers, self.body
        self.host, self.remote_addr
        self._conn = NULL

    @property
    def method(self):
        if self._method is None:
            c = self._live()
            self._method = latin1(c.req.method, c.req.method_len)
        return self._method

    @property
    def target(self):
        if self._target is None:
            c = self._live()
            self._target = latin1(c.req.target, c.req.target_len)
        return self._target

    @property
    def path(self):
        if self._path is None:
            c = self._live()
            self._path = latin1(c.req.path, c.req.path_len)
        return self._path

    @property
    def query(self):
        if self._query is None:
            c = self._live()
            self._query = "" if c.req.query == NULL else latin1(c.req.query, c.req.query_len)
        return self._query

    @property
    def host(self):
        if self._host is None:
            c = self._live()
            self._host = False if c.req.host == NULL else latin1(c.req.host, c.req.host_len)
        return self._host or None

    @property
    def version(self):
        return "HTTP/1.1" if self._minor == 1 else "HTTP/1.0"

    @property
    def keep_alive(self):
        return bool(self._flags & FK_REQ_KEEP_ALIVE)

    @property
    def absolute_form(self):
        return bool(self._flags & FK_REQ_ABSOLUTE_FORM)

    @property
    def scheme(self):
        return "http"

    @property
    def headers(self):
        cdef size_t i
        cdef fk_header *h
        if self._headers is None:
            c = self._live()
            raw = []
            for i in range(c.req.num_headers):
                h = &c.headers[i]
                raw.append((latin1(h.name, h.name_len), latin1(h.value, h.value_len)))
            self._headers = Headers(raw)
        return self._headers

    @property
    def body(self):
        if self._body is None:
            c = self._live()
            if c.body_len == 0:
                self._body = b""
            else:
                self._body = PyBytes_FromStringAndSize(
                    c.in_.data + c.in_.off + c.body_off, <Py_ssize_t>c.body_len)
        return self._body

    cdef void _peer(self):
        cdef char host[64]
        cdef int port = 0
        c = self._conn
        if c == NULL:
            self._remote_addr, self._remote_port = "", 0
            return
        fk_conn_peer(c, host, sizeof(host), &port)
        self._remote_addr = host.decode("ascii")
        self._remote_port = port

    @property
    def remote_addr(self):
        if self._remote_addr is None:
            self._peer()
        return self._remote_addr

    @property
    def remote_port(self):
        if self._remote_port is None:
            self._peer()
        return self._remote_port

    @property
    def server_addr(self):
        return self._engine.listen_addrs[self._listener][0]

    @property
    def server_port(self):
        return self._engine.listen_addrs[self._listener][1]

    def __repr__(self):
        return f"<Request {self.method} {self.target} {self.version}>"


cdef class Stream:
    """A response body produced in pieces by an iterable."""
    cdef object iterator
    cdef object source  # the object whose close() we owe (PEP 3333)
    cdef unsigned int index, generation

    cdef void close(self):
        close = getattr(self.source, "close", None)
        self.source = None
        self.iterator = None
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("error closing a response body")


cdef class Engine:
    """One worker's loop. run() returns when the loop stopped."""

    cdef fk_loop *loop
    cdef object app
    cdef object access_log
    cdef bytes server
    cdef readonly list listen_addrs
    cdef dict streams
    cdef public int stop_requested  # 1 graceful, 2 fast; set by signal handlers
    cdef fk_response resp
    cdef object tick_callback

    def __cinit__(self):
        self.loop = NULL

    def __init__(self, app, config, listeners, slot=None, int wake_fd=-1, int parent_pid=0,
                 int max_requests=0, access_log=None, tick=None):
        cdef fk_loop_config cfg
        cdef unsigned char[:] view
        self.app = app
        self.access_log = access_log
        self.tick_callback = tick
        self.streams = {}
        self.server = (config.server_header or "").encode("latin-1")
        cfg.max_connections = config.max_connections
        cfg.max_fields = config.limit_request_fields
        cfg.limits.max_request_line = config.limit_request_line
        cfg.limits.max_field_size = config.limit_request_field_size
        cfg.max_body_size = config.max_body_size
        cfg.keepalive_ms = <uint64_t>(config.keepalive * 1000)
        cfg.header_timeout_ms = <uint64_t>(config.header_timeout * 1000)
        cfg.request_timeout_ms = <uint64_t>(config.request_timeout * 1000)
        cfg.write_timeout_ms = <uint64_t>(config.write_timeout * 1000)
        cfg.graceful_ms = <uint64_t>(config.graceful_timeout * 1000)
        cfg.max_requests = max_requests
        cfg.wake_fd = wake_fd
        cfg.notify_fd = -1
        cfg.parent_pid = parent_pid
        cfg.slot = NULL
        if slot is not None:
            view = slot
            if view.shape[0] < 24:
                raise ValueError("slot must hold at least 24 bytes")
            cfg.slot = <uint64_t *>&view[0]
        cfg.server = PyBytes_AS_STRING(self.server)
        cfg.server_len = PyBytes_GET_SIZE(self.server)
        self.loop = fk_loop_create(&cfg)
        if self.loop == NULL:
            raise MemoryError("cannot create the event loop")
        self.listen_addrs = []
        for sock in listeners:
            rc = fk_loop_add_listener(self.loop, sock.fileno())
            if rc < 0:
                raise EngineError(-rc, os.strerror(-rc))
            name = sock.getsockname()
            if isinstance(name, tuple):
                self.listen_addrs.append((name[0], name[1]))
            else:
                self.listen_addrs.append((name or "", 0))

    def __dealloc__(self):
        if self.loop != NULL:
            fk_loop_destroy(self.loop)
            self.loop = NULL

    @property
    def served(self):
        return fk_loop_served(self.loop)

    @property
    def open_connections(self):
        return fk_loop_open(self.loop)

    def stop(self, graceful=True):
        """Asks the loop to stop (safe from a signal handler: only sets a flag)."""
        self.stop_requested = max(self.stop_requested, 1 if graceful else 2)

    def run(self):
        cdef fk_event ev
        cdef int kind
        cdef fk_loop *loop = self.loop
        while True:
            with nogil:
                kind = fk_loop_next(loop, &ev)
            if kind == FK_EV_REQUEST:
                self._handle(ev.conn)
            elif kind == FK_EV_WRITABLE:
                self._resume(ev.conn)
            elif kind == FK_EV_CLOSED:
                self._drop(ev.conn)
            elif kind == FK_EV_WAKE:
                PyErr_CheckSignals()
            elif kind == FK_EV_TICK:
                if self.tick_callback is not None:
                    self.tick_callback()
            elif kind == FK_EV_DONE:
                break
            if self.stop_requested:
                fk_loop_stop(loop, 1 if self.stop_requested == 1 else 0)
        for stream in list(self.streams.values()):
            (<Stream>stream).close()
        self.streams.clear()

    # ---- requests ---------------------------------------------------------------

    cdef void _handle(self, fk_conn *c):
        cdef Request req = Request.__new__(Request)
        req._bind(self, c)
        try:
            result = self.app(req)
        except Exception:
            log.exception("error in handler for %s %s", req.method, req.target)
            result = None
            self._error(c)
        else:
            if self.access_log is not None or Py_REFCNT(req) > 1:
                req._detach()  # kept by the handler (or logged): copy before reuse
            self._answer(c, result)
        if self.access_log is not None:
            req._detach()
            try:
                self.access_log(req, self.resp.status)
            except Exception:
                log.exception("access log failed")
        req._conn = NULL

    cdef void _error(self, fk_conn *c):
        self._set_resp(500, None, ERROR_FIELDS, len(ERROR_BODY), FK_RESP_CLOSE)
        fk_loop_respond(self.loop, c, &self.resp, PyBytes_AS_STRING(ERROR_BODY),
                        PyBytes_GET_SIZE(ERROR_BODY), 1)

    cdef void _set_resp(self, int status, bytes reason, bytes fields, int64_t length,
                        unsigned flags):
        self.resp.status = status
        if reason is None:
            self.resp.reason = NULL
            self.resp.reason_len = 0
        else:
            self.resp.reason = PyBytes_AS_STRING(reason)
            self.resp.reason_len = PyBytes_GET_SIZE(reason)
        if fields is None:
            self.resp.fields = NULL
            self.resp.fields_len = 0
        else:
            self.resp.fields = PyBytes_AS_STRING(fields)
            self.resp.fields_len = PyBytes_GET_SIZE(fields)
        self.resp.content_length = length
        self.resp.flags = flags

    cdef void _answer(self, fk_conn *c, object result):
        cdef bytes body
        if type(result) is bytes:
            body = <bytes>result
            self._set_resp(200, None, None, PyBytes_GET_SIZE(body), 0)
            fk_loop_respond(self.loop, c, &self.resp, PyBytes_AS_STRING(body),
                            PyBytes_GET_SIZE(body), 1)
            return
        try:
            if isinstance(result, str):
                self._answer_bytes(c, 200, None, None, 0, (<str>result).encode("utf-8"))
            elif isinstance(result, Response):
                self._answer_response(c, result)
            elif result is None:
                self._answer_bytes(c, 200, None, None, 0, b"")
            elif isinstance(result, (bytearray, memoryview)):
                self._answer_bytes(c, 200, None, None, 0, bytes(result))
            else:
                self._start_stream(c, 200, None, None, FK_BODY_CHUNKED, 0, result)
        except Exception:
            log.exception("bad response from handler")
            self._error(c)

    cdef void _answer_bytes(self, fk_conn *c, int status, bytes reason, bytes fields,
                            unsigned flags, bytes body):
        self._set_resp(status, reason, fields, PyBytes_GET_SIZE(body), flags)
        fk_loop_respond(self.loop, c, &self.resp, PyBytes_AS_STRING(body),
                        PyBytes_GET_SIZE(body), 1)

    cdef void _answer_response(self, fk_conn *c, object response) except *:
        cdef int status = response.status
        cdef unsigned flags = 0
        cdef int64_t length = -1
        cdef bytes reason = None
        if not 200 <= status <= 999:
            raise ValueError(f"status {status!r} is not a final status code (200 to 999)")
        if response.reason is not None:
            reason = response.reason.encode("latin-1")
            if b"\r" in reason or b"\n" in reason or b"\0" in reason:
                raise ValueError(f"invalid reason phrase {response.reason!r}")
        fields, flags, length = build_fields(response.headers)
        body = response.body
        if isinstance(body, str):
            body = (<str>body).encode("utf-8")
        elif body is None:
            body = b""
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        if type(body) is bytes:
            self._answer_bytes(c, status, reason, fields, flags, body)
        else:
            if length < 0:
                length = FK_BODY_CHUNKED if c.req.minor_version == 1 else FK_BODY_UNTIL_CLOSE
            self._start_stream(c, status, reason, fields, length, flags, body)

    # ---- streamed bodies ----------------------------------------------------------

    cdef void _start_stream(self, fk_conn *c, int status, bytes reason, bytes fields,
                            int64_t length, unsigned flags, object body) except *:
        cdef Stream stream = Stream()
        if length == FK_BODY_CHUNKED and c.req.minor_version == 0:
            length = FK_BODY_UNTIL_CLOSE
        stream.source = body
        stream.iterator = iter(body)
        stream.index = c.index
        stream.generation = c.generation
        self._set_resp(status, reason, fields, length, flags)
        if fk_loop_respond(self.loop, c, &self.resp, NULL, 0, 0) < 0:
            stream.close()
            return
        self.streams[c.index] = stream
        self._pump(c, stream)

    cdef void _pump(self, fk_conn *c, Stream stream):
        """Sends chunks until the body ends or the client's buffer is full."""
        cdef int rc
        cdef bytes chunk
        while True:
            try:
                item = next(stream.iterator)
            except StopIteration:
                fk_loop_send(self.loop, c, NULL, 0, 1)
                break
            except Exception:
                log.exception("error while streaming a response body")
                self.streams.pop(stream.index, None)
                stream.close()
                fk_loop_release(self.loop, c)  # cannot end the body cleanly: close
                return
            if isinstance(item, str):
                chunk = (<str>item).encode("utf-8")
            elif type(item) is bytes:
                chunk = <bytes>item
            else:
                chunk = bytes(item)
            rc = fk_loop_send(self.loop, c, PyBytes_AS_STRING(chunk), PyBytes_GET_SIZE(chunk), 0)
            if rc == 1:
                return  # resumed on FK_EV_WRITABLE
            if rc < 0:
                break
        self.streams.pop(stream.index, None)
        stream.close()

    cdef void _resume(self, fk_conn *c):
        stream = self.streams.get(c.index)
        if stream is not None and (<Stream>stream).generation == c.generation:
            self._pump(c, <Stream>stream)

    cdef void _drop(self, fk_conn *c):
        stream = self.streams.get(c.index)
        if stream is not None and (<Stream>stream).generation == c.generation:
            del self.streams[c.index]
            (<Stream>stream).close()
        fk_loop_release(self.loop, c)


cdef tuple build_fields(object headers):
    """Validates the handler's header fields and joins them as field lines.
    Framing fields are the loop's business: Content-Length is returned as the
    length, Transfer-Encoding dropped, Connection: close turned into a flag."""
    cdef unsigned flags = 0
    cdef int64_t length = -1
    cdef list lines = []
    cdef bytes n, v
    for name, value in headers:
        n = name.encode("latin-1") if isinstance(name, str) else bytes(name)
        if not isinstance(value, (str, bytes)):
            value = str(value)
        v = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        if fk_field_check(n, len(n), v, len(v)) != 0:
            raise ValueError(f"invalid response header {name!r}: {value!r}")
        lower = n.lower()
        if lower == b"content-length":
            if not v.isdigit():
                raise ValueError(f"invalid Content-Length {value!r}")
            length = int(v)
            continue
        if lower == b"transfer-encoding":
            continue
        if lower == b"connection":
            if b"close" in v.lower():
                flags |= FK_RESP_CLOSE
            continue
        if lower == b"date":
            flags |= FK_RESP_HAS_DATE
        elif lower == b"server":
            flags |= FK_RESP_HAS_SERVER
        lines.append(n + b": " + v + b"\r\n")
    return (b"".join(lines) if lines else None), flags, length
