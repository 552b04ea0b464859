# cython: language_level=3
"""The C request parser and chunked decoder, exposed to Python for tests and
benchmarks. The worker loop calls the C functions directly, not this module."""

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_RawFree, PyMem_RawMalloc

from forker._csrc cimport (
    FK_ERR_BAD_REQUEST, FK_ERR_FIELD_TOO_LARGE, FK_ERR_NOT_IMPLEMENTED,
    FK_ERR_TOO_MANY_FIELDS, FK_ERR_URI_TOO_LONG, FK_ERR_VERSION, FK_NEED_MORE,
    FK_REQ_ABSOLUTE_FORM, FK_REQ_CHUNKED, FK_REQ_EXPECT_CONTINUE, FK_REQ_KEEP_ALIVE,
    FK_REQ_UPGRADE, fk_chunked, fk_chunked_decode, fk_chunked_init, fk_header, fk_limits,
    fk_parse_request, fk_request, fk_status_http_code, ssize_t,
)

_REASONS = {
    FK_ERR_BAD_REQUEST: "malformed request",
    FK_ERR_URI_TOO_LONG: "request line too long",
    FK_ERR_FIELD_TOO_LARGE: "header field too large",
    FK_ERR_TOO_MANY_FIELDS: "too many header fields",
    FK_ERR_VERSION: "HTTP version not supported",
    FK_ERR_NOT_IMPLEMENTED: "transfer coding not implemented",
}


class ParseError(ValueError):
    """A request refused by the parser: `code` is the fk_status (negative),
    `status` the HTTP status code the client should get."""

    def __init__(self, int code):
        self.code = code
        self.status = fk_status_http_code(code)
        super().__init__(f"{self.status}: {_REASONS.get(code, 'error')}")


cdef inline object _slice(const char *p, size_t n):
    if p == NULL:
        return None
    return PyBytes_FromStringAndSize(p, <Py_ssize_t>n)


def parse_request(bytes data, Py_ssize_t last_len=0, Py_ssize_t max_fields=100,
                  size_t max_request_line=8190, size_t max_field_size=8190):
    """Parses the request head at the start of `data`.

    Returns None when more bytes are needed, else a dict of the parts (bytes
    slices, flags as bools, `consumed` = length of the head). Raises ParseError.
    `last_len` is the length of the previous attempt on the same buffer."""
    cdef fk_request req
    cdef fk_limits limits
    cdef fk_header *headers
    cdef int rc
    cdef size_t i

    if last_len < 0 or max_fields < 0:
        raise ValueError("last_len and max_fields must not be negative")
    headers = <fk_header *>PyMem_Malloc(<size_t>(max_fields if max_fields else 1) * sizeof(fk_header))
    if headers == NULL:
        raise MemoryError()
    try:
        req.headers = headers
        req.num_headers = <size_t>max_fields
        limits.max_request_line = max_request_line
        limits.max_field_size = max_field_size
        rc = fk_parse_request(PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data),
                              <size_t>last_len, &req, &limits)
        if rc == FK_NEED_MORE:
            return None
        if rc < 0:
            raise ParseError(rc)
        return {
            "consumed": rc,
            "method": _slice(req.method, req.method_len),
            "target": _slice(req.target, req.target_len),
            "path": _slice(req.path, req.path_len),
            "query": _slice(req.query, req.query_len),
            "host": _slice(req.host, req.host_len),
            "version": "HTTP/1.1" if req.minor_version == 1 else "HTTP/1.0",
            "headers": [(_slice(headers[i].name, headers[i].name_len),
                         _slice(headers[i].value, headers[i].value_len))
                        for i in range(req.num_headers)],
            "content_length": req.content_length if req.content_length >= 0 else None,
            "chunked": bool(req.flags & FK_REQ_CHUNKED),
            "keep_alive": bool(req.flags & FK_REQ_KEEP_ALIVE),
            "expect_continue": bool(req.flags & FK_REQ_EXPECT_CONTINUE),
            "upgrade": bool(req.flags & FK_REQ_UPGRADE),
            "absolute_form": bool(req.flags & FK_REQ_ABSOLUTE_FORM),
        }
    finally:
        PyMem_Free(headers)


cdef class ChunkedDecoder:
    """Incremental decoder of one chunked body."""

    cdef fk_chunked *_state

    def __cinit__(self):
        self._state = <fk_chunked *>PyMem_RawMalloc(sizeof(fk_chunked))
        if self._state == NULL:
            raise MemoryError()
        fk_chunked_init(self._state)

    def __dealloc__(self):
        PyMem_RawFree(self._state)

    def feed(self, bytes data):
        """Decodes the next raw bytes. Returns (decoded, done, leftover): the
        body bytes they carried, whether the body is complete, and when it is,
        the bytes that followed it. Raises ParseError on a malformed coding."""
        cdef bytearray buf = bytearray(data)
        cdef char *p = PyByteArray_AS_STRING(buf)
        cdef size_t n = <size_t>len(buf)
        cdef ssize_t rc = fk_chunked_decode(self._state, p, &n)
        if rc == FK_NEED_MORE:
            return PyBytes_FromStringAndSize(p, <Py_ssize_t>n), False, b""
        if rc < 0:
            raise ParseError(<int>rc)
        return (PyBytes_FromStringAndSize(p, <Py_ssize_t>n), True,
                PyBytes_FromStringAndSize(p + n, <Py_ssize_t>rc))
