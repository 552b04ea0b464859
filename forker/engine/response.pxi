# Included by forker/_worker.pyx (declarations in forker/_worker.pxd).
#
# The response side of the engine: a handler's answer (bytes, a Response,
# a Reply) checked and framed into a ResponsePlan the loop can write, the header fields
# it carries, the error answers, and the ResponseStream of a body sent in pieces. It
# knows the loop's response struct (fk_response), not the event loop itself.

cdef class ResponsePlan:
    """A handler's answer, validated and framed, ready for the loop."""

    def __cinit__(self):
        self.file_fd = -1


@cython.final
@cython.freelist(8)
cdef class Reply:
    """What a compiled handler answers the engine's own requests with
    (forker._wsgi): Response(body, status, headers, reason) without the
    attribute lookups of a Python object, read by make_plan from its struct."""

    def __init__(self, body, int status, list headers, reason):
        self.body = body
        self.status = status
        self.headers = headers
        self.reason = reason

    def __repr__(self):
        return f"<Reply {self.status} {type(self.body).__name__}>"


cdef bytes ERROR_FIELDS = b"Content-Type: text/plain; charset=utf-8\r\n"
cdef bytes ERROR_BODY = error_body(500)
cdef ResponsePlan ERROR_PLAN = ResponsePlan()
ERROR_PLAN.status = 500
ERROR_PLAN.fields = ERROR_FIELDS
ERROR_PLAN.flags = FK_RESP_CLOSE
ERROR_PLAN.length = len(ERROR_BODY)
ERROR_PLAN.body = ERROR_BODY


cdef ResponsePlan server_error_plan():
    """The 500 the server answers itself (and closes after)."""
    return ERROR_PLAN


cdef bytes error_body(int status):
    """The body of an error the server answers itself: "500 Internal Server
    Error\n", as the loop's own errors (fk_error_body)."""
    cdef char buf[FK_ERROR_BODY_MAX]
    cdef int n = fk_error_body(buf, sizeof(buf), status)
    return buf[:n] if n > 0 else b""


cdef ResponsePlan failure_plan(object exc, Request req):
    """The answer when a handler raised (called in its except clause): the
    status a RequestBodyError names, the client's fault, logged without a
    traceback; else 500."""
    cdef ResponsePlan plan
    if not isinstance(exc, RequestBodyError):
        log.exception("error in handler for %s %s", req.method, req.target)
        return ERROR_PLAN
    log.info("%s %s: %s", req.method, req.target, exc)
    plan = ResponsePlan.__new__(ResponsePlan)
    plan.status = exc.status
    plan.fields = ERROR_FIELDS
    plan.flags = FK_RESP_CLOSE
    plan.body = error_body(plan.status)
    plan.length = len(plan.body)
    return plan


cdef inline bytes as_bytes(object item):
    if type(item) is bytes:
        return <bytes>item
    if isinstance(item, str):
        return (<str>item).encode("utf-8")
    return bytes(item)


cdef ResponsePlan make_plan(object result, int minor_version, bint head):
    """Turns what a handler returned into a ResponsePlan; raises on an invalid answer."""
    cdef ResponsePlan plan = ResponsePlan.__new__(ResponsePlan)
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
        if (plan.length >= 0 and plan.length != len(plan.body) and not head
                and fk_status_has_body(plan.status)):
            body_length_differs(plan)
            return plan
        if not head or len(plan.body) != 0:
            plan.length = len(plan.body)
        elif plan.length < 0:
            # HEAD answered without a body (Werkzeug's ()) nor a Content-Length:
            # the GET's length is unknown, so none is stated (a handler's own
            # Content-Length on such an answer stands: it is the GET's)
            plan.length = FK_BODY_UNSTATED
        return plan
    if not hasattr(type(body), "__iter__") and not hasattr(type(body), "__getitem__"):
        # refused before the head goes out, so that the client gets a 500
        hint = ("; if the application is made by a factory, name the call: "
                "'module:create_app()'" if callable(body) else "")
        raise TypeError(f"the handler returned {type(body).__name__!r}, which is neither "
                        f"bytes, str, a Response nor an iterable of bytes{hint}")
    plan.source = body
    if not find_file(plan, body) and plan.length < 0:
        # HEAD of a body of unknown length: neither a length nor chunked (as gunicorn)
        plan.length = (FK_BODY_UNSTATED if head else
                       FK_BODY_CHUNKED if minor_version == 1 else FK_BODY_UNTIL_CLOSE)
    return plan


cdef void body_length_differs(ResponsePlan plan):
    """The application's Content-Length is not its body's length. Its word
    stands, as in a streamed body: a longer body is cut at it (PEP 3333), and
    a shorter one goes out under it, the connection closing after it, so that
    the client sees a truncated answer as one rather than a complete answer
    it may cache (or, kept alive, waits for bytes that never come)."""
    log.error("the application's Content-Length is %d but its body is %d bytes; %s",
              plan.length, len(plan.body),
              "sending the first %d" % plan.length if len(plan.body) > plan.length
              else "closing the connection after it")
    if len(plan.body) > plan.length:
        plan.body = plan.body[:plan.length]
    else:
        plan.flags |= FK_RESP_CLOSE


