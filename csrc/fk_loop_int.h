/* The loop's insides, shared by its files and by nothing else:
 *   fk_loop.c    the slab of connections and who owns a slot, the queues,
 *                timeouts, stopping, and the event loop itself;
 *   fk_accept.c  accepting, and a full worker's least-progress slot;
 *   fk_input.c   reading, the PROXY header, parsing heads, request bodies;
 *   fk_output.c  writing, answering (from the loop or the handler), file bodies;
 *   fk_loop_ws.c a connection upgraded to a websocket (FK_CONN_WS).
 * Every function here runs on the loop's thread. */
#ifndef FK_LOOP_INT_H
#define FK_LOOP_INT_H

#include <sys/epoll.h>
#include "fk_loop.h"
#include "fk_metrics.h"
#include "fk_peers.h"
#include "fk_spares.h"

#define MAX_LISTENERS 64
#define MAX_EVENTS 256
#define ACCEPT_BATCH 4 /* per wake-up, so that a burst of connections spreads over workers */
#define FIRST_READ 4096        /* bytes read at once while waiting for a head */
#define READ_CHUNK 16384       /* free space wanted before each read of a body */
#define DIRECT_WRITE 32768     /* bodies this large are written from the caller's memory */
#define LEND_MIN (256 * 1024)   /* without threads, a smaller rest of one is copied, not lent */
#define HIGH_WATER (256 * 1024) /* streamed output above this pauses the producer */
#define LINGER_MS 2000         /* how long we drain a client's input before closing */
#define LINGER_MAX (1 << 20)   /* and how much of it */
#define TICK_MS 1000
#define EMFILE_PAUSE_MS 100
#define WS_CLOSE_MS 5000       /* how long a websocket client has to answer our close frame */
#define TLS_FILE_CHUNK (128 * 1024) /* file bytes read per step when TLS rules out sendfile */

/* epoll_event.data.u64: listeners and control fds are tagged in the top bits;
 * connections carry generation << 32 | slot index. */
#define TAG_LISTENER (1ULL << 63)
#define TAG_WAKE (1ULL << 62)
#define TAG_NOTIFY (1ULL << 61)
#define TAG_MASK (TAG_LISTENER | TAG_WAKE | TAG_NOTIFY)

struct fk_loop {
    fk_loop_config cfg;
    fk_limits limits;          /* cfg's max_request_line and max_field_size */
    int epfd;
    int listeners[MAX_LISTENERS];
    fk_tls_ctx *tls[MAX_LISTENERS]; /* per listener: its TLS context, NULL plain */
    int nlisteners;
    int listening;             /* listeners registered in epoll */
    int stopping;              /* 0 running, 1 graceful, 2 fast */
    int nodelay_inherited;     /* -1 unknown, 0 set per connection, 1 inherited */
    uint64_t stop_deadline;
    uint64_t accept_resume;    /* ms after which accepting resumes after EMFILE */
    int requeue_listeners;     /* accepted this turn: go to the back of the listeners' queue */
    uint64_t now;
    uint64_t next_tick;
    uint64_t served;
    size_t nconns;             /* sockets open */
    size_t nused;              /* slots not free: open sockets, and closed ones that Python
                                * or a queue still refers to; never above max_connections */
    fk_conn *conns;            /* slab of max_connections slots */
    uint32_t *free_slots;      /* stack of free slot indexes */
    uint64_t *unwatched;       /* generation << 32 | slot of connections accepted
                                * but not yet in the epoll set (watch_new) */
    size_t nunwatched;
    size_t nfree;
    size_t high_slot;          /* slots at or above this were never used */
    fk_conn *ready_head, *ready_tail;
    fk_conn *dirty_head;
    fk_conn *notify_head, *notify_tail;
    int wake_pending, notify_pending, tick_pending;
    fk_header *scratch;        /* parser output, copied to the connection on success */
    fk_peers peers;            /* open connections per client address (per_addr) */
    uint32_t per_addr;         /* cfg.max_per_addr, 0 with proxy_protocol */
    fk_date date;
    uint64_t own_slot[FK_SLOT_WORDS]; /* counters when no master shares a slot */
    fk_spares spares;          /* large buffers kept for reuse */
    uint64_t lent_tickets;     /* the last ticket given to a lent body */
    uint64_t *lent_done;       /* tickets of lent bodies the loop is done with, */
    size_t nlent_done;         /* for Python to drop (max_connections of them) */
    struct epoll_event events[MAX_EVENTS];
};

