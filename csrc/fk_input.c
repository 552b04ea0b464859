/* The loop's input side: reading, the PROXY header, parsing heads, request
 * bodies (fk_loop_int.h). */
#define _GNU_SOURCE
#include "fk_loop_int.h"
#include "fk_clock.h"
#include "fk_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The deadline of a request phase of phase_ms, within the request timeout. */
static uint64_t request_deadline(fk_loop *l, fk_conn *c, uint64_t phase_ms)
{
    uint64_t d = l->now + phase_ms;
    if (l->cfg.request_timeout_ms != 0) {
        uint64_t whole = c->started + l->cfg.request_timeout_ms;
        if (whole < d)
            d = whole;
    }
    return d;
}

/* A body being received: each read gives the client header_timeout for its
 * next bytes, within the request timeout, and with a minimum rate the bytes
 * must keep coming at min_rate on average past the first header_timeout, so a
 * client trickling a byte at a time is dropped in seconds, not at the request
 * timeout. */
static uint64_t body_deadline(fk_loop *l, fk_conn *c)
{
    uint64_t d = request_deadline(l, c, l->cfg.header_timeout_ms);
    uint64_t rate = fk_rate_deadline(c->started + l->cfg.header_timeout_ms, c->req_bytes,
                                     l->cfg.min_rate);
    return rate < d ? rate : d;
}


/* A plain HTTP request on a TLS listener: nginx's 400, in plain text, then close. */
static void refuse_plain_http(fk_loop *l, fk_conn *c)
{
    c->close_after = 1;
    c->linger = 1;
    if (fk_tls_plain_reply(&c->out, &l->date, l->cfg.server, l->cfg.server_len) != 0) {
        conn_close(l, c);
        return;
    }
    conn_flush(l, c);
}

static int reserve_input(fk_loop *l, fk_conn *c, size_t room);

/* GET or HEAD of the health path (query ignored): answered here, without Python.
 * 200 while serving, 503 once a graceful stop began, so that a balancer stops
 * sending before the listener closes. */
static int is_health_check(const fk_loop *l, const fk_request *r)
{
    return l->cfg.health_path_len != 0 && r->path_len == l->cfg.health_path_len &&
           memcmp(r->path, l->cfg.health_path, r->path_len) == 0 &&
           ((r->method_len == 3 && memcmp(r->method, "GET", 3) == 0) ||
            (r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0));
}

/* Answers the current request from the loop itself (r's body is body, len
 * bytes, left out for HEAD), then goes on as a handler's answer would. */
static void answer_here(fk_loop *l, fk_conn *c, const fk_response *r, const char *body,
                        size_t len)
{
    count_answer(l, c, r->status);
    if (fk_write_head(&c->out, r, c->req.minor_version, c->keep_alive, &l->date, l->cfg.server,
                      l->cfg.server_len) != 0 ||
        (!c->head_only && fk_buf_append(&c->out, body, len) != 0)) {
        conn_close(l, c);
        return;
    }
    c->again = request_done(l, c);
}

static void answer_health(fk_loop *l, fk_conn *c)
{
    static const char fields[] = "Content-Type: text/plain\r\nCache-Control: no-store\r\n";
    const char *body = l->stopping ? "draining\n" : "ok\n";
    fk_response r = {
        .status = l->stopping ? 503 : 200,
        .fields = fields,
        .fields_len = sizeof(fields) - 1,
        .content_length = (int64_t)strlen(body),
    };
    if (l->stopping)
        c->keep_alive = 0;
    answer_here(l, c, &r, body, strlen(body));
}

/* The loop's own answer to every request when the application is a constant
 * (cfg.constant_body): what the handler would have said, without Python. */
static void answer_constant(fk_loop *l, fk_conn *c)
{
    fk_response r = {.status = 200, .content_length = (int64_t)l->cfg.constant_body_len};
    answer_here(l, c, &r, l->cfg.constant_body, l->cfg.constant_body_len);
}

/* A request is complete (its body received whole): answered here when the
 * loop knows the answer, else queued for the handler. */