cdef void answer(ResponsePlan plan, int status, object reason, object headers) except *:
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


cdef bint find_file(ResponsePlan plan, object body):
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


cdef class ResponseStream:
    """A response body produced in pieces by an iterable, pumped by the loop,
    or a file the loop sends."""

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


def standard_reason(int status):
    """The reason phrase the engine writes for status ("Unknown" when unregistered)."""
    cdef size_t n = 0
    cdef const char *text = fk_status_reason(status, &n)
    return text[:n].decode("latin-1")


cdef Py_ssize_t plan_sent(ResponsePlan plan, Request req):
    """Body bytes a complete plan puts on the wire."""
    if plan.body is None or req._is_head() or not fk_status_has_body(plan.status):
        return 0
    return PyBytes_GET_SIZE(plan.body)


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


@cython.final
cdef class FieldsMemo:
    """What build_fields made of a list of header fields it joined, by the
    identity of the list's items: a handler that answers with the same
    Response object again and again has its fields checked and joined once
    (well, twice: a list is remembered the second time in a row it comes, so
    that the new list of every answer of a WSGI app costs no copy). Only
    tuples of two str or bytes objects are remembered: their content cannot
    change while the memo holds them, so the same items give the same bytes.
    The list may be changed in place: its items are compared one by one."""
    cdef tuple items
    cdef bytes fields
    cdef unsigned flags
    cdef int64_t length


cdef FieldsMemo FIELDS_MEMO = None
cdef object LAST_FIELDS_LIST = None  # the list build_fields last joined without the memo


cdef inline bint memo_hit(ResponsePlan plan, object headers):
    """Sets the plan's fields from the memo when headers is a list of the very
    items it remembers."""
    cdef FieldsMemo memo = FIELDS_MEMO
    cdef Py_ssize_t i, count
    if memo is None or type(headers) is not list:
        return False
    count = PyList_GET_SIZE(headers)
    if count != PyTuple_GET_SIZE(memo.items):
        return False
    for i in range(count):
        if PyList_GET_ITEM(headers, i) != PyTuple_GET_ITEM(memo.items, i):
            return False
    plan.fields = memo.fields
    plan.flags = memo.flags
    plan.length = memo.length
    return True


cdef inline bint immutable_pair(object item):
    """Whether item is a (name, value) tuple whose joined bytes cannot change."""
    if type(item) is not tuple or PyTuple_GET_SIZE(item) != 2:
        return False
    name = <object>PyTuple_GET_ITEM(item, 0)
    value = <object>PyTuple_GET_ITEM(item, 1)
    return ((type(name) is str or type(name) is bytes) and
            (type(value) is str or type(value) is bytes))


cdef void build_fields(ResponsePlan plan, object headers) except *:
    """Validates the handler's header fields and joins them as the plan's field
    lines. Framing fields are the loop's business: Content-Length becomes the
    plan's length, Transfer-Encoding is dropped, Connection: close a flag.
    A list of the same items as the last one is not checked again (FieldsMemo)."""
    global FIELDS_MEMO, LAST_FIELDS_LIST
    cdef unsigned flags = 0
    cdef int64_t length = -1
    cdef list keep
    cdef char stack[FIELDS_STACK]
    cdef size_t used = 0
    cdef fk_buf out
    cdef const char *n
    cdef const char *v
    cdef Py_ssize_t nlen = 0, vlen = 0
    cdef int kind, failed = 0
    cdef bint memorable = False
    cdef FieldsMemo memo
    cdef tuple items = None
    if memo_hit(plan, headers):
        return
    if type(headers) is list:
        if headers is LAST_FIELDS_LIST:
            # the very items joined are the ones remembered, whatever the
            # list becomes meanwhile
            memorable = True
            items = tuple(<list>headers)
            headers = items
        else:
            LAST_FIELDS_LIST = headers
    keep = []
    memset(&out, 0, sizeof(out))
    try:
        for item in headers:
            if memorable and not immutable_pair(item):
                memorable = False
            name, value = item
            n = field_text(name, &nlen, keep)
            v = field_text(value, &vlen, keep)
            if fk_field_check(n, nlen, v, vlen) != 0:
                raise ValueError(f"invalid response header {name!r}: {value!r}")
            kind = fk_field_kind(n, nlen)
            if kind == FK_FIELD_CONTENT_LENGTH:
                length = fk_parse_content_length(v, vlen)
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
    if memorable:
        memo = FieldsMemo.__new__(FieldsMemo)
        memo.items = items
        memo.fields = plan.fields
        memo.flags = flags
        memo.length = length
        FIELDS_MEMO = memo
