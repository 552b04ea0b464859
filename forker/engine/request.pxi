# Included by forker/_worker.pyx (declarations in forker/_worker.pxd).
#
# The request side of the engine: the header-name cache, the Headers
# mapping, the streamed request body (BodyStream) and the Request a handler
# gets. It reads what the loop parsed into a connection (fk_conn) and never
# answers: the response side and the engine do that.

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


cdef enum:
    NAME_CACHE_SIZE = 128  # header names an engine keeps: 64 sets of 2, by a hash of their bytes


cdef inline bint same_name(object known, const char *p, size_t n):
    return (known is not None and PyUnicode_GET_LENGTH(known) == <Py_ssize_t>n
            and memcmp(PyUnicode_1BYTE_DATA(known), p, n) == 0)


cdef str header_name(list names, const char *p, size_t n):
    """A header name as text. The engine keeps the names it decoded, so a name
    sent again comes back as the same str, its hash computed once for every
    dict lookup to come. A name's set holds two: the one found or added last
    goes first."""
    cdef size_t way
    if n == 0:
        return ""
    way = ((n * 31 + <unsigned char>p[0] * 7 + <unsigned char>p[n >> 1] * 3
            + <unsigned char>p[n - 1]) % (NAME_CACHE_SIZE // 2)) * 2
    known = names[way]
    if same_name(known, p, n):
        return <str>known
    other = names[way + 1]
    if same_name(other, p, n):
        names[way], names[way + 1] = other, known
        return <str>other
    name = latin1(p, n)
    names[way], names[way + 1] = name, known
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
        """One read of up to size bytes into dst; 0 at the end of the body;
        -2 when the loop's reads do not wait (body_events) and none came yet."""
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
        if n == FK_NEED_MORE:
            return -2
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

    cdef object read_ready(self, Py_ssize_t size):
        """With the loop's body_events (reads on its thread that never wait):
        what one read gives, at most size bytes (b"" at the end of the body),
        or None when nothing came yet: FK_EV_BODY says when to try again,
        and wait_ms() how long to wait for it."""
        cdef bytes buf
        cdef Py_ssize_t n
        if self._ahead:
            return self._take_ahead(size)
        buf = PyBytes_FromStringAndSize(NULL, size)
        n = self._read_into(PyBytes_AS_STRING(buf), size)
        if n == -2:
            return None
        return buf if n == size else buf[:n]

    cdef int wait_ms(self) except -2:
        """After read_ready() gave None: the ms to wait for FK_EV_BODY before
        reading again, when that read times the body out; -1 no limit."""
        cdef fk_body_limits lim
        with self._lock:
            c = self._live()
            fk_loop_body_limits(self._engine.loop, c, &lim)
            return fk_body_wait_ms(c, &lim)

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
        return self._scheme()

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
        # per connection index, the generation telling its connections apart.
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

    cdef str _scheme(self):
        return self._engine.listen_schemes[self._listener]

    cdef list _flat_fields(self):
        """The header fields as one list of names and values (forker._wsgi)."""
        if self._headers is None:
            return self._fields(True)
        return [item for pair in (<Headers>self._headers).raw for item in pair]

    @property
    def server_addr(self):
        return self._engine.listen_addrs[self._listener][0]

    @property
    def server_port(self):
        return self._engine.listen_addrs[self._listener][1]

    def __repr__(self):
        return f"<Request {self.method} {self.target} {self.version}>"
