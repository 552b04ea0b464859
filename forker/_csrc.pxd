# Declarations of the C core in csrc/, shared by every .pyx of forker.
from libc.stdint cimport int64_t, uint64_t
cdef extern from "sys/types.h":
    ctypedef long ssize_t

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
        FK_ERR_CLOSED
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
    int64_t fk_parse_content_length(const char *p, size_t n)

cdef extern from "fk_chars.h" nogil:
    # header-only: usable by an extension built without the C core (_wsgi)
    const unsigned char fk_tchar[256]
    int fk_field_value_check(const char *value, size_t len)

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

cdef extern from "fk_buf.h" nogil:
    ctypedef struct fk_buf:
        char *data
        size_t off
        size_t len
        size_t cap
    int fk_buf_append(fk_buf *b, const void *p, size_t n)
    void fk_buf_free(fk_buf *b)

cdef extern from "fk_write.h" nogil:
    enum:
        FK_BODY_CHUNKED
        FK_BODY_UNTIL_CLOSE
        FK_BODY_UNSTATED
        FK_RESP_CLOSE
        FK_RESP_HAS_DATE
        FK_RESP_HAS_SERVER
    ctypedef struct fk_response:
        int status
        const char *reason
        size_t reason_len
        const char *fields
        size_t fields_len
        int64_t content_length
        unsigned flags
    const char *fk_status_reason(int status, size_t *len)
    bint fk_status_has_body(int status)
    enum:
        FK_ERROR_BODY_MAX
    int fk_error_body(char *buf, size_t size, int status)
    int fk_field_check(const char *name, size_t name_len, const char *value, size_t value_len)
    enum:
        FK_FIELD_OTHER
        FK_FIELD_CONTENT_LENGTH
        FK_FIELD_TRANSFER_ENCODING
        FK_FIELD_CONNECTION
        FK_FIELD_DATE
        FK_FIELD_SERVER
    int fk_field_kind(const char *name, size_t len)
    int fk_field_has_close(const char *value, size_t len)

cdef extern from "fk_ws.h" nogil:
    enum:
        FK_WS_TEXT
        FK_WS_BINARY
        FK_WS_CONTROL_MAX
    ctypedef struct fk_ws_decoder:
        uint64_t msg_len
        unsigned char msg_opcode
        unsigned char msg_compressed
        size_t ctl_len
        char ctl[125]

cdef extern from "fk_conn.h" nogil:
    ctypedef struct fk_ws_conn:
        fk_ws_decoder dec
        int msg_ready
        int in_done
        int close_sent
        int close_code
        int fail_code
    enum fk_conn_state:
        FK_CONN_FREE
        FK_CONN_HEAD
        FK_CONN_BODY
        FK_CONN_READY
        FK_CONN_HANDLING
        FK_CONN_STREAMING
        FK_CONN_LINGER
        FK_CONN_CLOSED
        FK_CONN_PROXY
        FK_CONN_WS
    ctypedef struct fk_conn:
        int fd
        int listener
        unsigned int index
        unsigned int generation
        unsigned int request_id
        fk_conn_state state
        int keep_alive
        int py_owned
        int proxy_local
        int64_t file_left
        uint64_t lent_ticket
        fk_buf in_ "in"
        size_t head_len
        size_t body_off
        size_t body_len
        int body_stream
        int body_done
        size_t body_taken
        uint64_t body_rest
        fk_request req
        fk_header *headers
        uint64_t queue_us
        int watermark
        fk_ws_conn *ws
    void fk_conn_peer(const fk_conn *c, char *host, size_t size, int *port)

cdef extern from "fk_body.h" nogil:
    ctypedef struct fk_body_limits:
        int stall_ms
        uint64_t deadline_ms
        uint64_t max_body_size
        int nowait
    ssize_t fk_body_read(fk_conn *c, char *dst, size_t max, const fk_body_limits *lim)
    int fk_body_wait_ms(const fk_conn *c, const fk_body_limits *lim)

