/* Request bodies read by the handler as it consumes them (see fk_body.h). */
#define _GNU_SOURCE
#include "fk_body.h"
#include "fk_clock.h"
#include "fk_tls.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>

/* The time (CLOCK_MONOTONIC ms) by which c's next bytes must come under lim,
 * the stall counted from since; UINT64_MAX when nothing limits the wait. */
static uint64_t next_bytes_by(const fk_conn *c, const fk_body_limits *lim, uint64_t since)
{
    uint64_t by = fk_rate_deadline(lim->rate_base_ms, c->body_bytes_in, lim->min_rate);
    if (lim->deadline_ms != 0 && lim->deadline_ms < by)
        by = lim->deadline_ms;
    if (lim->stall_ms > 0 && since + (uint64_t)lim->stall_ms < by)
        by = since + (uint64_t)lim->stall_ms;
    return by;
}

/* Waits until c's socket has bytes for us (or OpenSSL can go on). Returns 0,
 * or FK_ERR_TIMEOUT / FK_ERR_CLOSED. */
static int wait_input(fk_conn *c, const fk_body_limits *lim)
{
    for (;;) {
        uint64_t now = fk_now_ms();
        uint64_t by = next_bytes_by(c, lim, now);
        if (now >= by)
            return FK_ERR_TIMEOUT;
        int wait = by == UINT64_MAX ? -1 : by - now > INT_MAX ? INT_MAX : (int)(by - now);
        int fd = c->body_fd >= 0 ? c->body_fd : c->fd;
        struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
        if (c->tls & FK_TLS_READ_WANTS_WRITE)
            p.events |= POLLOUT; /* a TLS read may first need to write */
        int r = poll(&p, 1, wait);
        if (r > 0)
            return 0;
        if (r == 0)
            return FK_ERR_TIMEOUT;
        if (errno != EINTR && errno != EAGAIN)
            return FK_ERR_CLOSED;
        /* a signal: the worker's handlers run once the handler returns */
    }
}

int fk_body_wait_ms(const fk_conn *c, const fk_body_limits *lim)
{
    uint64_t by = next_bytes_by(c, lim, c->body_heard_ms);
    if (by == UINT64_MAX)
        return -1;
    uint64_t now = fk_now_ms();
    if (now >= by)
        return 0;
    return by - now > INT_MAX ? INT_MAX : (int)(by - now);
}

/* Receives between 1 and len bytes into buf, waiting for them. */
static ssize_t recv_some(fk_conn *c, char *buf, size_t len, const fk_body_limits *lim)
{
    for (;;) {
        ssize_t n = c->body_fd >= 0 ? recv(c->body_fd, buf, len, 0) : fk_conn_recv(c, buf, len);
        if (n > 0) {
            c->body_bytes_in += (uint64_t)n;
            if (lim->nowait)
                c->body_heard_ms = fk_now_ms();
            return n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return FK_ERR_CLOSED;
        if (lim->nowait)
            return fk_now_ms() >= next_bytes_by(c, lim, c->body_heard_ms) ? FK_ERR_TIMEOUT
                                                                          : FK_NEED_MORE;
        int r = wait_input(c, lim);
        if (r < 0)
            return r;
    }
}

/* Content-Length: the bytes go from the socket straight into dst, never past
 * the body's end (what follows belongs to the next request). */
static ssize_t read_identity(fk_conn *c, char *dst, size_t max, const fk_body_limits *lim)
{
    size_t want = c->body_rest < max ? (size_t)c->body_rest : max;
    ssize_t n = recv_some(c, dst, want, lim);
    if (n < 0)
        return n;
    c->body_rest -= (uint64_t)n;
    if (c->body_rest == 0)
        c->body_done = 1;
    return n;
}

/* Chunked: everything decoded so far was handed over, so the next bytes are
 * received and decoded in place at body_off, in the room the loop reserved
 * after the head. Bytes past the body's end stay for the next request. */
static int fill_chunked(fk_conn *c, const fk_body_limits *lim)
{
    size_t start = c->in.off + c->body_off;
    if (c->in.cap <= start)
        return FK_ERR_BAD_REQUEST; /* cannot happen: the loop reserved room */
    c->body_len = c->body_taken = 0;
    c->in.len = start;
    ssize_t n = recv_some(c, c->in.data + start, c->in.cap - start, lim);
    if (n < 0)
        return (int)n;
    size_t len = (size_t)n;
    ssize_t r = fk_chunked_decode(&c->chunked, c->in.data + start, &len);
    if (r < 0 && r != FK_NEED_MORE)
        return (int)r;
    c->body_len = len;
    c->body_total += len;
    if (lim->max_body_size != 0 && c->body_total > lim->max_body_size)
        return FK_ERR_BODY_TOO_LARGE;
    c->in.len = start + len;
    if (r >= 0) {
        c->body_done = 1;
        c->in.len += (size_t)r;
    }
    return 0;
}

/* The interim answer a client sending "Expect: 100-continue" waits for,
 * deferred by the loop to the handler's first read (fk_input.c) so that a
 * handler that refuses the request never makes the client send the body.
 * Nothing else was written to the socket since the head arrived, and the
 * answer waits for it (fk_body_no_continue): 25 bytes into an empty socket
 * buffer. Should the send fail anyway, the client sends the body after its
 * own wait, as RFC 9110 lets it. */
static void send_continue(fk_conn *c)
{
    int due = FK_CONTINUE_DUE;
    if (!__atomic_compare_exchange_n(&c->continue_due, &due, FK_CONTINUE_WRITING, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ssize_t n;
    do
        n = c->body_fd >= 0 ? send(c->body_fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL)
                            : fk_conn_send(c, cont, sizeof(cont) - 1, 0);
    while (n < 0 && errno == EINTR);
    __atomic_store_n(&c->continue_due, FK_CONTINUE_NONE, __ATOMIC_RELEASE);
}

void fk_body_no_continue(fk_conn *c)
{
    if (__atomic_load_n(&c->continue_due, __ATOMIC_ACQUIRE) == FK_CONTINUE_NONE)
        return; /* every answer passes here: no locked instruction for the common case */
    int due = FK_CONTINUE_DUE;
    if (__atomic_compare_exchange_n(&c->continue_due, &due, FK_CONTINUE_NONE, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    while (__atomic_load_n(&c->continue_due, __ATOMIC_ACQUIRE) == FK_CONTINUE_WRITING)
        ; /* one send(2) of 25 bytes on the handler's thread */
}

ssize_t fk_body_read(fk_conn *c, char *dst, size_t max, const fk_body_limits *lim)
{
    if (c->body_error != 0)
        return c->body_error;
    if (max == 0)
        return 0;
    if (FK_UNLIKELY(__atomic_load_n(&c->continue_due, __ATOMIC_RELAXED) != FK_CONTINUE_NONE))
        send_continue(c);
    for (;;) {
        if (c->body_taken < c->body_len) {
            size_t n = c->body_len - c->body_taken;
            if (n > max)
                n = max;
            memcpy(dst, c->in.data + c->in.off + c->body_off + c->body_taken, n);
            c->body_taken += n;
            return (ssize_t)n;
        }
        if (!c->body_stream || c->body_done)
            return 0;
        ssize_t r;
        if (c->req.flags & FK_REQ_CHUNKED) {
            r = fill_chunked(c, lim);
            if (r == 0)
                continue;
        } else {
            r = read_identity(c, dst, max, lim);
            if (r > 0)
                return r;
        }
        if (r != FK_NEED_MORE) /* no bytes yet (lim->nowait) is not an error */
            c->body_error = (int)r;
        return r;
    }
}
