/* The loop's websockets (fk_loop_int.h): a connection upgraded by Python's
 * fk_loop_ws_accept reads, unmasks and reassembles the client's frames
 * (fk_ws.c) in c->in, answers pings, and hands each whole message to Python
 * (FK_EV_WS), one at a time: nothing more is read until Python took it, so a
 * client cannot make the worker hold more than one message (ws_max_size) and
 * a read's worth. Python's messages are framed into out, with the same
 * high-water mark as a streamed body. */
#define _GNU_SOURCE
#include "fk_loop_int.h"
#include "fk_clock.h"

#include <stdlib.h>
#include <string.h>

/* Appends a server frame (unmasked, final; rsv1: a compressed message).
 * Returns 0, or -1 out of memory. */
static int put_frame(fk_conn *c, int opcode, int rsv1, const char *data, size_t len)
{
    unsigned char h[FK_WS_SERVER_HEADER_MAX];
    size_t hl = fk_ws_frame_header(h, 1, rsv1, opcode, len);
    if (fk_buf_reserve(&c->out, hl + len, 0) != 0)
        return -1;
    memcpy(c->out.data + c->out.len, h, hl);
    if (len != 0)
        memcpy(c->out.data + c->out.len + hl, data, len);
    c->out.len += hl + len;
    return 0;
}

/* Queues our close frame (code 0: an empty one). */
static int put_close(fk_conn *c, int code, const char *reason, size_t len)
{
    char payload[FK_WS_CONTROL_MAX];
    size_t n = 0;
    if (code != 0) {
        if (len > FK_WS_CONTROL_MAX - 2)
            len = FK_WS_CONTROL_MAX - 2;
        payload[0] = (char)(code >> 8);
        payload[1] = (char)code;
        if (len != 0)
            memcpy(payload + 2, reason, len);
        n = 2 + len;
    }
    c->ws->close_sent = 1;
    return put_frame(c, FK_WS_CLOSE, 0, payload, n);
}

/* When c's deadline is next due: the close timeout, the ping timeout, the next
 * keep-alive ping, or none. */
uint64_t ws_deadline(const fk_loop *l, const fk_conn *c)
{
    const fk_ws_conn *w = c->ws;
    if (w->close_sent)
        return w->close_due;
    if (l->cfg.ws_ping_interval_ms == 0)
        return 0;
    if (w->ping_sent != 0)
        return w->ping_sent + l->cfg.ws_ping_timeout_ms;
    return w->next_ping;
}

/* Fails the connection (RFC 6455 7.1.7) with code: our close frame goes out,
 * then the socket closes without waiting for the client's (lingering, so
 * that what it still sends does not reset the close frame away). */
static void ws_fail(fk_loop *l, fk_conn *c, int code)
{
    fk_ws_conn *w = c->ws;
    w->fail_code = code;
    w->in_done = 1;
    if (!w->close_sent && put_close(c, code, NULL, 0) != 0) {
        conn_close(l, c);
        return;
    }
    c->close_after = 1;
    c->linger = 1;
    push_dirty(l, c);
    push_notify(l, c, FK_EV_WS);
}

/* A control frame came whole (fk_ws_decode, FK_WS_CONTROL). */
static void ws_control(fk_loop *l, fk_conn *c)
{
    fk_ws_conn *w = c->ws;
    fk_ws_decoder *d = &w->dec;
    if (d->ctl_opcode == FK_WS_PING) {
        if (!w->close_sent) {
            if (put_frame(c, FK_WS_PONG, 0, d->ctl, d->ctl_len) != 0) {
                conn_close(l, c);
                return;
            }
            push_dirty(l, c);
        }
        return;
    }
    if (d->ctl_opcode == FK_WS_PONG) {
        w->ping_sent = 0;
        w->next_ping = l->now + l->cfg.ws_ping_interval_ms;
        c->deadline = ws_deadline(l, c);
        return;
    }
    /* the client's close: echoed with its code unless ours went first, then
     * the server closes the TCP connection (RFC 6455 7.1.1) */
    w->close_code = d->close_code;
    w->in_done = 1;
    if (!w->close_sent &&
        put_close(c, d->close_code == 1005 ? 0 : d->close_code, NULL, 0) != 0) {
        conn_close(l, c);
        return;
    }
    c->close_after = 1;
    push_dirty(l, c);
    push_notify(l, c, FK_EV_WS);
}

/* Drops the decoded message and the raw bytes before raw_off. */
static void drop_message(fk_conn *c)
{
    fk_ws_conn *w = c->ws;
    fk_buf_consume(&c->in, w->raw_off);
    w->raw_off = 0;
    w->msg_ready = 0;
    fk_ws_message_taken(&w->dec);
}

void ws_input(fk_loop *l, fk_conn *c)
{
    fk_ws_conn *w = c->ws;
    while (c->fd >= 0 && !w->msg_ready && !w->in_done) {
        size_t pending = fk_buf_pending(&c->in);
        if (w->raw_off >= pending) {
            /* all decoded: keep the message so far, forget the frames' headers */
            c->in.len = c->in.off + (size_t)w->dec.msg_len;
            if (c->in.len == c->in.off)
                c->in.off = c->in.len = 0;
            w->raw_off = (size_t)w->dec.msg_len;
            return;
        }
        size_t used = 0;
        int r = fk_ws_decode(&w->dec, c->in.data + c->in.off, w->raw_off, pending - w->raw_off,
                             &used);
        w->raw_off += used;
        if (r == FK_WS_MORE)
            continue;
        if (r == FK_WS_MESSAGE) {
            if (w->close_sent) { /* ours went: what the client still sends is dropped */
                drop_message(c);
                continue;
            }
            w->msg_ready = 1;
            push_notify(l, c, FK_EV_WS);
            return;
        }
        if (r == FK_WS_CONTROL) {
            ws_control(l, c);
            continue;
        }
        ws_fail(l, c, r == FK_WS_ERR_TOO_BIG ? 1009 : r == FK_WS_ERR_UTF8 ? 1007 : 1002);
        return;
    }
}

