/* The loop's output side: writing, answering (from the loop or the handler),
 * file bodies (fk_loop_int.h). */
#define _GNU_SOURCE
#include "fk_loop_int.h"
#include "fk_clock.h"
#include "fk_tls.h"

#include <errno.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void finish_request(fk_loop *l, fk_conn *c);
static int send_file_part(fk_loop *l, fk_conn *c);

/* ---- writing --------------------------------------------------------------- */

/* Whether the connection is closed once out is written: no response is still
 * to come from the handler. */
static int closes_when_flushed(const fk_conn *c)
{
    return c->close_after && c->state != FK_CONN_STREAMING && c->state != FK_CONN_HANDLING &&
           c->state != FK_CONN_READY;
}

/* Writes what out holds and a lent body after it, in one sendmsg while both
 * wait (the head and the start of the body share a segment). Returns as send(2). */
static ssize_t send_out(fk_conn *c, int flags)
{
    size_t head = fk_buf_pending(&c->out);
    if (c->lent_left == 0)
        return fk_conn_send(c, c->out.data + c->out.off, head, flags);
    FK_ASSERT(c->ssl == NULL); /* lent only on plain connections (fk_loop_respond) */
    struct iovec iov[2] = {
        {.iov_base = c->out.data + c->out.off, .iov_len = head},
        {.iov_base = (void *)(uintptr_t)c->lent, .iov_len = c->lent_left},
    };
    struct msghdr msg = {.msg_iov = head > 0 ? iov : iov + 1, .msg_iovlen = head > 0 ? 2 : 1};
    return sendmsg(c->fd, &msg, MSG_NOSIGNAL | flags);
}

/* Accounts for n bytes the socket took from out and then the lent body. */
static void sent_out(fk_loop *l, fk_conn *c, size_t n)
{
    size_t head = fk_buf_pending(&c->out);
    fk_buf_consume(&c->out, n < head ? n : head);
    l->cfg.slot[FK_SLOT_BYTES_OUT] += (uint64_t)n;
    c->deadline = l->now + l->cfg.write_timeout_ms;
    if (n <= head)
        return;
    c->lent += n - head;
    c->lent_left -= n - head;
    if (c->lent_left == 0)
        lent_end(l, c);
}

