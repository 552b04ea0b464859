# Declarations of the C core in csrc/, shared by every .pyx of forker.
from libc.stdint cimport int64_t, uint64_t
from posix.types cimport ssize_t

cdef extern from "fk_common.h" nogil:
    enum:
        FK_ERR_BAD_REQUEST
        FK_NEED_MORE
        FK_ERR_URI_TOO_LONG
        FK_ERR_FIELD_TOO_LARGE
        FK_ERR_TOO_MANY_FIELDS
        FK_ERR_VERSION
        FK_ERR_NOT_IMPLEMENTED
        FK_ERR_BODY_TOO_LARGE
        FK_ERR_TIMEOUT
    int fk_status_http_code(int status)

cdef extern from "fk_parse.h" nogil:
    ctypedef struct fk_header:
        const char *name
        size_t name_len
        const char *value
        size_t value_len

    ctypedef struct fk_limits:
        size_t max_request_line
        size_t max_field_size

    enum:
        FK_REQ_CHUNKED
        FK_REQ_KEEP_ALIVE
        FK_REQ_EXPECT_CONTINUE
        FK_REQ_UPGRADE
        FK_REQ_ABSOLUTE_FORM
        FK_REQ_HAS_BODY

    ctypedef struct fk_request:
        const char *method
        size_t method_len
        const char *target
        size_t target_len
        const char *path
        size_t path_len
        const char *query
        size_t query_len
        const char *host
        size_t host_len
        int minor_version
        unsigned flags
        int64_t content_length
        fk_header *headers
        size_t num_headers

    int fk_parse_request(const char *buf, size_t len, size_t last_len, fk_request *req,
                         const fk_limits *limits)

cdef extern from "fk_chunked.h" nogil:
    enum:
        FK_CHUNK_LINE_MAX
        FK_CHUNK_TRAILER_MAX
    ctypedef struct fk_chunked:
        uint64_t remaining
        size_t line_len
        size_t trailer_len
        int state
        int hex_digits
    void fk_chunked_init(fk_chunked *d)
    ssize_t fk_chunked_decode(fk_chunked *d, char *buf, size_t *len)