void ws_timeout(fk_loop *l, fk_conn *c)
{
    fk_ws_conn *w = c->ws;
    if (w->close_sent) {
        if (l->now >= w->close_due)
            conn_close(l, c); /* the client did not answer our close */
        else
            c->deadline = w->close_due;
        return;
    }
    if (conn_unsent(c)) {
        conn_close(l, c); /* the write timeout: each write pushed the deadline on */
        return;
    }
    if (l->cfg.ws_ping_interval_ms == 0) {
        c->deadline = 0;
        return;
    }
    if (w->ping_sent != 0) {
        if (l->now >= w->ping_sent + l->cfg.ws_ping_timeout_ms) {
            if (w->msg_ready) { /* the pong waits behind a message Python has not taken */
                w->ping_sent = 0;
                w->next_ping = l->now + l->cfg.ws_ping_interval_ms;
            } else {
                ws_fail(l, c, 1011); /* no pong in time */
            }
        }
    } else if (l->now >= w->next_ping) {
        static const char payload[] = "fk";
        if (put_frame(c, FK_WS_PING, 0, payload, sizeof(payload) - 1) != 0) {
            conn_close(l, c);
            return;
        }
        w->ping_sent = l->now;
        push_dirty(l, c);
    }
    if (c->fd >= 0)
        c->deadline = ws_deadline(l, c);
}

/* Flushes when out passed the high-water mark; 1 when the caller should wait
 * for the socket (as after_write for a streamed body). */
static int ws_after_write(fk_loop *l, fk_conn *c)
{
    if (fk_buf_pending(&c->out) <= HIGH_WATER)
        return 0;
    int r = conn_flush(l, c);
    if (r < 0)
        return -1;
    if (r == 0 && fk_buf_pending(&c->out) > HIGH_WATER) {
        c->watermark = 1;
        return 1;
    }
    return 0;
}

int fk_loop_ws_accept(fk_loop *l, fk_conn *c, const char *head, size_t len, int deflate)
{
    if (c->fd < 0 || c->state != FK_CONN_HANDLING || c->body_stream)
        return -1;
    fk_ws_conn *w = c->ws;
    if (w == NULL) {
        w = malloc(sizeof(*w));
        if (w == NULL) {
            conn_close(l, c);
            return -1;
        }
        c->ws = w;
    }
    memset(w, 0, sizeof(*w));
    fk_ws_init(&w->dec, l->cfg.ws_max_size != 0 ? l->cfg.ws_max_size : 1);
    w->dec.deflate = deflate != 0;
    count_answer(l, c, 101);
    if (c->handoff_us != 0) {
        fk_hist_add(l->cfg.slot + FK_SLOT_HANDLER, fk_now_us() - c->handoff_us);
        c->handoff_us = 0;
    }
    if (fk_buf_append(&c->out, head, len) != 0) {
        conn_close(l, c);
        return -1;
    }
    count_request_done(l, c);
    /* the request ends, but not its hold: the same Python object answers the
     * websocket, so request_id stays */
    c->fresh = 0;
    c->keep_alive = 0;
    c->started = 0;
    c->last_len = 0;
    fk_buf_consume(&c->in, c->body_off + c->body_len); /* frames may follow the head */
    c->state = FK_CONN_WS;
    w->next_ping = l->now + l->cfg.ws_ping_interval_ms;
    c->deadline = ws_deadline(l, c);
    push_dirty(l, c);
    ws_input(l, c);
    if (c->fd >= 0 && c->readable)
        conn_read(l, c);
    return c->fd >= 0 ? ws_after_write(l, c) : -1;
}

void fk_loop_ws_taken(fk_loop *l, fk_conn *c)
{
    if (c->ws == NULL || !c->ws->msg_ready)
        return;
    drop_message(c);
    if (c->fd < 0 || c->state != FK_CONN_WS)
        return; /* closed with a message still waiting: only dropped */
    ws_input(l, c);
    if (c->fd >= 0 && c->state == FK_CONN_WS && c->readable)
        conn_read(l, c);
}

int fk_loop_ws_send(fk_loop *l, fk_conn *c, int opcode, int compressed, const char *data,
                    size_t len)
{
    if (c->fd < 0 || c->state != FK_CONN_WS || c->ws->close_sent ||
        (opcode != FK_WS_TEXT && opcode != FK_WS_BINARY))
        return -1;
    if (put_frame(c, opcode, compressed && c->ws->dec.deflate, data, len) != 0) {
        conn_close(l, c);
        return -1;
    }
    push_dirty(l, c);
    return ws_after_write(l, c);
}

int fk_loop_ws_close(fk_loop *l, fk_conn *c, int code, const char *reason, size_t len)
{
    if (c->fd < 0 || c->state != FK_CONN_WS)
        return -1;
    fk_ws_conn *w = c->ws;
    if (w->close_sent)
        return 0;
    if (put_close(c, code, reason, len) != 0) {
        conn_close(l, c);
        return -1;
    }
    w->close_due = l->now + WS_CLOSE_MS;
    c->deadline = w->close_due;
    push_dirty(l, c);
    return 0;
}