int conn_flush(fk_loop *l, fk_conn *c)
{
    /* The last bytes before a close go with MSG_MORE: the kernel holds the tail
     * of the response, and the FIN that close() or shutdown() adds rides in its
     * segment, which saves the client a wake-up and the loopback two segments
     * (a separate FIN and its ACK) per connection. */
    int flags = closes_when_flushed(c) && c->file_left == 0 ? MSG_MORE : 0;
    while (conn_unsent(c)) {
        if (fk_buf_pending(&c->out) == 0 && c->lent_left == 0) {
            int r = send_file_part(l, c);
            if (r <= 0)
                return r;
            continue;
        }
        ssize_t n = send_out(c, flags);
        if (n > 0) {
            sent_out(l, c, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        conn_close(l, c);
        return -1;
    }
    fk_spares_trim(&l->spares, &c->out);
    if (c->state == FK_CONN_HEAD && fk_buf_pending(&c->in) == 0)
        c->deadline = l->now + l->cfg.keepalive_ms;
    else if (c->state == FK_CONN_WS)
        c->deadline = ws_deadline(l, c); /* written: the write timeout is over */
    if (closes_when_flushed(c)) {
        if (c->linger || fk_buf_pending(&c->in) > 0)
            conn_linger(l, c);
        else
            conn_close(l, c);
        return -1;
    }
    if (c->watermark) {
        c->watermark = 0;
        push_notify(l, c, FK_EV_WRITABLE);
    }
    return 1;
}

void count_status(fk_loop *l, int status)
{
    if (status >= 100 && status < 600)
        l->cfg.slot[FK_SLOT_STATUS + status / 100 - 1]++;
}

/* A request answered (by the handler, or by the loop itself): the slot counts
 * its status class at once; statsd counts its status code when it ends, with
 * the requests (request_done). A request refused by the parser is neither. */
void count_answer(fk_loop *l, fk_conn *c, int status)
{
    count_status(l, status);
    if (FK_UNLIKELY(l->cfg.stats != NULL))
        c->status = status;
}

/* statsd: a request ended; its status code, and its duration into the ring,
 * before TIMED moves on (a release store: the master reads only entries below
 * TIMED, and drops those TIMED has since lapped). The duration runs from the
 * hand-over to Python to the last byte given to the loop, as gunicorn times a
 * request from the handler call to the end of its response. */
static void stats_request_done(fk_loop *l, fk_conn *c)
{
    volatile uint64_t *stats = l->cfg.stats;
    unsigned code = (unsigned)(c->status - FK_STATS_FIRST_CODE);
    if (code < FK_STATS_CODES_COUNT)
        stats[FK_STATS_CODES + code]++;
    uint64_t n = stats[FK_STATS_TIMED];
    stats[FK_STATS_DURATIONS + n % FK_STATS_RING] = c->begun_us ? fk_now_us() - c->begun_us : 0;
    __atomic_store_n(&stats[FK_STATS_TIMED], n + 1, __ATOMIC_RELEASE);
    c->begun_us = 0;
    c->status = 0;
}

void fail_request(fk_loop *l, fk_conn *c, int status)
{
    l->cfg.slot[FK_SLOT_PARSE_ERRORS]++;
    count_status(l, status);
    c->close_after = 1;
    c->linger = 1;
    c->state = FK_CONN_HEAD;
    fk_buf_consume(&c->in, fk_buf_pending(&c->in));
    if (fk_write_error(&c->out, status, &l->date, l->cfg.server, l->cfg.server_len) != 0) {
        conn_close(l, c);
        return;
    }
    conn_flush(l, c);
}

/* ---- answering ------------------------------------------------------------- */

/* The request is answered: account for it and go on with the connection. */
/* The request is answered: account for it and reset the connection for the
 * next one. Returns 1 when bytes of a next request may be parsed now. */
void count_request_done(fk_loop *l, fk_conn *c)
{
    l->served++;
    l->cfg.slot[FK_SLOT_REQUESTS] = l->served;
    if (FK_UNLIKELY(l->cfg.stats != NULL))
        stats_request_done(l, c);
    if (!l->cfg.threaded)
        l->cfg.slot[FK_SLOT_BUSY_SINCE] = 0;
    if (l->cfg.max_requests != 0 && l->served >= l->cfg.max_requests && !l->stopping)
        stop_accepting(l, 1);
}

int request_done(fk_loop *l, fk_conn *c)
{
    count_request_done(l, c);
    c->py_owned = 0;
    c->fresh = 0;
    c->request_id++;
    if (c->body_stream) {
        l->cfg.slot[FK_SLOT_BYTES_IN] += c->body_bytes_in;
        end_body_stream(c);
    }
    fk_buf_consume(&c->in, c->body_off + c->body_len);
    c->state = FK_CONN_HEAD;
    c->last_len = 0;
    c->started = 0;
    if (!c->keep_alive || l->stopping)
        c->close_after = 1;
    push_dirty(l, c);
    if (c->close_after)
        return 0;
    c->deadline = l->now + l->cfg.keepalive_ms;
    fk_spares_trim(&l->spares, &c->in);
    /* pipelined: the next request may be complete already; held back while
     * out is backlogged, or a client that never reads makes us buffer them all */
    return fk_buf_pending(&c->in) > 0 && fk_buf_pending(&c->out) <= HIGH_WATER &&
           c->lent_left == 0;
}

static void finish_request(fk_loop *l, fk_conn *c)
{
    if (request_done(l, c))
        process_input(l, c);
}

static int after_write(fk_loop *l, fk_conn *c)
{
    if (c->fd < 0)
        return -1;
    if (fk_buf_pending(&c->out) > HIGH_WATER) {
        int r = conn_flush(l, c);
        if (r < 0)
            return -1;
        if (r == 0 && c->state == FK_CONN_STREAMING && fk_buf_pending(&c->out) > HIGH_WATER) {
            c->watermark = 1;
            return 1;
        }
    }
    return 0;
}

int fk_loop_respond(fk_loop *l, fk_conn *c, const fk_response *r, const char *body, size_t len,
                    int complete)
{
    if (c->fd < 0)
        return -1;
    fk_body_no_continue(c);
    count_answer(l, c, r->status);
    if (c->handoff_us != 0) {
        fk_hist_add(l->cfg.slot + FK_SLOT_HANDLER, fk_now_us() - c->handoff_us);
        c->handoff_us = 0;
    }
    if (r->flags & FK_RESP_CLOSE)
        c->keep_alive = 0;
    if (r->content_length == FK_BODY_UNTIL_CLOSE)
        c->keep_alive = 0;
    if (l->stopping || recycle_due(l))
        c->keep_alive = 0;
    if (FK_UNLIKELY(fk_body_unread(c))) {
        c->keep_alive = 0; /* the rest of the body is drained by the lingering close */
        c->linger = 1;
    }
    int has_body = fk_status_has_body(r->status) && !c->head_only;
    int lent = 0;
    if (fk_write_head(&c->out, r, c->req.minor_version, c->keep_alive, &l->date, l->cfg.server,
                      l->cfg.server_len) != 0) {
        conn_close(l, c);
        return -1;
    }
    if (!complete) {
        c->state = FK_CONN_STREAMING;
        c->py_owned = 1;
        c->stream_chunked = r->content_length == FK_BODY_CHUNKED && has_body;
        c->stream_left = has_body ? r->content_length : 0;
        if (!has_body) {
            c->stream_chunked = 0;
            c->head_only = 1;
        }
        push_dirty(l, c);
        return after_write(l, c);
    }
    if (has_body && len >= DIRECT_WRITE && c->ssl == NULL) {
        /* A large body goes out from the caller's memory: with the pending head
         * in one sendmsg, here, unless handler threads wait for the GIL this
         * call holds. What the socket does not take is lent (the loop's turn
         * writes it without the GIL), or copied: without FK_RESPOND_LEND, and
         * without threads when it is small (a copy of a few segments costs
         * less than Python's bookkeeping of a loan). */
        c->lent = body;
        c->lent_left = len;
        if (!l->cfg.threaded || complete != FK_RESPOND_LEND) {
            ssize_t n;
            do
                n = send_out(c, 0);
            while (n < 0 && errno == EINTR);
            if (n > 0)
                sent_out(l, c, (size_t)n);
            /* on EAGAIN or an error, the flush retries or fails as usual */
        }
        body = c->lent;
        len = c->lent_left;
        if (len != 0 && complete == FK_RESPOND_LEND && (l->cfg.threaded || len >= LEND_MIN)) {
            c->lent_ticket = ++l->lent_tickets;
            lent = 1;
            len = 0;
        } else {
            c->lent = NULL;
            c->lent_left = 0;
        }
    }
    if (has_body && len != 0) {
        fk_spares_adopt(&l->spares, &c->out, len);
        if (fk_buf_append(&c->out, body, len) != 0) {
            conn_close(l, c);
            return -1;
        }
    }
    finish_request(l, c);
    int rc = after_write(l, c);
    return lent ? 2 : rc;
}

/* Sends the next part of a file body. Returns 1 when progress was made, 0 when
 * the socket is full, -1 when the connection failed and was closed. After the
 * last byte Python is told (FK_EV_WRITABLE): it closes the file and ends the
 * response with fk_loop_send(last), so the slot stays Python's until then. */
static ssize_t read_file_part(fk_conn *c, size_t want, off_t *off);

static int send_file_part(fk_loop *l, fk_conn *c)
{
    off_t off = (off_t)c->file_off;
    size_t want = c->file_left > (1 << 20) ? (size_t)(1 << 20) : (size_t)c->file_left;
    ssize_t n = c->ssl != NULL ? read_file_part(c, want, &off)
                               : sendfile(c->fd, c->file_fd, &off, want);
    if (n < 0 && errno == EINTR)
        return 1;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n <= 0) { /* an error, or the file shrank under us: the body cannot end */
        c->file_left = 0;
        c->file_fd = -1;
        conn_close(l, c);
        return -1;
    }
    c->file_off = (int64_t)off;
    c->file_left -= n;
    l->cfg.slot[FK_SLOT_BYTES_OUT] += (uint64_t)n;
    c->deadline = l->now + l->cfg.write_timeout_ms;
    if (c->file_left == 0) {
        c->file_fd = -1;
        c->stream_left = 0;
        push_notify(l, c, FK_EV_WRITABLE);
    }
    return 1;
}

/* TLS has no sendfile: the next part of the file is read into out, which the
 * caller then writes through OpenSSL. Returns as sendfile(2). */
static ssize_t read_file_part(fk_conn *c, size_t want, off_t *off)
{
    if (want > TLS_FILE_CHUNK)
        want = TLS_FILE_CHUNK;
    if (fk_buf_reserve(&c->out, want, 0) != 0) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t n = pread(c->file_fd, c->out.data + c->out.len, want, *off);
    if (n > 0) {
        c->out.len += (size_t)n;
        *off += n;
    }
    return n;
}

int fk_loop_send_file(fk_loop *l, fk_conn *c, int fd, int64_t offset, int64_t count)
{
    if (c->fd < 0 || c->state != FK_CONN_STREAMING || c->stream_chunked || offset < 0 ||
        count < 0)
        return -1;
    if (c->head_only || count == 0) {
        c->stream_left = 0;
        finish_request(l, c);
        return 2;
    }
    c->file_fd = fd;
    c->file_off = offset;
    c->file_left = count;
    push_dirty(l, c);
    return 0;
}

int fk_loop_flush(fk_loop *l, fk_conn *c)
{
    if (c->fd < 0)
        return -1;
    return conn_flush(l, c) < 0 ? -1 : 0;
}

int fk_loop_send(fk_loop *l, fk_conn *c, const char *data, size_t len, int last)
{
    if (c->fd < 0 || c->state != FK_CONN_STREAMING || c->file_left > 0)
        return -1;
    int failed = 0;
    if (!c->head_only && len != 0) {
        if (c->stream_chunked) {
            failed = fk_write_chunk(&c->out, data, len);
        } else {
            if (c->stream_left >= 0) {
                if ((uint64_t)c->stream_left < len) {
                    len = (size_t)c->stream_left; /* more than Content-Length said */
                    c->keep_alive = 0;
                }
                c->stream_left -= (int64_t)len;
            }
            failed = fk_buf_append(&c->out, data, len);
        }
    }
    if (!failed && last) {
        if (c->stream_chunked && !c->head_only)
            failed = fk_write_last_chunk(&c->out);
        else if (c->stream_left > 0 && !c->head_only)
            c->keep_alive = 0; /* fewer bytes than promised: only a close can tell */
    }
    if (failed) {
        c->py_owned = 0;
        conn_close(l, c);
        return -1;
    }
    push_dirty(l, c);
    if (last) {
        c->watermark = 0;
        finish_request(l, c);
    }
    return after_write(l, c);
}

