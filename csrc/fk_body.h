/* Request bodies read by the handler as it consumes them.
 *
 * A body larger than the loop's body_buffer_size is not waited for: the loop
 * hands the request over once its head is in, with whatever body bytes came
 * with it, and the handler reads the rest through fk_body_read(). The read
 * blocks (poll) for the client's next bytes, so it runs without the GIL, on
 * the thread that runs the handler. The loop leaves a connection in
 * FK_CONN_HANDLING or FK_CONN_STREAMING alone on the input side, so the
 * handler's thread is the only reader of its socket and of its input buffer
 * until the request is answered.
 *
 * With the loop's body_events (the ASGI worker: one thread for the loop and
 * the application), reads never wait: a read with nothing in the socket
 * returns FK_NEED_MORE, the loop reports FK_EV_BODY when the socket has news,
 * and fk_body_wait_ms says how long the caller may wait for it before the
 * next read times the body out. Reading on the loop's thread is what lets a
 * TLS body stream too: OpenSSL's connection is never used by two threads. */
#ifndef FK_BODY_H
#define FK_BODY_H

#include <stdint.h>
#include <sys/types.h>
#include "fk_conn.h"

typedef struct {
    int stall_ms;           /* longest wait for the client's next bytes */
    uint64_t deadline_ms;   /* CLOCK_MONOTONIC ms by which the body must be in; 0 none */
    uint64_t max_body_size; /* decoded bytes of a chunked body; 0 unlimited */
    uint64_t rate_base_ms;  /* min_rate: the body must have come at min_rate bytes/s... */
    uint64_t min_rate;      /* ...since rate_base_ms (bytes/s; 0 no minimum) */
    int nowait;             /* FK_NEED_MORE instead of waiting (the loop's body_events) */
} fk_body_limits;

/* The latest time (CLOCK_MONOTONIC ms) by which a body that received got bytes
 * since base_ms keeps up with min_rate bytes/s; UINT64_MAX without a minimum. */
static inline uint64_t fk_rate_deadline(uint64_t base_ms, uint64_t got, uint64_t min_rate)
{
    if (min_rate == 0)
        return UINT64_MAX;
    return base_ms + got / min_rate * 1000 + got % min_rate * 1000 / min_rate;
}

/* Copies up to max bytes of c's body into dst: first what the loop buffered,
 * then bytes read from the socket. Returns the count (> 0), 0 at the end of
 * the body, or a negative fk_status:
 *   FK_ERR_TIMEOUT        the client sent nothing for stall_ms or missed deadline_ms;
 *   FK_ERR_BODY_TOO_LARGE a chunked body passed max_body_size;
 *   FK_ERR_BAD_REQUEST    malformed chunked coding;
 *   FK_ERR_CLOSED         the client closed or reset the connection.
 * After an error every later call returns the same error; the connection is
 * closed once the request is answered. */
ssize_t fk_body_read(fk_conn *c, char *dst, size_t max, const fk_body_limits *lim);

/* With lim->nowait, after a read gave FK_NEED_MORE: how long (ms) the caller
 * may wait for FK_EV_BODY before reading again, after which that read fails
 * with FK_ERR_TIMEOUT unless bytes came; -1 no limit. */
int fk_body_wait_ms(const fk_conn *c, const fk_body_limits *lim);

/* continue_due: none due; due; being written by the handler's thread. */
enum { FK_CONTINUE_NONE = 0, FK_CONTINUE_DUE, FK_CONTINUE_WRITING };

/* The answer begins: a "100 Continue" not sent by now is not sent at all (it
 * must not follow the answer's head). Waits for one being written. Called on
 * the loop's thread. */
void fk_body_no_continue(fk_conn *c);

/* Whether c's body is still (partly) in the socket. */
static inline int fk_body_unread(const fk_conn *c)
{
    return c->body_stream && !c->body_done;
}

#endif
