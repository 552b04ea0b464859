# cython: language_level=3
"""The worker engine: drives the C event loop (csrc/fk_loop.c) and calls the
handler. The loop runs without the GIL; it is taken only to build a Request,
call the handler and hand its answer back to C."""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF, PyObject
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clock, timespec *ts)
    enum:
        CLOCK_MONOTONIC

cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

cdef extern from "<malloc.h>" nogil:
    int malloc_trim(size_t pad)
    int mallopt(int param, int value)
    enum:
        M_ARENA_MAX
        M_MMAP_THRESHOLD
        M_TRIM_THRESHOLD

cdef extern from "<sys/prctl.h>" nogil:
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
              unsigned long arg5)
    enum:
        PR_SET_PDEATHSIG

cdef extern from "<errno.h>":
    int errno


from forker._csrc cimport *

import io
import logging
import os
import stat

from _thread import allocate_lock

from .app import greeting
from .errors import RequestBodyError
from .response import Response

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(object o)

log = logging.getLogger("forker.error")

# What a handler may raise and still get its 500: SystemExit and
# KeyboardInterrupt too (sys.exit() in application code), which would otherwise
# end a handler thread silently, or the worker; the worker's own signals never
# raise them (worker.py installs handlers for SIGINT and SIGTERM).
HANDLER_ERRORS = (Exception, SystemExit, KeyboardInterrupt)

cdef bytes ERROR_BODY = b"500 Internal Server Error\n"
cdef bytes ERROR_FIELDS = b"Content-Type: text/plain; charset=utf-8\r\n"


class EngineError(OSError):
    """The C loop could not be set up (errno from the failing call)."""


cdef inline str latin1(const char *p, size_t n):
    return PyUnicode_DecodeLatin1(p, <Py_ssize_t>n, NULL)


cdef str method_text(const char *p, size_t n):
    """The method as text: the common ones are constants, not decoded again."""
    if n == 3 and memcmp(p, b"GET", 3) == 0:
        return "GET"
    if n == 4 and memcmp(p, b"POST", 4) == 0:
        return "POST"
    if n == 4 and memcmp(p, b"HEAD", 4) == 0:
        return "HEAD"
    return latin1(p, n)


cdef extern from "Python.h":
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    const char *PyUnicode_1BYTE_DATA "(const char *)PyUnicode_1BYTE_DATA"(object s)

cdef enum:
    NAME_SLOTS = 128  # header names an engine keeps: 64 sets of 2, by a hash of their bytes


cdef inline bint same_name(object known, const char *p, size_t n):
    return (known is not None and PyUnicode_GET_LENGTH(known) == <Py_ssize_t>n
            and memcmp(PyUnicode_1BYTE_DATA(known), p, n) == 0)