cdef extern from "fk_tls.h" nogil:
    ctypedef struct fk_tls_ctx:
        pass
    enum:
        FK_TLS_VERIFY_NONE
        FK_TLS_VERIFY_OPTIONAL
        FK_TLS_VERIFY_REQUIRED
        FK_TLS_TICKET_KEYS
    ctypedef struct fk_tls_options:
        const char *certfile
        const char *keyfile
        const char *ca_certs
        const char *ciphers
        int verify
        const unsigned char *ticket_keys
    int fk_tls_load(const char *ssl_module, char *err, size_t errlen)
    const char *fk_tls_version()
    fk_tls_ctx *fk_tls_ctx_create(const fk_tls_options *o, char *err, size_t errlen)
    fk_tls_ctx *fk_tls_ctx_adopt(void *ssl_ctx, const unsigned char *ticket_keys, char *err,
                                 size_t errlen)
    int fk_tls_ctx_matches(void *ssl_ctx, int verify_mode, uint64_t options)
    void fk_tls_ctx_destroy(fk_tls_ctx *ctx)

cdef extern from "fk_clock.h" nogil:
    uint64_t fk_now_ms()

cdef extern from "fk_metrics.h" nogil:
    # the shared worker slot, word offsets (FK_SLOT_FIELDS)
    enum:
        FK_SLOT_WORDS
        FK_SLOT_BYTES
        FK_SLOT_HEARTBEAT
        FK_SLOT_BUSY_SINCE
        FK_SLOT_TEXT
        FK_SLOT_TEXT_SIZE
        FK_HIST_BUCKETS
        FK_STATS_BYTES
    const uint64_t fk_hist_bounds_us[]

cdef extern from "fk_proxy.h" nogil:
    ctypedef struct fk_net:
        int family
        unsigned int bits
        unsigned char addr[16]

cdef extern from "fk_loop.h" nogil:
    # Its fields are declared once, in csrc/fk_loop.h (FK_LOOP_CONFIG_FIELDS), and
    # reached through the table of them (forker/_worker.pyx, loop_config()).
    ctypedef struct fk_loop_config:
        pass
    enum:
        FK_CFG_COUNT
        FK_CFG_U64
        FK_CFG_MS
        FK_CFG_INT
        FK_CFG_TEXT
        FK_CFG_LEN
        FK_CFG_ADDR

    enum:
        FK_EV_REQUEST
        FK_EV_WAKE
        FK_EV_NOTIFY
        FK_EV_WRITABLE
        FK_EV_CLOSED
        FK_EV_TICK
        FK_EV_DONE
        FK_EV_WS
        FK_EV_BODY

    ctypedef struct fk_event:
        int type
        fk_conn *conn

    ctypedef struct fk_loop:
        pass

    fk_loop *fk_loop_create(const fk_loop_config *cfg)
    void fk_loop_destroy(fk_loop *l)
    int fk_loop_add_listener(fk_loop *l, int fd)
    int fk_loop_add_tls_listener(fk_loop *l, int fd, fk_tls_ctx *tls)
    int fk_loop_next(fk_loop *l, fk_event *ev)
    int fk_loop_poll(fk_loop *l, fk_event *ev, int io)
    int fk_loop_fd(const fk_loop *l)
    uint64_t fk_loop_tick_in(const fk_loop *l)
    void fk_loop_body_limits(const fk_loop *l, const fk_conn *c, fk_body_limits *lim)
    enum:
        FK_RESPOND_LEND
    int fk_loop_respond(fk_loop *l, fk_conn *c, const fk_response *r, const char *body,
                        size_t len, int complete)
    int fk_loop_send(fk_loop *l, fk_conn *c, const char *data, size_t len, int last)
    int fk_loop_flush(fk_loop *l, fk_conn *c)
    int fk_loop_send_file(fk_loop *l, fk_conn *c, int fd, int64_t offset, int64_t count)
    size_t fk_loop_lent_done(fk_loop *l, uint64_t *tickets, size_t max)
    void fk_loop_release(fk_loop *l, fk_conn *c)
    int fk_loop_ws_accept(fk_loop *l, fk_conn *c, const char *head, size_t len, int deflate)
    void fk_loop_ws_taken(fk_loop *l, fk_conn *c)
    int fk_loop_ws_send(fk_loop *l, fk_conn *c, int opcode, int compressed, const char *data,
                        size_t len)
    int fk_loop_ws_close(fk_loop *l, fk_conn *c, int code, const char *reason, size_t len)
    void fk_loop_stop(fk_loop *l, int graceful)
    uint64_t fk_loop_served(const fk_loop *l)
    size_t fk_loop_open(const fk_loop *l)
    const fk_loop_config *fk_loop_config_of(const fk_loop *l)