static void request_complete(fk_loop *l, fk_conn *c)
{
    if (FK_UNLIKELY(is_health_check(l, &c->req)))
        answer_health(l, c);
    else if (l->cfg.constant_body != NULL)
        answer_constant(l, c);
    else
        push_ready(l, c);
}

static int streams_body(const fk_loop *l, const fk_conn *c, uint64_t size);

static void parse_head(fk_loop *l, fk_conn *c)
{
    const char *data = c->in.data + c->in.off;
    size_t len = fk_buf_pending(&c->in);
    if (len == 0)
        return;
    if (c->started == 0) {
        c->started = l->now;
        c->req_bytes = len;
        c->deadline = request_deadline(l, c, l->cfg.header_timeout_ms);
    }
    fk_request *req = &c->req;
    req->headers = l->scratch;
    req->num_headers = l->cfg.max_fields;
    int r = fk_parse_request(data, len, c->last_len, req, &l->limits);
    if (r == FK_NEED_MORE) {
        c->last_len = len;
        return;
    }
    if (r < 0) {
        fail_request(l, c, fk_status_http_code(r));
        return;
    }
    if (FK_UNLIKELY(req->method_len == 7 && memcmp(req->method, "CONNECT", 7) == 0)) {
        /* An origin server does not tunnel: any 2xx would tell the client
         * that the tunnel is open (RFC 9110 9.3.6), so no handler gets it. */
        fail_request(l, c, 501);
        return;
    }
    if (req->num_headers > c->headers_cap) {
        size_t cap = req->num_headers < 16 ? 16 : req->num_headers;
        fk_header *h = realloc(c->headers, cap * sizeof(fk_header));
        if (h == NULL) {
            fail_request(l, c, 500);
            return;
        }
        c->headers = h;
        c->headers_cap = cap;
    }
    if (req->num_headers > 0) /* c->headers is NULL until then: memcpy(NULL, ..., 0) is UB */
        memcpy(c->headers, l->scratch, req->num_headers * sizeof(fk_header));
    req->headers = c->headers;
    c->head_len = (size_t)r;
    c->body_off = (size_t)r;
    c->body_len = 0;
    c->raw_len = 0;
    c->head_only = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    c->keep_alive = (req->flags & FK_REQ_KEEP_ALIVE) && l->cfg.keepalive_ms != 0 &&
                    !l->stopping && !recycle_due(l);
    if (!(req->flags & FK_REQ_HAS_BODY)) {
        request_complete(l, c);
        return;
    }
    if (req->flags & FK_REQ_CHUNKED) {
        fk_chunked_init(&c->chunked);
        c->chunked.limit = l->cfg.max_body_size;
        c->raw_len = len - (size_t)r;
    } else if (l->cfg.max_body_size != 0 && (uint64_t)req->content_length > l->cfg.max_body_size) {
        fail_request(l, c, 413);
        return;
    }
    c->state = FK_CONN_BODY;
    c->deadline = body_deadline(l, c);
    if ((req->flags & FK_REQ_EXPECT_CONTINUE) && len - (size_t)r == 0 &&
        !(req->flags & FK_REQ_CHUNKED) && !conn_unsent(c) &&
        streams_body(l, c, (uint64_t)req->content_length)) {
        /* handed over now, before any of the body: the handler's first read
         * asks for it (fk_body.c), and one that answers without reading never
         * has the client send it. Not with bytes still to go out before it. */
        c->continue_due = FK_CONTINUE_DUE;
    } else if ((req->flags & FK_REQ_EXPECT_CONTINUE) && len - (size_t)r == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (fk_buf_append(&c->out, cont, sizeof(cont) - 1) != 0 || conn_flush(l, c) < 0)
            return;
    }
    process_input(l, c);
}

/* Whether a body of size bytes (known so far) is left to the handler to
 * read. Not with TLS when handlers run on threads that read it themselves:
 * OpenSSL's connection must not be used by the loop's thread and a handler's
 * at once. */
static int streams_body(const fk_loop *l, const fk_conn *c, uint64_t size)
{
    return l->cfg.body_buffer_size != 0 && size > l->cfg.body_buffer_size &&
           (c->ssl == NULL || !l->cfg.threaded || l->cfg.body_events) &&
           l->cfg.constant_body == NULL;
}