#define FK_INTERNAL __attribute__((visibility("hidden")))

/* Whether c has response bytes the socket has not taken yet: in out, lent by
 * Python, or in a file. */
static inline int conn_unsent(const fk_conn *c)
{
    return fk_buf_pending(&c->out) > 0 || c->lent_left > 0 || c->file_left > 0;
}

/* fk_loop.c */
/* Whether the request being answered is the last before a max_requests
 * recycle: its answer says "Connection: close", so that a client (a
 * balancer's pooled connection) does not send its next request into a
 * socket the worker is about to close. */
static inline int recycle_due(const fk_loop *l)
{
    return l->cfg.max_requests != 0 && l->served + 1 >= l->cfg.max_requests;
}

FK_INTERNAL void push_ready(fk_loop *l, fk_conn *c);
FK_INTERNAL void push_dirty(fk_loop *l, fk_conn *c);
FK_INTERNAL void push_notify(fk_loop *l, fk_conn *c, int type);
/* Closes c's socket; the slot is freed once nothing refers to it. */
FK_INTERNAL void conn_close(fk_loop *l, fk_conn *c);
FK_INTERNAL void lent_end(fk_loop *l, fk_conn *c);
/* Shuts our side and drains the client's input briefly before closing. */
FK_INTERNAL void conn_linger(fk_loop *l, fk_conn *c);
/* The handler is done with c's streamed body (read or not). */
FK_INTERNAL void end_body_stream(fk_conn *c);
/* Stops accepting (recycle: a max_requests recycle). */
FK_INTERNAL void stop_accepting(fk_loop *l, int recycle);
/* Adds (on) or removes the listeners from the epoll set. */
FK_INTERNAL void set_listening(fk_loop *l, int on);

/* fk_accept.c */
/* Accepts up to batch connections from listener index; returns how many. */
FK_INTERNAL int accept_from(fk_loop *l, int index, int batch);
/* Adds the connections accepted this turn to the epoll set. */
FK_INTERNAL void watch_new(fk_loop *l);
/* Whether c is an idle keep-alive connection (nothing in, nothing out). */
FK_INTERNAL int conn_idle(const fk_conn *c);

/* fk_input.c */
/* Reads what c's socket holds and parses it, while its state allows. */
FK_INTERNAL void conn_read(fk_loop *l, fk_conn *c);
/* Parses what c->in holds: heads and bodies, answering what the loop answers. */
FK_INTERNAL void process_input(fk_loop *l, fk_conn *c);

/* fk_output.c */
/* Writes what out holds (then the file part). Returns 1 when all is written,
 * 0 when the socket is full (EPOLLOUT will tell), -1 when the connection
 * failed and was closed. */
FK_INTERNAL int conn_flush(fk_loop *l, fk_conn *c);
FK_INTERNAL void count_status(fk_loop *l, int status);
FK_INTERNAL void count_answer(fk_loop *l, fk_conn *c, int status);
/* Answers status from the loop itself and closes after it (lingering). */
FK_INTERNAL void fail_request(fk_loop *l, fk_conn *c, int status);
/* The request is answered: account for it and reset the connection for the
 * next one. Returns 1 when bytes of a next request may be parsed now. */
FK_INTERNAL int request_done(fk_loop *l, fk_conn *c);
/* The counting part of request_done: served, max_requests, statsd. */
FK_INTERNAL void count_request_done(fk_loop *l, fk_conn *c);

/* fk_loop_ws.c */
/* Decodes what c->in holds of a websocket's frames, while no message waits. */
FK_INTERNAL void ws_input(fk_loop *l, fk_conn *c);
/* When c's deadline is next due, its output written: the close timeout, the
 * ping timeout, the next keep-alive ping, or 0 none. */
FK_INTERNAL uint64_t ws_deadline(const fk_loop *l, const fk_conn *c);
/* c's deadline passed: the close or write timeout, or a keep-alive ping. */
FK_INTERNAL void ws_timeout(fk_loop *l, fk_conn *c);
/* Whether c may read: no message waits for Python, the input is not over, and
 * the client is taking what we send. */
static inline int ws_reading(const fk_conn *c)
{
    return !c->ws->msg_ready && !c->ws->in_done && fk_buf_pending(&c->out) <= HIGH_WATER;
}

#endif