cdef str header_name(list names, const char *p, size_t n):
    """A header name as text. The engine keeps the names it decoded, so a name
    sent again comes back as the same str, its hash computed once for every
    dict lookup to come. A name's set holds two: the one found or added last
    goes first."""
    cdef size_t slot
    if n == 0:
        return ""
    slot = ((n * 31 + <unsigned char>p[0] * 7 + <unsigned char>p[n >> 1] * 3
             + <unsigned char>p[n - 1]) % (NAME_SLOTS // 2)) * 2
    known = names[slot]
    if same_name(known, p, n):
        return <str>known
    other = names[slot + 1]
    if same_name(other, p, n):
        names[slot], names[slot + 1] = other, known
        return <str>other
    name = latin1(p, n)
    names[slot], names[slot + 1] = name, known
    return name


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


cdef Py_ssize_t BODY_BUFFER_SIZE = 64 << 10  # default body_buffer_size with threads
cdef Py_ssize_t READ_STEP = 65536  # bytes per read when the body's length is unknown


@cython.final
cdef class BodyStream:
    """The body of a request larger than body_buffer_size, which the loop did
    not wait for: read from the client as the handler asks for it. A binary
    file-like object (read, read1, readinto, readline, readlines, iteration),
    valid until the request is answered. A client that stalls, breaks the
    chunked coding, sends more than max_body_size or hangs up makes a read
    raise RequestBodyError.

    Who may read: the connection's input is the reader's from the hand-over
    until the request ends, and a request ends only after end() (csrc/fk_loop.c,
    "Who owns a slot"). end() waits for a read under way, so no read can reach
    the connection once the loop may reuse its buffer or socket; a stream kept
    past its request raises instead of reading the next request's body."""
    cdef Engine _engine
    cdef fk_conn *_conn
    cdef unsigned int _generation
    cdef unsigned int _request_id
    cdef object _lock     # held during a read, and by end()
    cdef bint _ended
    cdef bytes _ahead     # bytes readline took past its line
    cdef bint _touched    # read from: Request.body can no longer be whole
    cdef uint64_t progress_ms  # CLOCK_MONOTONIC ms of the last bytes received
    cdef readonly object length  # the Content-Length; None for a chunked body

    cdef fk_conn *_live(self) except NULL:
        c = self._conn
        if self._ended or c == NULL or c.generation != self._generation \
                or c.request_id != self._request_id or not c.body_stream:
            raise RuntimeError("request body read after the request was answered")
        return c

    cdef void end(self):
        """The request is about to end: no read may follow (waits for one
        under way)."""
        with self._lock:
            self._ended = True
            self._conn = NULL

    cdef Py_ssize_t _read_into(self, char *dst, Py_ssize_t size) except -1:
        """One read of up to size bytes into dst; 0 at the end of the body."""
        cdef fk_conn *c
        cdef fk_body_limits lim
        cdef ssize_t n = 0
        cdef uint64_t now
        with self._lock:
            c = self._live()
            self._touched = True
            fk_loop_body_limits(self._engine.loop, c, &lim)
            with nogil:
                n = fk_body_read(c, dst, <size_t>size, &lim)
        if n < 0:
            status = fk_status_http_code(<int>n)
            raise RequestBodyError(status, BODY_ERRORS.get(<int>n, "bad request body"))
        if n > 0:
            # progress, not a stuck handler: the master's timeout looks at
            # busy_since (and, without threads, at the heartbeat the loop
            # cannot write while this call runs on its thread)
            now = fk_now_ms()
            self.progress_ms = now
            if self._engine.threads == 1 and self._engine.slot != NULL \
                    and self._engine.slot[FK_SLOT_BUSY_SINCE] != 0:
                self._engine.slot[FK_SLOT_BUSY_SINCE] = now
                self._engine.slot[FK_SLOT_HEARTBEAT] = now
        return n

    cdef Py_ssize_t _unread(self):
        """Bytes of the body not handed out yet, -1 when unknown (chunked)."""
        with self._lock:
            c = self._live()
            if c.req.flags & FK_REQ_CHUNKED:
                return -1
            return <Py_ssize_t>(c.body_len - c.body_taken + c.body_rest)

    cdef bytes _take_ahead(self, Py_ssize_t size):
        cdef bytes ahead = self._ahead
        if size < 0 or size >= len(ahead):
            self._ahead = b""
            return ahead
        self._ahead = ahead[size:]
        return ahead[:size]

    cdef bytes _read_some(self, Py_ssize_t size):
        """What one read gives, at most size bytes; b"" at the end."""
        cdef bytes buf
        cdef Py_ssize_t n
        if self._ahead:
            return self._take_ahead(size)
        buf = PyBytes_FromStringAndSize(NULL, size)
        n = self._read_into(PyBytes_AS_STRING(buf), size)
        return buf if n == size else buf[:n]

    cdef bytes _read_exactly(self, Py_ssize_t size):
        """size bytes, fewer only at the end of the body; one allocation."""
        cdef bytes buf = PyBytes_FromStringAndSize(NULL, size)
        cdef Py_ssize_t got = 0, n
        while got < size:
            n = self._read_into(PyBytes_AS_STRING(buf) + got, size - got)
            if n == 0:
                return buf[:got]
            got += n
        return buf

    def read(self, size=-1):
        """Up to size bytes (all that is left when size is negative or None);
        fewer only at the end of the body."""
        cdef Py_ssize_t want = -1 if size is None else size
        cdef Py_ssize_t unread
        cdef list parts
        head = self._take_ahead(want)
        if want >= 0:
            want -= len(head)
            if want == 0:
                return head
        unread = self._unread()
        if unread >= 0 and (want < 0 or want > unread):
            want = unread
        if want >= 0:
            rest = self._read_exactly(want)
            return head + rest if head else rest
        parts = [head]
        while True:
            piece = self._read_some(READ_STEP)
            if not piece:
                return b"".join(parts)
            parts.append(piece)

    def read1(self, size=-1):
        """What one read of the socket gives (or what is already at hand)."""
        cdef Py_ssize_t want = READ_STEP if size is None or size < 0 else size
        return self._read_some(want) if want > 0 else b""

    def readinto(self, buffer):
        """Fills buffer (fewer bytes only at the end of the body); the count."""
        cdef unsigned char[::1] view = memoryview(buffer).cast("B")
        cdef Py_ssize_t got = 0, n, size = view.shape[0]
        head = self._take_ahead(size)
        got = len(head)
        if got:
            memcpy(&view[0], PyBytes_AS_STRING(head), got)
        while got < size:
            n = self._read_into(<char *>&view[got], size - got)
            if n == 0:
                break
            got += n
        return got

    def readline(self, size=-1):
        """One line, with its b"\\n"; at most size bytes when size >= 0."""
        cdef Py_ssize_t limit = -1 if size is None else size
        cdef Py_ssize_t total = 0, cut, end
        cdef list parts = []
        while limit < 0 or total < limit:
            chunk = self._read_some(8192)
            if not chunk:
                break
            end = len(chunk) if limit < 0 else min(len(chunk), limit - total)
            cut = chunk.find(b"\n", 0, end)
            cut = end if cut < 0 else cut + 1
            if cut < len(chunk):
                self._ahead = chunk[cut:] + self._ahead
            parts.append(chunk[:cut])
            total += cut
            if cut > 0 and chunk[cut - 1] == 10:
                break
        return b"".join(parts)

    def readlines(self, hint=-1):
        cdef list lines = []
        cdef Py_ssize_t total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readable(self):
        return True

    def close(self):
        pass

    def __repr__(self):
        return f"<BodyStream length={self.length!r}>"


cdef dict BODY_ERRORS = {
    FK_ERR_TIMEOUT: "the client stopped sending the request body",
    FK_ERR_BODY_TOO_LARGE: "request body larger than max_body_size",
    FK_ERR_BAD_REQUEST: "malformed chunked request body",
    FK_ERR_CLOSED: "the client closed the connection before the end of the request body",
}


@cython.freelist(16)
cdef class Request:
    """One HTTP request. Attributes are built on first access from the bytes the
    loop received, so a handler pays only for what it reads."""

    cdef fk_conn *_conn
    cdef Engine _engine
    cdef object _method, _path, _query, _target, _headers, _body, _host
    cdef object _remote_addr, _remote_port
    cdef BodyStream _stream
    cdef int _minor, _flags, _listener
    cdef unsigned int _request_id
    cdef uint64_t _queue_us

    cdef void _bind(self, Engine engine, fk_conn *conn):
        self._engine = engine
        self._conn = conn
        self._request_id = conn.request_id
        self._minor = conn.req.minor_version
        self._flags = conn.req.flags
        self._listener = conn.listener
        self._queue_us = conn.queue_us

    cdef fk_conn *_live(self) except NULL:
        if self._conn == NULL or self._conn.request_id != self._request_id:
            raise RuntimeError("request data read after the request was answered")
        return self._conn

    cdef bint _is_head(self):
        if self._conn == NULL:
            return self._method == "HEAD"
        return self._conn.req.method_len == 4 and memcmp(self._conn.req.method, b"HEAD", 4) == 0

    cdef void _end_body(self):
        """The request is about to end: its streamed body, if any, is read no
        more (see BodyStream)."""
        if self._stream is not None:
            self._stream.end()

    cdef void _detach_if_needed(self, bint always, Py_ssize_t own_refs):
        """Detaches when logging needs it or someone beyond the engine's own
        own_refs references kept the request."""
        if always or Py_REFCNT(self) > own_refs:
            self._detach()

    cdef void _detach(self):
        """Copies what is still lazy before the loop reuses the buffer."""
        if self._conn == NULL:
            return
        self.method, self.target, self.path, self.query, self.headers
        if not self._conn.body_stream:
            self.body  # a streamed body is the handler's to read, not ours
        self.host, self.remote_addr
        self._conn = NULL

    cdef object _get_method(self):
        if self._method is None:
            c = self._live()
            self._method = method_text(c.req.method, c.req.method_len)
        return self._method

    cdef object _get_target(self):
        if self._target is None:
            c = self._live()
            self._target = latin1(c.req.target, c.req.target_len)
        return self._target

    cdef object _get_path(self):
        if self._path is None:
            c = self._live()
            self._path = latin1(c.req.path, c.req.path_len)
        return self._path

    cdef object _get_query(self):
        if self._query is None:
            c = self._live()
            self._query = "" if c.req.query == NULL else latin1(c.req.query, c.req.query_len)
        return self._query

    cdef object _get_host(self):
        if self._host is None:
            c = self._live()
            self._host = False if c.req.host == NULL else latin1(c.req.host, c.req.host_len)
        return self._host or None

    @property
    def method(self):
        return self._get_method()

    @property
    def target(self):
        return self._get_target()

    @property
    def path(self):
        return self._get_path()

    @property
    def query(self):
        return self._get_query()

    @property
    def host(self):
        return self._get_host()

    @property
    def queue_time(self):
        """Seconds from accept (or, on a kept-alive connection, from the request's
        arrival) until the handler was called."""
        return self._queue_us / 1e6

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
        return self._engine.listen_schemes[self._listener]

    @property
    def headers(self):
        if self._headers is None:
            self._headers = Headers(self._fields(False))
        return self._headers

    cdef list _fields(self, bint flat):
        """The header fields decoded from the buffer: (name, value) pairs, or
        with flat, names and values in one list."""
        cdef size_t i
        cdef fk_header *h
        cdef list names = self._engine.header_names
        c = self._live()
        cdef list fields = PyList_New(c.req.num_headers * (2 if flat else 1))
        for i in range(c.req.num_headers):
            h = &c.headers[i]
            name = header_name(names, h.name, h.name_len)
            value = latin1(h.value, h.value_len)
            if h.value == c.req.host and self._host is None:
                self._host = value  # the Host field: decoded once for both
            if flat:
                Py_INCREF(name)
                PyList_SET_ITEM(fields, 2 * i, name)
                Py_INCREF(value)
                PyList_SET_ITEM(fields, 2 * i + 1, value)
            else:
                pair = (name, value)
                Py_INCREF(pair)
                PyList_SET_ITEM(fields, i, pair)
        return fields

    @property
    def body(self):
        return self._get_body()

    cdef object _get_body(self):
        if self._body is None:
            c = self._live()
            if c.body_stream:
                stream = self._get_stream()
                if stream._touched:
                    raise RuntimeError("request body already read in part through request.stream")
                self._body = stream.read()
            elif c.body_len == 0:
                self._body = b""
            else:
                self._body = PyBytes_FromStringAndSize(
                    c.in_.data + c.in_.off + c.body_off, <Py_ssize_t>c.body_len)
        return self._body

    @property
    def stream(self):
        """The body as a binary file-like object. A body larger than
        body_buffer_size is read from the client as this is read (a
        BodyStream); a smaller one was received whole (an io.BytesIO)."""
        if self._conn != NULL and self._conn.body_stream:
            return self._get_stream()
        return io.BytesIO(self._get_body())

    cdef BodyStream _get_stream(self):
        cdef BodyStream stream
        if self._stream is None:
            c = self._live()
            stream = BodyStream.__new__(BodyStream)
            stream._engine = self._engine
            stream._conn = c
            stream._generation = c.generation
            stream._request_id = c.request_id
            stream._lock = allocate_lock()
            stream._ahead = b""
            if not c.req.flags & FK_REQ_CHUNKED:
                stream.length = c.req.content_length
            self._stream = stream
        return self._stream

    cdef void _peer(self):
        cdef char host[64]
        cdef int port = 0
        c = self._conn
        if c == NULL:
            self._remote_addr, self._remote_port = "", 0
            return
        # Each request of a kept-alive connection asks again: the text is kept
        # per slot, the generation telling its connections apart.
        known = self._engine.peers.get(c.index)
        if known is not None and (<tuple>known)[0] == c.generation:
            self._remote_addr = (<tuple>known)[1]
            self._remote_port = (<tuple>known)[2]
            return
        fk_conn_peer(c, host, sizeof(host), &port)
        self._remote_addr = host.decode("ascii")
        self._remote_port = port
        self._engine.peers[c.index] = (c.generation, self._remote_addr, port)

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

    def _wsgi_parts(self):
        """What forker._wsgi builds the environ from, in one call: method,
        target, path, query, version, scheme, host, body, remote address and
        port, the header fields as one flat list of names and values, and
        whether forwarded fields may be believed of the peer (not when a PROXY
        protocol header left the balancer as the peer: LOCAL, UNKNOWN)."""
        if self._remote_addr is None:
            self._peer()
        if self._headers is None:
            fields = self._fields(True)
        else:
            fields = [item for pair in (<Headers>self._headers).raw for item in pair]
        return (self._get_method(), self._get_target(), self._get_path(), self._get_query(),
                "HTTP/1.1" if self._minor == 1 else "HTTP/1.0",
                self._engine.listen_schemes[self._listener], self._get_host(),
                self._get_stream() if self._conn.body_stream else self._get_body(),
                self._remote_addr, self._remote_port, fields, not self._conn.proxy_local)

    @property
    def server_addr(self):
        return self._engine.listen_addrs[self._listener][0]

    @property
    def server_port(self):
        return self._engine.listen_addrs[self._listener][1]

    def __repr__(self):
        return f"<Request {self.method} {self.target} {self.version}>"


cdef class Plan:
    """A handler's answer, validated and framed, ready for the loop."""
    cdef int status
    cdef bytes reason
    cdef bytes fields
    cdef unsigned flags
    cdef int64_t length
    cdef bytes body      # the whole body, or None when streamed
    cdef object source   # the iterable a streamed body comes from
    cdef int file_fd     # >= 0: source is a regular file sent with sendfile(2)
    cdef int64_t file_offset

    def __cinit__(self):
        self.file_fd = -1


@cython.final
@cython.freelist(8)
cdef class Reply:
    """What a compiled handler answers the engine's own requests with
    (forker._wsgi): Response(body, status, headers, reason) without the
    attribute lookups of a Python object, read by make_plan from its struct."""
    cdef readonly object body
    cdef readonly int status
    cdef readonly list headers
    cdef readonly object reason

    def __cinit__(self, body, int status, list headers, reason):
        self.body = body
        self.status = status
        self.headers = headers
        self.reason = reason

    def __repr__(self):
        return f"<Reply {self.status} {type(self.body).__name__}>"


cdef Plan ERROR_PLAN = Plan()
ERROR_PLAN.status = 500
ERROR_PLAN.fields = ERROR_FIELDS
ERROR_PLAN.flags = FK_RESP_CLOSE
ERROR_PLAN.length = len(ERROR_BODY)
ERROR_PLAN.body = ERROR_BODY


cdef dict BODY_ERROR_REASONS = {400: "Bad Request", 408: "Request Timeout",
                                413: "Content Too Large"}


cdef Plan failure_plan(object exc, Request req):
    """The answer when a handler raised (called in its except clause): the
    status a RequestBodyError names, the client's fault, logged without a
    traceback; else 500."""
    cdef Plan plan
    if not isinstance(exc, RequestBodyError):
        log.exception("error in handler for %s %s", req.method, req.target)
        return ERROR_PLAN
    log.info("%s %s: %s", req.method, req.target, exc)
    plan = Plan.__new__(Plan)
    plan.status = exc.status
    plan.fields = ERROR_FIELDS
    plan.flags = FK_RESP_CLOSE
    plan.body = f"{plan.status} {BODY_ERROR_REASONS.get(plan.status, '')}\n".encode()
    plan.length = len(plan.body)
    return plan


cdef inline bytes as_bytes(object item):
    if type(item) is bytes:
        return <bytes>item
    if isinstance(item, str):
        return (<str>item).encode("utf-8")
    return bytes(item)


cdef Plan make_plan(object result, int minor_version, bint head):
    """Turns what a handler returned into a Plan; raises on an invalid answer."""
    cdef Plan plan = Plan.__new__(Plan)
    plan.status = 200
    plan.length = -1
    body = result
    if type(result) is Reply:
        answer(plan, (<Reply>result).status, (<Reply>result).reason, (<Reply>result).headers)
        body = (<Reply>result).body
    elif isinstance(result, Response):
        answer(plan, result.status, result.reason, result.headers)
        body = result.body
    if body is None:
        body = b""
    if isinstance(body, (bytes, str, bytearray, memoryview)):
        plan.body = as_bytes(body)
        if not head or len(plan.body) != 0:
            plan.length = len(plan.body)
        elif plan.length < 0:
            # HEAD answered without a body (Werkzeug's ()) nor a Content-Length:
            # the GET's length is unknown, so none is stated (a handler's own
            # Content-Length on such an answer stands: it is the GET's)
            plan.length = FK_BODY_UNSTATED
        return plan
    plan.source = body
    if not find_file(plan, body) and plan.length < 0:
        # HEAD of a body of unknown length: neither a length nor chunked (as gunicorn)
        plan.length = (FK_BODY_UNSTATED if head else
                       FK_BODY_CHUNKED if minor_version == 1 else FK_BODY_UNTIL_CLOSE)
    return plan


cdef void answer(Plan plan, int status, object reason, object headers) except *:
    """The status line and header fields of a Response or Reply into plan."""
    plan.status = status
    if not 200 <= status <= 599:  # RFC 9110 §15: 600 and above are invalid
        raise ValueError(f"status {status!r} is not a final status code (200 to 599)")
    if reason is not None:
        plan.reason = reason.encode("latin-1")
        if b"\r" in plan.reason or b"\n" in plan.reason or b"\0" in plan.reason:
            raise ValueError(f"invalid reason phrase {reason!r}")
    if headers:
        build_fields(plan, headers)


cdef bint find_file(Plan plan, object body):
    """Whether body is a regular file (a file object, or a WSGI file wrapper's
    filelike) that sendfile(2) can send; sets the plan's file fields if so."""
    cdef int64_t size
    fileobj = getattr(body, "filelike", None) if type(body).__name__ == "FileWrapper" else body
    if not isinstance(fileobj, (io.BufferedReader, io.FileIO)):
        return False
    try:
        fd = fileobj.fileno()
        info = os.fstat(fd)
        offset = fileobj.tell()
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(info.st_mode) or offset > info.st_size:
        return False
    size = info.st_size - offset
    if 0 <= plan.length < size:
        size = plan.length  # the application's Content-Length limits the file
    plan.file_fd = fd
    plan.file_offset = offset
    plan.length = size
    return True


cdef class Stream:
    """A response body produced in pieces by an iterable, pumped by the loop,
    or a file the loop sends."""
    cdef object iterator
    cdef object source  # the object whose close() we owe (PEP 3333)
    cdef unsigned int generation  # of the slot, and
    cdef unsigned int request_id  # of the request on it, that this answers
    cdef Request req    # whose streamed body ends with the response
    cdef bint logged    # the access log line is written when the body ends
    cdef bint is_file   # sent by the loop with sendfile(2)
    cdef int status
    cdef Py_ssize_t sent
    cdef double started

    cdef void close(self):
        close_body(self.source)
        self.source = None
        self.iterator = None
        if self.req is not None:
            self.req._end_body()


cdef void close_body(object source):
    close = getattr(source, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("error closing a response body")


cdef class Job:
    """A request handed to a handler thread, and what came back of it."""
    cdef fk_conn *conn
    cdef Request req
    cdef bint cancelled  # the client went away; release the slot when the thread is done
    cdef Py_ssize_t sent
    cdef double started
    cdef int status
    cdef uint64_t started_ms  # when the loop handed it over (CLOCK_MONOTONIC ms)
    cdef bint paused     # the client's buffer is full: the window is held until writable
    cdef object window   # semaphore bounding the chunks in flight


# kinds of completions posted by handler threads
cdef enum:
    DONE_PLAN = 0   # the answer (complete, or the head of a streamed body)
    DONE_CHUNK = 1  # a piece of a streamed body
    DONE_END = 2    # the streamed body ended
    DONE_ABORT = 3  # the streamed body failed: close the connection

STREAM_WINDOW = 8


def standard_reason(int status):
    """The reason phrase the engine writes for status ("Unknown" when unregistered)."""
    cdef size_t n = 0
    cdef const char *text = fk_status_reason(status, &n)
    return text[:n].decode("latin-1")


# -- the C core's configuration ------------------------------------------------------
#
# fk_loop_config is declared once, in csrc/fk_loop.h (FK_LOOP_CONFIG_FIELDS),
# which also makes the table below of its fields: name, place, size and kind.
# loop_config() fills every field through that table, from the option of
# forker/config.py whose c_field names it, or from the Engine's own values;
# nothing here names a field but the Engine's values (docs/ARCHITECTURE.md).

cdef extern from *:
    """
    #include <stddef.h>
    #include "fk_loop.h"
    typedef struct {
        const char *name;
        size_t offset;
        size_t size;
        int kind;
    } fk_cfg_field;
    #define FK_CFG_ENTRY(type, name, kind) {#name, offsetof(fk_loop_config, name), sizeof(type), kind},
    static const fk_cfg_field fk_cfg_fields[] = {FK_LOOP_CONFIG_FIELDS(FK_CFG_ENTRY)};
    #undef FK_CFG_ENTRY
    #define FK_CFG_NFIELDS (sizeof(fk_cfg_fields) / sizeof(fk_cfg_fields[0]))
    """
    ctypedef struct fk_cfg_field:
        const char *name
        size_t offset
        size_t size
        int kind
    const fk_cfg_field fk_cfg_fields[]
    size_t FK_CFG_NFIELDS

cdef unsigned char CFG_UNSET = 0xA5  # what a field nothing filled holds (never a plausible value)


def loop_config_fields():
    """The fields of fk_loop_config in order, as (name, kind), kind one of
    "count", "u64", "ms", "int", "text", "len", "addr"."""
    kinds = {FK_CFG_COUNT: "count", FK_CFG_U64: "u64", FK_CFG_MS: "ms", FK_CFG_INT: "int",
             FK_CFG_TEXT: "text", FK_CFG_LEN: "len", FK_CFG_ADDR: "addr"}
    return [(fk_cfg_fields[i].name.decode("ascii"), kinds[fk_cfg_fields[i].kind])
            for i in range(FK_CFG_NFIELDS)]


cdef object cfg_integer(object value, const fk_cfg_field *f, str origin):
    """value as the integer the field holds, checked against its C type."""
    cdef str name = f.name.decode("ascii")
    if f.kind == FK_CFG_MS:
        # seconds to milliseconds, rounded up (0.0004 s is 1 ms, not 0: "none");
        # the rounding to 6 places keeps 1.1 s at 1100 ms, not 1101
        from math import ceil
        number = ceil(round(float(value) * 1000, 6))
    else:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{origin}: {value!r} is not an integer (fk_loop_config.{name})")
        number = int(value)
    bits = 8 * f.size
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if f.kind == FK_CFG_INT else (0, (1 << bits) - 1)
    if not lo <= number <= hi:
        raise ValueError(f"{origin}: {value!r} does not fit fk_loop_config.{name} "
                         f"({bits}-bit {'signed' if f.kind == FK_CFG_INT else 'unsigned'})")
    return number


cdef void cfg_store(char *field, const fk_cfg_field *f, object number) except *:
    cdef uint64_t u
    cdef int64_t i
    cdef unsigned int u32
    cdef int i32
    if f.kind == FK_CFG_INT and f.size == 4:
        i32 = number
        memcpy(field, &i32, 4)
    elif f.kind == FK_CFG_INT and f.size == 8:
        i = number
        memcpy(field, &i, 8)
    elif f.size == 8:
        u = number
        memcpy(field, &u, 8)
    elif f.size == 4:
        u32 = number
        memcpy(field, &u32, 4)
    else:
        raise ValueError(f"fk_loop_config.{f.name.decode('ascii')}: unsupported size {f.size}")


cdef object cfg_load(const char *field, const fk_cfg_field *f):
    cdef uint64_t u = 0
    cdef int64_t i = 0
    cdef unsigned int u32 = 0
    cdef int i32 = 0
    if f.kind == FK_CFG_INT and f.size == 4:
        memcpy(&i32, field, 4)
        return i32
    if f.kind == FK_CFG_INT and f.size == 8:
        memcpy(&i, field, 8)
        return i
    if f.size == 8:
        memcpy(&u, field, 8)
        return u
    memcpy(&u32, field, 4)
    return u32


@cython.final
cdef class LoopConfig:
    """An fk_loop_config and everything its pointers point to: the bytes of its
    text fields and the buffers of its address fields, kept as long as this
    object lives (the Engine keeps it until its loop is destroyed)."""

    cdef fk_loop_config cfg
    cdef list keep

    def __cinit__(self):
        self.keep = []
        memset(&self.cfg, CFG_UNSET, sizeof(self.cfg))


cdef LoopConfig loop_config(object config, dict engine):
    """The loop's configuration: each field of fk_loop_config from the option of
    config (forker.config.OPTIONS) whose c_field names it, or from engine (field
    name -> value, for what the Engine decides). Raises ValueError naming the
    field when a field is set by nothing or by both, when a c_field names no
    field, or when a value does not fit its field."""
    from .config import OPTIONS
    cdef LoopConfig built = LoopConfig()
    cdef const fk_cfg_field *f
    cdef const fk_cfg_field *length
    cdef char *base = <char *>&built.cfg
    cdef const unsigned char[::1] view
    cdef const char *p
    cdef size_t i
    index = {fk_cfg_fields[i].name.decode("ascii"): i for i in range(FK_CFG_NFIELDS)}
    sources = {}  # field -> (where the value comes from, value)
    for option in OPTIONS:
        field = option.c_field
        if field is None:
            continue
        if field not in index:
            raise ValueError(f"{option.name}: c_field {field!r} is no field of fk_loop_config "
                             "(csrc/fk_loop.h)")
        value = getattr(config, option.name)
        if value is not None or fk_cfg_fields[index[field]].kind == FK_CFG_TEXT:
            sources[field] = (option.name, value)  # None: the Engine decides
    for field, value in engine.items():
        if field not in index:
            raise ValueError(f"the Engine sets {field!r}, no field of fk_loop_config")
        if field in sources:
            raise ValueError(f"fk_loop_config.{field}: set both by option {sources[field][0]} "
                             "and by the Engine")
        sources[field] = ("the Engine's " + field, value)
    for i in range(FK_CFG_NFIELDS):
        f = &fk_cfg_fields[i]
        name = f.name.decode("ascii")
        if f.kind == FK_CFG_LEN:
            continue  # with its text, before it
        if name not in sources:
            raise ValueError(f"fk_loop_config.{name}: no option of forker/config.py has "
                             f"c_field={name!r}, and the Engine does not set it")
        origin, value = sources.pop(name)
        if f.kind == FK_CFG_TEXT:
            length = &fk_cfg_fields[i + 1] if i + 1 < FK_CFG_NFIELDS else NULL
            if length == NULL or length.kind != FK_CFG_LEN:
                raise ValueError(f"fk_loop_config.{name}: a text field must be followed by "
                                 "its length (FK_CFG_LEN)")
            if isinstance(value, str):
                try:
                    value = value.encode("latin-1")
                except UnicodeEncodeError:
                    raise ValueError(f"{origin}: {value!r} is not Latin-1 text") from None
            if value is not None and type(value) is not bytes:
                raise ValueError(f"{origin}: expected text, got {value!r}")
            p = NULL if value is None else PyBytes_AS_STRING(value)
            memcpy(base + f.offset, &p, sizeof(p))
            cfg_store(base + length.offset, length, 0 if value is None else len(value))
            built.keep.append(value)
        elif f.kind == FK_CFG_ADDR:
            p = NULL
            if value is not None:
                view = value
                if view.shape[0] == 0:
                    raise ValueError(f"{origin}: an empty buffer for fk_loop_config.{name}")
                p = <const char *>&view[0]
                built.keep.append(value)
            memcpy(base + f.offset, &p, sizeof(p))
        else:
            if value is None or isinstance(value, (str, bytes)):
                raise ValueError(f"{origin}: expected a number for fk_loop_config.{name}, "
                                 f"got {value!r}")
            cfg_store(base + f.offset, f, cfg_integer(value, f, origin))
    if sources:  # only length fields are left: their text sets them
        raise ValueError(f"fk_loop_config.{next(iter(sources))}: set with its text field, "
                         "not on its own")
    return built


cdef dict loop_config_values(const fk_loop_config *cfg):
    """Every field of cfg by name: integers, bytes (None for NULL) for text,
    and the address (0 for NULL) of address fields."""
    cdef const fk_cfg_field *f
    cdef const char *base = <const char *>cfg
    cdef const char *p
    cdef size_t i, n
    values = {}
    for i in range(FK_CFG_NFIELDS):
        f = &fk_cfg_fields[i]
        name = f.name.decode("ascii")
        if f.kind == FK_CFG_TEXT:
            memcpy(&p, base + f.offset, sizeof(p))
            n = cfg_load(base + fk_cfg_fields[i + 1].offset, &fk_cfg_fields[i + 1])
            values[name] = None if p == NULL else p[:n]
        elif f.kind == FK_CFG_ADDR:
            memcpy(&p, base + f.offset, sizeof(p))
            values[name] = <size_t>p
        else:
            values[name] = cfg_load(base + f.offset, f)
    return values


cdef class Engine:
    """One worker's loop. run() returns when the loop stopped."""

    cdef fk_loop *loop
    cdef fk_tls_ctx *tls_ctx
    cdef list tls_keep     # what tls_ctx needs alive (a Python ssl.SSLContext)
    cdef object app
    cdef object access_log
    cdef LoopConfig config  # what the loop's configuration points to, kept while it runs
    cdef readonly list listen_addrs
    cdef readonly list listen_schemes  # "http" or "https", per listener
    cdef dict streams      # slot index -> Stream (loop-thread streaming)
    cdef dict peers        # slot index -> (generation, remote address, port)
    cdef list header_names # NAME_SLOTS header names seen lately (header_name)
    cdef dict jobs         # slot index -> Job (handler threads)
    cdef public int stop_requested  # 1 graceful, 2 fast; set by signal handlers
    cdef fk_response resp
    cdef object tick_callback
    cdef int threads
    cdef int notify_fd
    cdef object job_queue, completions, threads_list
    cdef bint threads_left  # handler threads still ran when the loop stopped
    cdef bint notified
    cdef uint64_t *slot
    cdef object slot_view  # keeps the shared memory the slot points into
    cdef uint64_t served_at_tick  # requests served as of the last tick
    cdef bint trim_due     # requests were served since the C heap was last trimmed

    def __cinit__(self):
        self.loop = NULL
        self.peers = {}
        self.header_names = [None] * NAME_SLOTS
        self.tls_ctx = NULL
        self.tls_keep = []
        self.notify_fd = -1

    def __init__(self, app, config, listeners, slot=None, int wake_fd=-1, int parent_pid=0,
                 max_requests=0, access_log=None, tick=None, int threads=1,
                 schemes=None):
        cdef unsigned char[:] view
        cdef fk_net *nets
        self.app = app
        self.access_log = access_log
        self.tick_callback = tick
        self.streams = {}
        self.jobs = {}
        self.threads = threads
        # What the options table does not give fk_loop_config itself (loop_config()).
        engine = {"max_requests": max_requests, "wake_fd": wake_fd, "parent_pid": parent_pid,
                  "threaded": threads > 1, "notify_fd": -1, "slot": None,
                  "constant_body": None, "proxy_allow": None, "proxy_allow_len": 0,
                  "shared_listeners": not config.reuse_port}
        if config.body_buffer_size is None:  # stream large bodies only where a thread may wait
            engine["body_buffer_size"] = BODY_BUFFER_SIZE if threads > 1 else 0
        if slot is not None:
            view = slot
            if view.shape[0] < FK_SLOT_WORDS * 8:
                raise ValueError(f"slot must hold at least {FK_SLOT_WORDS * 8} bytes")
            self.slot = <uint64_t *>&view[0]
            self.slot_view = slot
            engine["slot"] = slot
        if app is greeting and access_log is None:
            # A constant answer needs no Python call: the loop gives it itself,
            # as nginx does a `return` (nothing to log, no handler to time).
            engine["constant_body"] = greeting(None)
        if config.proxy_protocol:
            allowed = proxy_networks(config.forwarded_allow_ips)
            packed = bytearray(sizeof(fk_net) * (len(allowed) or 1))
            nets = <fk_net *><char *>packed
            for i, (family, bits, address) in enumerate(allowed):
                nets[i].family = family
                nets[i].bits = bits
                memcpy(nets[i].addr, <const char *>address, len(address))
            engine["proxy_allow"] = packed
            engine["proxy_allow_len"] = len(allowed)
        if threads > 1:
            self.notify_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            engine["notify_fd"] = self.notify_fd
        self.config = loop_config(config, engine)
        # Freed memory stays in the heap while requests come (glibc would give
        # the heap's top back, then fault it in again, on every large request):
        # the thresholds glibc's own adaptation ends at, fixed from the start.
        # _tick_trim gives it all back once the worker is quiet.
        mallopt(M_MMAP_THRESHOLD, 32 << 20)
        mallopt(M_TRIM_THRESHOLD, 64 << 20)
        self.loop = fk_loop_create(&self.config.cfg)
        if self.loop == NULL:
            raise MemoryError("cannot create the event loop")
        self.listen_addrs = []
        self.listen_schemes = []
        listeners = list(listeners)
        schemes = list(schemes) if schemes is not None else ["http"] * len(listeners)
        if len(schemes) != len(listeners) or not set(schemes) <= {"http", "https"}:
            raise ValueError(f"schemes: expected 'http' or 'https' for each of the "
                             f"{len(listeners)} listeners, got {schemes!r}")
        if "https" in schemes:
            self.tls_ctx = tls_context(config, self.tls_keep)
        for sock, scheme in zip(listeners, schemes):
            if scheme == "https":
                rc = fk_loop_add_tls_listener(self.loop, sock.fileno(), self.tls_ctx)
            else:
                rc = fk_loop_add_listener(self.loop, sock.fileno())
            if rc < 0:
                raise EngineError(-rc, os.strerror(-rc))
            name = sock.getsockname()
            if isinstance(name, tuple):
                self.listen_addrs.append((name[0], name[1]))
            else:
                self.listen_addrs.append((name or "", 0))
            self.listen_schemes.append(scheme)

    def __dealloc__(self):
        if self.threads_left:
            # A handler thread that outlived the loop may still read a slot: the
            # memory goes with the process, which is exiting, rather than now.
            Py_INCREF(self.config)  # and so does what the loop's configuration points to
            return
        if self.loop != NULL:
            fk_loop_destroy(self.loop)
            self.loop = NULL
        if self.tls_ctx != NULL:  # after the loop: its connections used it
            fk_tls_ctx_destroy(self.tls_ctx)
            self.tls_ctx = NULL
        if self.notify_fd >= 0:
            os.close(self.notify_fd)
            self.notify_fd = -1

    @property
    def served(self):
        return fk_loop_served(self.loop)

    @property
    def open_connections(self):
        return fk_loop_open(self.loop)

    def loop_config(self):
        """The loop's own copy of its fk_loop_config, every field by name (for
        tests: text fields as bytes, address fields as integers)."""
        return loop_config_values(fk_loop_config_of(self.loop))

    def stop(self, graceful=True):
        """Asks the loop to stop (safe from a signal handler: only sets a flag)."""
        self.stop_requested = max(self.stop_requested, 1 if graceful else 2)

    def run(self):
        cdef fk_event ev
        cdef int kind
        cdef fk_loop *loop = self.loop
        if self.threads > 1:
            self._start_threads()
        try:
            while True:
                with nogil:
                    kind = fk_loop_next(loop, &ev)
                if kind == FK_EV_REQUEST:
                    if self.threads > 1:
                        self._submit(ev.conn)
                    else:
                        self._handle(ev.conn)
                elif kind == FK_EV_NOTIFY:
                    self._collect()
                elif kind == FK_EV_WRITABLE:
                    self._writable(ev.conn)
                elif kind == FK_EV_CLOSED:
                    self._closed(ev.conn)
                elif kind == FK_EV_WAKE:
                    PyErr_CheckSignals()
                elif kind == FK_EV_TICK:
                    if self.tick_callback is not None:
                        self.tick_callback()
                    if self.threads > 1:
                        self._mark_busy()  # a body's progress moves busy_since on
                    self._tick_trim()
                elif kind == FK_EV_DONE:
                    break
                if self.stop_requested:
                    fk_loop_stop(loop, 1 if self.stop_requested == 1 else 0)
        finally:
            for stream in list(self.streams.values()):
                (<Stream>stream).close()
            self.streams.clear()
            self._stop_threads()

    cdef void _tick_trim(self):
        """After a second without requests that followed some work, gives the C
        heap's free pages back (malloc_trim): the buffers of a burst of uploads or
        of many connections leave holes that glibc keeps resident otherwise. Never
        while requests keep coming: then those pages are about to be used again."""
        cdef uint64_t served = fk_loop_served(self.loop)
        if served != self.served_at_tick:
            self.served_at_tick = served
            self.trim_due = True
        elif self.trim_due:
            self.trim_due = False
            with nogil:
                malloc_trim(0)

    # ---- requests on the loop thread ----------------------------------------------

    cdef void _handle(self, fk_conn *c):
        cdef Request req = Request.__new__(Request)
        cdef Plan plan
        cdef bytes body
        cdef double started = 0.0
        req._bind(self, c)
        if self.access_log is not None:
            started = monotonic()
        try:
            result = self.app(req)
        except HANDLER_ERRORS as exc:
            plan = failure_plan(exc, req)
        else:
            if type(result) is bytes:  # the fast path: no Plan
                body = <bytes>result
                req._detach_if_needed(self.access_log is not None, 1)
                req._end_body()
                self._set_resp(200, None, None, 0,
                               PyBytes_GET_SIZE(body) if PyBytes_GET_SIZE(body) != 0
                               or not req._is_head() else FK_BODY_UNSTATED)
                fk_loop_respond(self.loop, c, &self.resp, PyBytes_AS_STRING(body),
                                PyBytes_GET_SIZE(body), 1)
                if self.access_log is not None:
                    self._log(req, 200, 0 if req._is_head() else PyBytes_GET_SIZE(body), started)
                req._conn = NULL
                return
            try:
                plan = make_plan(result, c.req.minor_version, req._is_head())
            except HANDLER_ERRORS:
                log.exception("invalid response from handler for %s %s", req.method, req.target)
                close_body(result)
                plan = ERROR_PLAN
        req._detach_if_needed(self.access_log is not None, 1)
        stream = self._deliver(c, plan, None, req, started)
        if self.access_log is not None and stream is None:
            self._log(req, plan.status, plan_sent(plan, req), started)
        req._conn = NULL

    cdef void _log(self, Request req, int status, Py_ssize_t sent, double started):
        """Writes the access log line of a finished response."""
        try:
            self.access_log(req, status, sent, monotonic() - started)
        except Exception:
            log.exception("access log failed")

    cdef void _set_resp(self, int status, bytes reason, bytes fields, unsigned flags,
                        int64_t length):
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

    cdef object _deliver(self, fk_conn *c, Plan plan, Job job, Request req, double started):
        """Answers c with plan; a streamed body is pumped here (no job; the
        Stream is returned, and writes the log line when it ends) or fed by
        the job's thread."""
        cdef Stream stream
        self._set_resp(plan.status, plan.reason, plan.fields, plan.flags, plan.length)
        if plan.body is not None:
            req._end_body()
            fk_loop_respond(self.loop, c, &self.resp, PyBytes_AS_STRING(plan.body),
                            PyBytes_GET_SIZE(plan.body), 1)
            return None
        if fk_loop_respond(self.loop, c, &self.resp, NULL, 0, 0) < 0:
            if job is None:
                close_body(plan.source)
            return None
        stream = Stream()
        stream.source = plan.source
        stream.generation = c.generation
        stream.request_id = c.request_id
        stream.req = req
        stream.logged = self.access_log is not None  # (a job's chunks are logged by _collect)
        stream.status = plan.status
        stream.started = started
        if plan.file_fd >= 0:
            return self._send_file(c, plan, stream)
        if job is not None:
            return None  # the thread sends the chunks
        try:
            stream.iterator = iter(plan.source)
        except HANDLER_ERRORS:
            log.exception("response body is not iterable")
            stream.close()
            fk_loop_release(self.loop, c)
            return None
        self.streams[c.index] = stream
        self._pump(c, stream)
        return stream

    cdef object _send_file(self, fk_conn *c, Plan plan, Stream stream):
        stream.is_file = True
        stream.sent = plan.length
        stream.req._end_body()  # the file is the answer: the body is read no more
        rc = fk_loop_send_file(self.loop, c, plan.file_fd, plan.file_offset, plan.length)
        if rc == 0:
            self.streams[c.index] = stream
            return stream
        stream.sent = 0
        stream.close()  # done at once (HEAD, empty) or the connection is gone
        return None

    cdef Stream _stream_of(self, fk_conn *c):
        """The Stream of c's current response, if Python streams it."""
        item = self.streams.get(c.index)
        if item is None:
            return None
        stream = <Stream>item
        if stream.generation != c.generation or stream.request_id != c.request_id:
            return None
        return stream

    cdef void _end_stream(self, fk_conn *c, Stream stream):
        """The body of c's streamed response was all sent: close its source,
        end the request, write the log line."""
        del self.streams[c.index]
        stream.close()
        fk_loop_send(self.loop, c, NULL, 0, 1)
        if stream.logged:
            self._log(stream.req, stream.status, stream.sent, stream.started)

    cdef void _pump(self, fk_conn *c, Stream stream):
        """Sends chunks until the body ends or the client's buffer is full."""
        cdef int rc
        cdef bytes chunk
        while True:
            try:
                chunk = as_bytes(next(stream.iterator))
            except StopIteration:
                self._end_stream(c, stream)
                return
            except HANDLER_ERRORS:
                log.exception("error while streaming a response body")
                self.streams.pop(c.index, None)
                stream.close()
                fk_loop_release(self.loop, c)  # the body cannot end cleanly: close
                return
            stream.sent += PyBytes_GET_SIZE(chunk)
            rc = fk_loop_send(self.loop, c, PyBytes_AS_STRING(chunk), PyBytes_GET_SIZE(chunk), 0)
            if rc == 1:
                return  # resumed on FK_EV_WRITABLE
            if rc < 0:
                break  # closed: FK_EV_CLOSED follows, and finds no stream
        self.streams.pop(c.index, None)
        stream.close()
        if stream.logged:
            self._log(stream.req, stream.status, stream.sent, stream.started)

    cdef void _writable(self, fk_conn *c):
        cdef Stream stream = self._stream_of(c)
        if stream is not None:
            if not stream.is_file:
                self._pump(c, stream)
            elif c.file_left == 0:  # the loop sent the whole file
                self._end_stream(c, stream)
            return
        job = self.jobs.get(c.index)
        if job is not None and (<Job>job).paused:
            (<Job>job).paused = False
            (<Job>job).window.release()

    cdef void _closed(self, fk_conn *c):
        cdef Stream stream = self._stream_of(c)
        if stream is not None:
            del self.streams[c.index]
            stream.close()
        job = self.jobs.get(c.index)
        if job is not None:
            # The thread may still read the request: the slot is released when
            # its last completion arrives.
            (<Job>job).cancelled = True
            if (<Job>job).window is not None:
                (<Job>job).window.release()  # unblock a thread feeding a stream
            return
        fk_loop_release(self.loop, c)

    # ---- handler threads ----------------------------------------------------------

    cdef void _start_threads(self):
        import collections
        import threading
        from _queue import SimpleQueue  # the C type itself: module queue costs 90 KiB
        # One malloc arena for the process: glibc gives each thread an arena of
        # its own otherwise, and malloc_trim cannot shrink those arenas' tops, so
        # a burst of uploads read by handler threads stayed resident.
        mallopt(M_ARENA_MAX, 1)
        self.job_queue = SimpleQueue()
        self.completions = collections.deque()
        self.threads_list = []
        for i in range(self.threads):
            thread = threading.Thread(target=self._work, name=f"forker-handler-{i}", daemon=True)
            thread.start()
            self.threads_list.append(thread)

    cdef void _stop_threads(self):
        if not self.threads_list:
            return
        for _ in self.threads_list:
            self.job_queue.put(None)
        for thread in self.threads_list:
            thread.join(0.1)
            if thread.is_alive():
                self.threads_left = True
        self.threads_list = []

    cdef void _submit(self, fk_conn *c):
        cdef Job job = Job()
        cdef Request req = Request.__new__(Request)
        req._bind(self, c)
        job.conn = c
        job.req = req
        if self.access_log is not None:
            job.started = monotonic()
        c.py_owned = 1  # the slot outlives a client that leaves while the thread runs
        job.started_ms = fk_now_ms()
        self.jobs[c.index] = job
        if len(self.jobs) == 1:
            self._mark_busy()
        self.job_queue.put(job)

    cdef void _mark_busy(self):
        """Threads: the shared slot shows the oldest handler call still running
        without progress (since when, and which request), so that the master's
        timeout catches a stuck thread although the loop itself keeps turning.
        A call receiving its request body counts from the last bytes received:
        a slow but steady upload is not a stuck handler."""
        cdef Job oldest = None
        cdef Job job
        cdef uint64_t since, oldest_since = 0
        cdef bytes text
        cdef char *dest
        if self.slot == NULL:
            return
        for item in self.jobs.values():
            job = <Job>item
            since = job.started_ms
            stream = job.req._stream
            if stream is not None and (<BodyStream>stream).progress_ms > since:
                since = (<BodyStream>stream).progress_ms
            if oldest is None or since < oldest_since:
                oldest, oldest_since = job, since
        if oldest is None:
            self.slot[FK_SLOT_BUSY_SINCE] = 0
            return
        if self.slot[FK_SLOT_BUSY_SINCE] == oldest_since:
            return
        try:
            text = f"{oldest.req.method} {oldest.req.target}".encode("latin-1")
        except Exception:
            text = b""
        text = text[:FK_SLOT_TEXT_SIZE - 1]
        dest = <char *>&self.slot[FK_SLOT_TEXT]
        memset(dest, 0, FK_SLOT_TEXT_SIZE)
        memcpy(dest, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
        self.slot[FK_SLOT_BUSY_SINCE] = oldest_since

    def _work(self):
        """A handler thread: runs handlers and posts what they return. The last
        thing it posts for a job (the answer, or the end of a streamed body)
        follows the end of the request's body (Request._end_body): the loop
        may reuse the connection's input as soon as it has that post."""
        cdef Job job
        cdef Plan plan
        cdef Request req
        while True:
            item = self.job_queue.get()
            if item is None:
                return
            job = <Job>item
            req = job.req
            if job.cancelled:  # the client left before a thread was free for it
                req._end_body()
                self._post(DONE_ABORT, job, None)
                item = job = req = None
                continue
            result = None
            try:
                result = self.app(req)
                plan = make_plan(result, req._minor, req._is_head())
            except HANDLER_ERRORS as exc:
                close_body(result)
                plan = failure_plan(exc, req)
            result = None
            req._detach_if_needed(self.access_log is not None, 2)  # job.req and req
            if plan.source is not None and plan.file_fd < 0:
                job.window = _semaphore(STREAM_WINDOW)  # before the plan is posted
                self._post(DONE_PLAN, job, plan)
                self._feed(job, plan.source)
            else:
                req._end_body()
                self._post(DONE_PLAN, job, plan)
            # Not held while waiting for the next job: a request's body (1 MB
            # for an upload) would stay alive per idle thread until then.
            item = job = req = plan = None

    cdef void _feed(self, Job job, object source):
        """Iterates a streamed body on the handler thread, a window at a time,
        then closes it and ends the request's body before the last post."""
        cdef int last = DONE_END
        try:
            for item in source:
                chunk = as_bytes(item)
                job.window.acquire()
                if job.cancelled:
                    break
                self._post(DONE_CHUNK, job, chunk)
        except HANDLER_ERRORS:
            log.exception("error while streaming a response body")
            last = DONE_ABORT
        close_body(source)
        job.req._end_body()
        self._post(last, job, None)

    cdef void _post(self, int kind, Job job, object payload):
        self.completions.append((kind, job, payload))
        if not self.notified:
            self.notified = True
            os.eventfd_write(self.notify_fd, 1)

    cdef void _collect(self):
        """Delivers what handler threads finished (FK_EV_NOTIFY)."""
        cdef Job job
        cdef int kind, rc
        cdef fk_conn *c
        cdef bytes chunk
        self.notified = False
        while self.completions:
            kind, item, payload = self.completions.popleft()
            job = <Job>item
            c = job.conn
            final = kind != DONE_CHUNK and not (kind == DONE_PLAN and (<Plan>payload).source is not None
                                                and (<Plan>payload).file_fd < 0)
            if job.cancelled:
                if final:
                    self.jobs.pop(c.index, None)
                    fk_loop_release(self.loop, c)
                continue
            if kind == DONE_PLAN:
                job.status = (<Plan>payload).status
                stream = self._deliver(c, <Plan>payload, job, job.req, job.started)
                if final:
                    self.jobs.pop(c.index, None)
                    if self.access_log is not None and stream is None:
                        self._log(job.req, job.status, plan_sent(<Plan>payload, job.req),
                                  job.started)
            elif kind == DONE_CHUNK:
                chunk = <bytes>payload
                job.sent += PyBytes_GET_SIZE(chunk)
                rc = fk_loop_send(self.loop, c, PyBytes_AS_STRING(chunk), PyBytes_GET_SIZE(chunk), 0)
                if rc == 1:
                    job.paused = True
                else:
                    job.window.release()
            elif kind == DONE_END:
                self.jobs.pop(c.index, None)
                fk_loop_send(self.loop, c, NULL, 0, 1)
                if self.access_log is not None:
                    self._log(job.req, job.status, job.sent, job.started)
            else:
                self.jobs.pop(c.index, None)
                fk_loop_release(self.loop, c)
        self._mark_busy()


def proxy_networks(items):
    """The allow-list of the PROXY protocol, from forwarded_allow_ips: a list of
    (address family, prefix length, packed network address); '*' allows every
    IPv4 and IPv6 peer. Unix-socket peers are always allowed (by the loop)."""
    import ipaddress
    import socket

    nets = []
    for item in items:
        if item == "*":
            nets.append((socket.AF_INET, 0, bytes(4)))
            nets.append((socket.AF_INET6, 0, bytes(16)))
            continue
        net = ipaddress.ip_network(item, strict=False)
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        nets.append((family, net.prefixlen, net.network_address.packed))
    return nets


def trim_memory():
    """Gives the free pages of the C heap back to the system (malloc_trim(0));
    True when some were."""
    cdef int released
    with nogil:
        released = malloc_trim(0)
    return released != 0


def set_parent_death_signal(int signum):
    """Have the kernel send signum to this process when its parent thread dies."""
    if prctl(PR_SET_PDEATHSIG, <unsigned long>signum, 0, 0, 0) != 0:
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def tls_library():
    """The version of the OpenSSL that Python's ssl module loaded, which the
    loop's TLS uses; raises OSError when there is none usable."""
    cdef char err[512]
    cdef bytes path = None
    import ssl  # loads OpenSSL: forker only looks it up
    import _ssl
    if getattr(_ssl, "__file__", None):
        path = os.fsencode(_ssl.__file__)
    if fk_tls_load(NULL if path is None else PyBytes_AS_STRING(path), err, sizeof(err)) != 0:
        raise OSError(err.decode("utf-8", "replace"))
    return fk_tls_version().decode("ascii", "replace")


cdef extern from *:
    """
    /* The start of CPython's PySSLContext (Modules/_ssl.c, the same from 3.x
     * to 3.14): the OpenSSL context follows the object header. */
    typedef struct { PyObject_HEAD void *ctx; } fk_py_ssl_context;
    """
    ctypedef struct fk_py_ssl_context:
        void *ctx


cdef void *openssl_context(context) except NULL:
    """The SSL_CTX inside an ssl.SSLContext, checked against what the object
    reports of it; raises ConfigError when it cannot be found."""
    from .errors import ConfigError
    cdef void *ssl_ctx = (<fk_py_ssl_context *><PyObject *>context).ctx
    verify = {0: 0, 1: 1, 2: 3}[int(context.verify_mode)]  # CERT_* -> SSL_VERIFY_* bits
    if not fk_tls_ctx_matches(ssl_ctx, verify, int(context.options)):
        raise ConfigError("ssl_context: the OpenSSL context was not found inside the "
                          "ssl.SSLContext object; use certfile and keyfile instead")
    return ssl_ctx


def check_ssl_context(context):
    """Raises ConfigError unless the loop can serve TLS with context."""
    tls_library()
    openssl_context(context)


cdef fk_tls_ctx *tls_context(config, list keep) except NULL:
    """A server context: config.ssl_context's, or one made from the files of
    config.certfile, keyfile and ca_certs with cert_reqs and ciphers; raises
    ConfigError naming the file or setting at fault. keep receives what must
    stay alive as long as the context."""
    from .errors import ConfigError
    from .tls import context_from, ticket_keys
    cdef fk_tls_options o
    cdef fk_tls_ctx *ctx
    cdef char err[1024]
    cdef bytes certfile, keyfile, ca_certs, ciphers
    cdef bytes keys = ticket_keys()
    if len(keys) != FK_TLS_TICKET_KEYS:
        raise ValueError("session ticket keys of the wrong length")
    try:
        tls_library()
    except OSError as exc:
        raise ConfigError(f"certfile: TLS is not available: {exc}") from None
    if config.ssl_context is not None:
        context = context_from(config.ssl_context)
        keep.append(context)
        ctx = fk_tls_ctx_adopt(openssl_context(context),
                               <const unsigned char *>PyBytes_AS_STRING(keys), err, sizeof(err))
        if ctx == NULL:
            raise ConfigError(f"ssl_context: {err.decode('utf-8', 'replace')}")
        return ctx
    if not config.certfile:
        raise ConfigError("certfile: an https listener needs a certificate")
    certfile = os.fsencode(config.certfile)
    keyfile = os.fsencode(config.keyfile) if config.keyfile else None
    ca_certs = os.fsencode(config.ca_certs) if config.ca_certs else None
    ciphers = config.ciphers.encode("ascii") if config.ciphers else None
    o.certfile = PyBytes_AS_STRING(certfile)
    o.keyfile = NULL if keyfile is None else PyBytes_AS_STRING(keyfile)
    o.ca_certs = NULL if ca_certs is None else PyBytes_AS_STRING(ca_certs)
    o.ciphers = NULL if ciphers is None else PyBytes_AS_STRING(ciphers)
    o.verify = {"none": FK_TLS_VERIFY_NONE, "optional": FK_TLS_VERIFY_OPTIONAL,
                "required": FK_TLS_VERIFY_REQUIRED}[config.cert_reqs]
    o.ticket_keys = <const unsigned char *>PyBytes_AS_STRING(keys)
    ctx = fk_tls_ctx_create(&o, err, sizeof(err))
    if ctx == NULL:
        raise ConfigError(err.decode("utf-8", "replace"))
    return ctx


cdef Py_ssize_t plan_sent(Plan plan, Request req):
    """Body bytes a complete plan puts on the wire."""
    if plan.body is None or req._is_head() or not (200 <= plan.status and plan.status != 204
                                                    and plan.status != 304):
        return 0
    return PyBytes_GET_SIZE(plan.body)


def _semaphore(int n):
    import threading
    return threading.Semaphore(n)


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    bint PyUnicode_IS_ASCII(object s)


cdef const char *field_text(object item, Py_ssize_t *size, list keep) except NULL:
    """The latin-1 bytes of a header name or value: a pure-ASCII str is read in
    place; anything else is encoded into an object kept alive by keep."""
    if type(item) is str and PyUnicode_IS_ASCII(item):
        return PyUnicode_AsUTF8AndSize(item, size)
    if isinstance(item, bytes):
        data = item
    elif isinstance(item, str):
        data = (<str>item).encode("latin-1")
    else:
        data = str(item).encode("latin-1")
    keep.append(data)
    size[0] = PyBytes_GET_SIZE(data)
    return PyBytes_AS_STRING(data)


cdef enum:
    FIELDS_STACK = 1024  # field lines built on the stack up to this size


cdef int put(char *stack, size_t *used, fk_buf *out, const char *p, size_t n) noexcept:
    """Appends to the stack buffer, or to out once that is full; 0, or -1 when
    out of memory."""
    if out.data == NULL:
        if used[0] + n <= FIELDS_STACK:
            memcpy(stack + used[0], p, n)
            used[0] += n
            return 0
        if fk_buf_append(out, stack, used[0]) != 0:
            return -1
    return fk_buf_append(out, p, n)


cdef int64_t content_length(const char *v, Py_ssize_t n) noexcept:
    """A Content-Length value: 1 to 18 ASCII digits; -1 for anything else."""
    cdef int64_t length = 0
    cdef Py_ssize_t i
    if n < 1 or n > 18:
        return -1
    for i in range(n):
        if not c"0" <= v[i] <= c"9":
            return -1
        length = length * 10 + (v[i] - c"0")
    return length


cdef void build_fields(Plan plan, object headers) except *:
    """Validates the handler's header fields and joins them as the plan's field
    lines. Framing fields are the loop's business: Content-Length becomes the
    plan's length, Transfer-Encoding is dropped, Connection: close a flag."""
    cdef unsigned flags = 0
    cdef int64_t length = -1
    cdef list keep = []
    cdef char stack[FIELDS_STACK]
    cdef size_t used = 0
    cdef fk_buf out
    cdef const char *n
    cdef const char *v
    cdef Py_ssize_t nlen = 0, vlen = 0
    cdef int kind, failed = 0
    memset(&out, 0, sizeof(out))
    try:
        for name, value in headers:
            n = field_text(name, &nlen, keep)
            v = field_text(value, &vlen, keep)
            if fk_field_check(n, nlen, v, vlen) != 0:
                raise ValueError(f"invalid response header {name!r}: {value!r}")
            kind = fk_field_kind(n, nlen)
            if kind == FK_FIELD_CONTENT_LENGTH:
                length = content_length(v, vlen)
                if length < 0:
                    raise ValueError(f"invalid Content-Length {value!r}")
                continue
            if kind == FK_FIELD_TRANSFER_ENCODING:
                continue
            if kind == FK_FIELD_CONNECTION:
                if fk_field_has_close(v, vlen):
                    flags |= FK_RESP_CLOSE
                continue
            if kind == FK_FIELD_DATE:
                flags |= FK_RESP_HAS_DATE
            elif kind == FK_FIELD_SERVER:
                flags |= FK_RESP_HAS_SERVER
            failed |= put(stack, &used, &out, n, nlen)
            failed |= put(stack, &used, &out, b": ", 2)
            failed |= put(stack, &used, &out, v, vlen)
            failed |= put(stack, &used, &out, b"\r\n", 2)
        if failed:
            raise MemoryError()
        if out.data != NULL:
            plan.fields = PyBytes_FromStringAndSize(out.data, out.len)
        elif used:
            plan.fields = PyBytes_FromStringAndSize(stack, used)
    finally:
        fk_buf_free(&out)
    plan.flags = flags
    plan.length = length