/* Hands the request over before its body is in: the handler reads the rest
 * (fk_body.h). A handler thread reads through its own descriptor, so that
 * the loop closing the connection meanwhile cannot hand it another socket
 * that reuses the number; with body_events the reads are the loop thread's. */
static void begin_body_stream(fk_loop *l, fk_conn *c)
{
    if ((c->req.flags & FK_REQ_CHUNKED) && reserve_input(l, c, READ_CHUNK) != 0) {
        fail_request(l, c, 500);
        return;
    }
    c->body_fd = -1;
    if (l->cfg.threaded && !l->cfg.body_events &&
        (c->body_fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        fail_request(l, c, 503);
        return;
    }
    c->body_stream = 1;
    c->body_done = 0;
    c->body_error = 0;
    c->body_taken = 0;
    c->body_total = c->body_len;
    c->body_rest = (uint64_t)c->req.content_length - c->body_len; /* unused when chunked */
    c->body_bytes_in = 0;
    c->body_heard_ms = l->now;
    push_ready(l, c);
}

static void parse_body(fk_loop *l, fk_conn *c)
{
    size_t pending = fk_buf_pending(&c->in);
    if (!(c->req.flags & FK_REQ_CHUNKED)) {
        size_t avail = pending - c->body_off;
        uint64_t want = (uint64_t)c->req.content_length;
        c->body_len = avail < want ? avail : (size_t)want;
        if (c->body_len == want)
            request_complete(l, c);
        else if (streams_body(l, c, want))
            begin_body_stream(l, c);
        return;
    }
    if (c->raw_len == 0)
        return;
    char *raw = c->in.data + c->in.off + c->body_off + c->body_len;
    size_t n = c->raw_len;
    ssize_t r = fk_chunked_decode(&c->chunked, raw, &n);
    if (r < 0 && r != FK_NEED_MORE) {
        fail_request(l, c, fk_status_http_code((int)r));
        return;
    }
    c->body_len += n;
    c->raw_len = 0;
    /* decoded data was compacted in place: the buffer now ends after it, plus the
     * bytes of the next request when the body is complete */
    c->in.len = c->in.off + c->body_off + c->body_len + (r >= 0 ? (size_t)r : 0);
    if (l->cfg.max_body_size != 0 && c->body_len > l->cfg.max_body_size) {
        fail_request(l, c, 413);
        return;
    }
    if (r >= 0)
        request_complete(l, c);
    else if (streams_body(l, c, c->body_len))
        begin_body_stream(l, c);
}

void process_input(fk_loop *l, fk_conn *c)
{
    do {
        c->again = 0;
        if (c->state == FK_CONN_HEAD)
            parse_head(l, c);
        else if (c->state == FK_CONN_BODY)
            parse_body(l, c);
        else if (c->state == FK_CONN_WS)
            ws_input(l, c);
    } while (c->again); /* answered in the loop (health): parse the next one */
}

/* Bodies received whole are bounded per worker, not only per request
 * (max_body_size): when what the connections receiving one hold passes
 * max_input, the connection holding most is answered 503 and its buffer
 * freed, as the readers furthest behind are closed for output. Called when a
 * body's buffer is past INPUT_CHECK, so that the walk over the slots is rare
 * for small bodies. */
#define INPUT_CHECK (1u << 20)

static void bound_input(fk_loop *l)
{
    uint64_t total = 0;
    for (size_t i = 0; i < l->high_slot; i++) {
        const fk_conn *o = &l->conns[i];
        if (o->fd >= 0 && o->state == FK_CONN_BODY)
            total += o->in.cap;
    }
    while (total > l->cfg.max_input) {
        fk_conn *most = NULL;
        for (size_t i = 0; i < l->high_slot; i++) {
            fk_conn *o = &l->conns[i];
            if (o->fd >= 0 && o->state == FK_CONN_BODY && (most == NULL || o->in.cap > most->in.cap))
                most = o;
        }
        if (most == NULL)
            return;
        total -= most->in.cap;
        l->cfg.slot[FK_SLOT_SHED]++;
        fail_request(l, most, 503); /* leaves FK_CONN_BODY */
        fk_spares_release(&l->spares, &most->in);
    }
}

/* Room wanted before the next read: enough for the rest of a known body (in
 * steps, so a large Content-Length is not allocated before the bytes arrive). */
static size_t read_room(const fk_conn *c)
{
    if (c->state == FK_CONN_WS) {
        /* the rest of a large frame in steps, as a body's */
        const fk_ws_decoder *d = &c->ws->dec;
        if (d->left > 4u * 1024 * 1024)
            return 4u * 1024 * 1024;
        return d->left > READ_CHUNK ? (size_t)d->left : READ_CHUNK;
    }
    if (c->state == FK_CONN_BODY && !(c->req.flags & FK_REQ_CHUNKED)) {
        uint64_t left = (uint64_t)c->req.content_length - c->body_len;
        if (left > READ_CHUNK && left < 4u * 1024 * 1024)
            return (size_t)left;
        if (left >= 4u * 1024 * 1024)
            return 4u * 1024 * 1024;
        return READ_CHUNK;
    }
    if (c->state == FK_CONN_HEAD && c->in.cap - c->in.len < FIRST_READ)
        return FIRST_READ; /* heads are small: grow by doubling only when one is not */
    return c->state == FK_CONN_HEAD ? c->in.cap - c->in.len : READ_CHUNK;
}

/* The request's slices point into c->in, and growing the buffer may move it.
 * Around a reallocation the slices are held as offsets from the request's
 * start (stored in the pointer fields as integers), so no pointer into the
 * freed block is ever used. */
#define TO_OFFSET(field, base)                                                    \
    do {                                                                          \
        if ((field) != NULL)                                                      \
            (field) = (const char *)(uintptr_t)((field) - (base) + 1);            \
    } while (0)
#define FROM_OFFSET(field, base)                                                  \
    do {                                                                          \
        if ((field) != NULL)                                                      \
            (field) = (base) + ((uintptr_t)(field) - 1);                          \
    } while (0)

/* Reserves room in c->in, keeping the current request's slices valid. */
static int reserve_input(fk_loop *l, fk_conn *c, size_t room)
{
    if (c->in.cap - c->in.len >= room)
        return 0;
    if (c->state != FK_CONN_BODY)
        return fk_buf_reserve(&c->in, room, 0);
    fk_request *r = &c->req;
    const char *base = c->in.data + c->in.off;
    TO_OFFSET(r->method, base);
    TO_OFFSET(r->target, base);
    TO_OFFSET(r->path, base);
    TO_OFFSET(r->query, base);
    TO_OFFSET(r->host, base);
    for (size_t i = 0; i < r->num_headers; i++) {
        TO_OFFSET(c->headers[i].name, base);
        TO_OFFSET(c->headers[i].value, base);
    }
    fk_spares_adopt(&l->spares, &c->in, room);
    int status = fk_buf_reserve(&c->in, room, 0);
    base = c->in.data + c->in.off;
    FROM_OFFSET(r->method, base);
    FROM_OFFSET(r->target, base);
    FROM_OFFSET(r->path, base);
    FROM_OFFSET(r->query, base);
    FROM_OFFSET(r->host, base);
    for (size_t i = 0; i < r->num_headers; i++) {
        FROM_OFFSET(c->headers[i].name, base);
        FROM_OFFSET(c->headers[i].value, base);
    }
    return status;
}

/* ---- PROXY protocol -------------------------------------------------------- */

/* Reads the PROXY header that opens each connection of a proxy_protocol loop
 * (fk_proxy_read). A missing, malformed or truncated header closes the
 * connection without a response, as nginx and HAProxy do: the client is a
 * proxy, not an HTTP client. Returns 1 when the connection goes on with HTTP,
 * 0 when it waits for more bytes or was closed. */
static int read_proxy(fk_loop *l, fk_conn *c)
{
    char buf[FK_PROXY_MAX];
    fk_proxy_result r;
    size_t len = 0, taken = 0;
    int drained = 0;
    int status = fk_proxy_read(c->fd, c->ssl != NULL, buf, &r, &len, &taken, &drained);
    if (status == FK_PROXY_AGAIN) {
        c->readable = 0; /* the next edge brings the rest */
        return 0;
    }
    if (status != FK_PROXY_DONE) {
        if (status == FK_PROXY_BAD)
            l->cfg.slot[FK_SLOT_PARSE_ERRORS]++;
        conn_close(l, c);
        return 0;
    }
    l->cfg.slot[FK_SLOT_BYTES_IN] += (uint64_t)taken;
    if (!r.local) {
        c->peer = r.src;
        c->peer_len = r.src_len;
    } else {
        c->proxy_local = 1;
    }
    c->state = FK_CONN_HEAD;
    if (drained)
        c->readable = 0; /* epoll reports what arrives next */
    if (taken > len) {
        if (fk_buf_append(&c->in, buf + len, taken - len) != 0) {
            conn_close(l, c);
            return 0;
        }
        process_input(l, c);
    }
    return 1;
}

void conn_read(fk_loop *l, fk_conn *c)
{
    while (c->readable) {
        if (c->state == FK_CONN_LINGER) {
            char sink[16384];
            ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
            if (n > 0) {
                c->body_len += (size_t)n;
                if (c->body_len > LINGER_MAX)
                    conn_close(l, c);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                c->readable = 0;
                return;
            }
            conn_close(l, c);
            return;
        }
        if (c->state == FK_CONN_WS) {
            if (!ws_reading(c))
                return; /* resumed when Python takes the message, or out drains */
        } else if (c->state != FK_CONN_HEAD && c->state != FK_CONN_BODY) {
            if (c->state != FK_CONN_PROXY || !read_proxy(l, c))
                return; /* busy with a request: read later */
            continue;
        }
        if (c->state == FK_CONN_HEAD && (fk_buf_pending(&c->out) > HIGH_WATER || c->lent_left > 0))
            return; /* pipelining client not reading our answers, or a lent body (the next
                       answers would go before its rest): resumed once out drains */
        ssize_t n;
        size_t room;
        if (c->in.cap == 0) {
            /* Nothing allocated yet: a connection that sends nothing (idle, or a
             * slow client) costs no buffer, so first read onto the stack. */
            char first[FIRST_READ];
            room = sizeof(first);
            n = fk_conn_recv(c, first, room);
            if (n > 0 && fk_buf_append(&c->in, first, (size_t)n) != 0) {
                fail_request(l, c, 500);
                return;
            }
        } else {
            room = read_room(c);
            if (reserve_input(l, c, room) != 0) {
                fail_request(l, c, 500);
                return;
            }
            room = c->in.cap - c->in.len;
            n = fk_conn_recv(c, c->in.data + c->in.len, room);
            if (n > 0)
                c->in.len += (size_t)n;
        }
        if (n > 0) {
            l->cfg.slot[FK_SLOT_BYTES_IN] += (uint64_t)n;
            c->req_bytes += (uint64_t)n;
            if (c->state == FK_CONN_BODY && (c->req.flags & FK_REQ_CHUNKED))
                c->raw_len += (size_t)n;
            /* drained: edge-triggered epoll reports new data (TLS: OpenSSL may
             * hold decrypted bytes, so read on until EAGAIN). Not when the FIN
             * came with these bytes: epoll reported it once, with them, and
             * only the next read (0) tells EOF. */
            if ((size_t)n < room && c->ssl == NULL && !c->peer_shut)
                c->readable = 0;
            if (c->state == FK_CONN_BODY) {
                c->deadline = body_deadline(l, c);
                if (l->cfg.max_input != 0 && c->in.cap >= INPUT_CHECK) {
                    bound_input(l);
                    if (c->fd < 0 || c->state != FK_CONN_BODY)
                        return; /* this one held most: answered 503 */
                }
            }
            process_input(l, c);
            continue;
        }
        if (FK_UNLIKELY(n == FK_TLS_PLAIN_HTTP)) {
            refuse_plain_http(l, c);
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = 0;
            return;
        }
        /* EOF or error. A client that half-closes after a complete pipeline still
         * gets its responses: only close when nothing is in progress. */
        c->readable = 0;
        if (n == 0 && conn_unsent(c) && c->state == FK_CONN_HEAD &&
            fk_buf_pending(&c->in) == 0) {
            c->close_after = 1;
            return;
        }
        conn_close(l, c);
        return;
    }
}

