/* The worker's event loop: epoll, accept, read, parse, write, timeouts.
 *
 * The loop never calls Python. fk_loop_next() runs without the GIL until it has
 * something for the caller (a complete request, a signal, a notification) and
 * returns it as an fk_event; the caller answers requests with fk_loop_respond()
 * (and fk_loop_send() for bodies produced in pieces), then calls fk_loop_next()
 * again. Every function must be called from the loop's thread. */
#ifndef FK_LOOP_H
#define FK_LOOP_H

#include <sys/types.h>
#include "fk_body.h"
#include "fk_conn.h"
#include "fk_metrics.h"
#include "fk_proxy.h"
#include "fk_tls.h"
#include "fk_write.h"

/* The loop's configuration, declared once: each line is a field, its C type,
 * its name and its kind, which tells forker/_worker.pyx (loop_config()) how to
 * fill it from a Python value:
 *   FK_CFG_COUNT  size_t, from an integer
 *   FK_CFG_U64    uint64_t, from an integer
 *   FK_CFG_MS     uint64_t milliseconds, from seconds (rounded up: a positive
 *                 time never becomes 0, which means "none" to some fields)
 *   FK_CFG_INT    int or pid_t, from an integer or a bool
 *   FK_CFG_TEXT   const char *, from text (Latin-1) or bytes kept alive as long
 *                 as the loop; NULL for None. Its FK_CFG_LEN field follows it
 *   FK_CFG_LEN    size_t, the length of the FK_CFG_TEXT field before it
 *   FK_CFG_ADDR   a pointer to a buffer kept alive as long as the loop
 * Each value comes from the option of forker/config.py whose c_field names the
 * field, or else from the Engine (descriptors, the shared slot, values derived
 * from several options); a field that neither sets stops the Engine's
 * construction. The struct and the table of its fields that _worker.pyx reads
 * are both made from this list (docs/ARCHITECTURE.md, "Adding an option"). */
#define FK_LOOP_CONFIG_FIELDS(X)                                                              \
    X(size_t, max_connections, FK_CFG_COUNT)                                                  \
    X(size_t, max_per_addr, FK_CFG_COUNT)       /* connections from one client address; 0 no  \
                                                   cap (not with proxy_protocol, where the    \
                                                   peer is the balancer) */                   \
    X(size_t, max_fields, FK_CFG_COUNT)         /* header fields per request (431 beyond) */  \
    X(size_t, max_request_line, FK_CFG_COUNT)   /* bytes (414 beyond) */                      \
    X(size_t, max_field_size, FK_CFG_COUNT)     /* bytes of a field line (431 beyond) */      \
    X(uint64_t, max_body_size, FK_CFG_U64)      /* bytes; 0 unlimited (413 beyond) */         \
    X(uint64_t, body_buffer_size, FK_CFG_U64)   /* larger bodies are left to the handler to   \
                                                   read (fk_body.h); 0: every body is read    \
                                                   whole first */                             \
    X(uint64_t, keepalive_ms, FK_CFG_MS)        /* idle keep-alive; 0 disables keep-alive */  \
    X(uint64_t, header_timeout_ms, FK_CFG_MS)   /* from a request's first byte to its         \
                                                   complete head */                           \
    X(uint64_t, request_timeout_ms, FK_CFG_MS)  /* from first byte to complete body; 0 none */\
    X(uint64_t, write_timeout_ms, FK_CFG_MS)    /* longest stall of a client not reading */   \
    X(uint64_t, min_rate, FK_CFG_U64)           /* bytes/s a request body must keep up, on    \
                                                   average, past its first header_timeout_ms  \
                                                   (Apache's MinRate); 0 none */              \
    X(uint64_t, max_input, FK_CFG_U64)          /* bytes of request bodies the worker holds    \
                                                   while receiving them whole; beyond, the    \
                                                   connection holding most gets 503; 0 none */ \
    X(uint64_t, max_output, FK_CFG_U64)         /* bytes of responses waiting in the worker's \
                                                   buffers for slow readers; beyond, the      \
                                                   connections holding most are closed; 0 no  \
                                                   bound */                                   \
    X(uint64_t, graceful_ms, FK_CFG_MS)         /* drain time after a graceful stop */        \
    X(uint64_t, max_requests, FK_CFG_U64)       /* stop gracefully after that many; 0 never */\
    X(int, wake_fd, FK_CFG_INT)                 /* readable when a signal arrived; -1 none */ \
    X(int, notify_fd, FK_CFG_INT)               /* eventfd written by handler threads; -1 */  \
    X(int, threaded, FK_CFG_INT)                /* handlers run on threads: the caller, not   \
                                                   the loop, keeps busy_since and the request \
                                                   text in the slot */                        \
    X(int, body_events, FK_CFG_INT)             /* streamed bodies are read on the loop's     \
                                                   thread without waiting, when FK_EV_BODY    \
                                                   says (fk_body.h); no dup, TLS too */       \
    X(pid_t, parent_pid, FK_CFG_INT)            /* stop gracefully when getppid() changes;    \
                                                   0 no check */                              \
    X(volatile uint64_t *, slot, FK_CFG_ADDR)   /* the shared worker slot (FK_SLOT_BYTES,     \
                                                   fk_metrics.h); NULL: none */               \
    X(volatile uint64_t *, stats, FK_CFG_ADDR)  /* the worker's statsd area (FK_STATS_BYTES,  \
                                                   fk_metrics.h); NULL: statsd is off and    \
                                                   nothing of it is counted */              \
    X(const char *, server, FK_CFG_TEXT)        /* Server field value; length 0 for none */   \
    X(size_t, server_len, FK_CFG_LEN)                                                         \
    X(const char *, health_path, FK_CFG_TEXT)   /* answered by the loop (200, 503 when        \
                                                   stopping); length 0 none */                \
    X(size_t, health_path_len, FK_CFG_LEN)                                                    \
    X(const char *, constant_body, FK_CFG_TEXT) /* non-NULL: the loop answers every request   \
                                                   itself, 200 with this body and no other    \
                                                   field (the built-in greeting, as nginx's   \
                                                   `return 200 "...";`) */                    \
    X(size_t, constant_body_len, FK_CFG_LEN)                                                  \
    X(int, proxy_protocol, FK_CFG_INT)          /* every connection opens with a PROXY header \
                                                   (v1 or v2), read before any HTTP (and      \
                                                   before a TLS handshake); the client address\
                                                   it names replaces the peer's */            \
    X(const fk_net *, proxy_allow, FK_CFG_ADDR) /* peers allowed to send that header          \
                                                   (fk_net_allows); the connections of others \
                                                   are closed at once */                      \
    X(size_t, proxy_allow_len, FK_CFG_COUNT)                                                  \
    X(int, shared_listeners, FK_CFG_INT)        /* other workers accept from the same sockets \
                                                   (not reuse_port): take turns at the wake-up\
                                                   queue */                    \
    X(int, close_on_fin, FK_CFG_INT)            /* a client's FIN after its request was handed\
                                                   over closes the connection, so that Python \
                                                   learns it left (ASGI's http.disconnect, as \
                                                   uvicorn); else the answer still goes to a  \
                                                   client that half-closed after its request */\
    X(uint64_t, ws_max_size, FK_CFG_U64)        /* bytes of a websocket message, reassembled  \
                                                   (close 1009 beyond); never 0 */            \
    X(uint64_t, ws_ping_interval_ms, FK_CFG_MS) /* a websocket quiet that long is pinged; 0   \
                                                   never */                                   \
    X(uint64_t, ws_ping_timeout_ms, FK_CFG_MS)  /* and failed (1011) without a pong in that   \
                                                   time */

enum fk_cfg_kind {
    FK_CFG_COUNT = 1,
    FK_CFG_U64,
    FK_CFG_MS,
    FK_CFG_INT,
    FK_CFG_TEXT,
    FK_CFG_LEN,
    FK_CFG_ADDR,
};

#define FK_CFG_MEMBER(type, name, kind) type name;
typedef struct {
    FK_LOOP_CONFIG_FIELDS(FK_CFG_MEMBER)
} fk_loop_config;
#undef FK_CFG_MEMBER

enum fk_event_type {
    FK_EV_REQUEST = 1, /* conn holds a complete request for the handler */
    FK_EV_WAKE,        /* a signal arrived: run the Python signal handlers */
    FK_EV_NOTIFY,      /* notify_fd was written: collect handler threads' results */
    FK_EV_WRITABLE,    /* conn's output drained: produce more of its streamed body */
    FK_EV_CLOSED,      /* conn that Python holds was closed: drop its state, release it */
    FK_EV_TICK,        /* about once a second: periodic duties */
    FK_EV_DONE,        /* stopped: every connection finished (or the grace time ran out) */
    FK_EV_BODY,        /* conn's streamed body may be read on (cfg.body_events): bytes, its
                          end or an error came; supersedes FK_EV_WRITABLE, and the reverse */
    FK_EV_WS,          /* websocket conn has news: a message (ws->msg_ready), its close
                          (ws->close_code, ws->fail_code); Python also looks whether a
                          send waiting for the socket may go on (watermark 0) */
};

typedef struct {
    int type;
    fk_conn *conn;
} fk_event;

typedef struct fk_loop fk_loop;

/* Creates a loop; NULL with errno set on failure. cfg is copied; the strings it
 * points to must outlive the loop. */
fk_loop *fk_loop_create(const fk_loop_config *cfg);

/* Closes every connection and frees the loop (not the listeners nor wake_fd). */
void fk_loop_destroy(fk_loop *l);

/* Adds a listening socket (non-blocking, owned by the caller). Returns 0 or -errno. */
int fk_loop_add_listener(fk_loop *l, int fd);

/* Adds a listener whose connections speak TLS with tls (owned by the caller,
 * kept until the loop is destroyed). Returns 0 or -errno. */
int fk_loop_add_tls_listener(fk_loop *l, int fd, fk_tls_ctx *tls);

/* Runs until there is an event for the caller. Returns its type (also in ev). */
int fk_loop_next(fk_loop *l, fk_event *ev);

/* fk_loop_next without waiting, for a caller whose own event loop watches
 * fk_loop_fd(): returns the next event as fk_loop_next does, or 0 once there
 * is none (the queues are empty, what was due is written, and epoll, asked
 * with a zero timeout, reported nothing). Without io, epoll is not asked at
 * all: only the queues and the writes due (after fk_loop_respond and
 * fk_loop_send, which only queue). The caller also calls it with io about
 * every fk_loop_tick_in() milliseconds, for the loop's ticks and timeouts. */
int fk_loop_poll(fk_loop *l, fk_event *ev, int io);

/* The loop's epoll descriptor: readable when fk_loop_poll has work. */
int fk_loop_fd(const fk_loop *l);

/* Milliseconds until the loop's next tick is due. */
uint64_t fk_loop_tick_in(const fk_loop *l);

/* Answers c's current request. With complete 0 only the head is queued and the
 * body follows through fk_loop_send(). Otherwise body is the whole body and the
 * request is finished: with 1 (FK_RESPOND_COPY) the loop copies what the socket
 * does not take at once; with FK_RESPOND_LEND it may keep a pointer to a large
 * body instead (on a plain connection; with handler threads, without writing
 * any of it here, so that the kernel copies it while the GIL is free) and
 * returns 2: the caller keeps body alive and unchanged until the loop gives
 * back the ticket it read from c->lent_ticket (fk_loop_lent_done); a ticket of
 * 0 means the loop is done with body already. Returns 0 to go on, 1 when the
 * caller should wait for FK_EV_WRITABLE before sending more, 2 when it lent the
 * body, -1 when the connection is gone. */
enum { FK_RESPOND_STREAM = 0, FK_RESPOND_COPY = 1, FK_RESPOND_LEND = 2 };
int fk_loop_respond(fk_loop *l, fk_conn *c, const fk_response *r, const char *body,
                    size_t len, int complete);

/* Sends a piece of a streamed body (framed as the head said); last ends it.
 * Returns as fk_loop_respond(). */
int fk_loop_send(fk_loop *l, fk_conn *c, const char *data, size_t len, int last);

/* Writes what c holds now, as far as the socket takes it without waiting,
 * rather than at the loop's next turn: for a body produced on the loop's
 * thread, whose next piece may be long in coming (PEP 3333: a block is not
 * delayed while the application makes the next). Returns 0, or -1 when the
 * connection is gone (FK_EV_CLOSED follows). */
int fk_loop_flush(fk_loop *l, fk_conn *c);

/* Sends bytes [offset, offset + count) of the regular file fd as the body of a
 * streamed response whose head announced count bytes of Content-Length, with
 * sendfile(2) once the head is out. The caller keeps fd open until the loop
 * reports FK_EV_WRITABLE for c with c->file_left 0 (every byte sent; the caller
 * then closes fd and ends the response with fk_loop_send(l, c, NULL, 0, 1)) or
 * FK_EV_CLOSED. Returns 0 when the transfer is under way, 2 when the response
 * finished at once (HEAD, or nothing to send), -1 when the connection is gone. */
int fk_loop_send_file(fk_loop *l, fk_conn *c, int fd, int64_t offset, int64_t count);

/* Takes up to max tickets of lent bodies (fk_loop_respond) the loop no longer
 * uses, into tickets; returns how many. Called after every fk_loop_next(). */
size_t fk_loop_lent_done(fk_loop *l, uint64_t *tickets, size_t max);

/* Python is done with a connection it held (after FK_EV_CLOSED, or to abort a
 * stream it cannot finish): closes it if still open and gives up Python's hold
 * on the slot, which is freed once nothing else refers to it. */
void fk_loop_release(fk_loop *l, fk_conn *c);

/* Websockets (fk_loop_ws.c). fk_loop_ws_accept answers c's request, an
 * upgrade Python accepted, with head (the whole 101 response, which Python
 * made) and turns c into a websocket: the loop then reads, unmasks and
 * reassembles the client's messages (up to cfg.ws_max_size), answers pings,
 * and reports each message with FK_EV_WS; c stays Python's (py_owned, the same
 * request_id) until fk_loop_release after FK_EV_CLOSED. deflate: the 101
 * accepted permessage-deflate, so RSV1 may mark a client's message compressed
 * (c->ws->dec.msg_compressed; Python inflates it). Returns as fk_loop_send. */
int fk_loop_ws_accept(fk_loop *l, fk_conn *c, const char *head, size_t len, int deflate);

/* Python copied the message c->ws reported: the loop goes on reading. */
void fk_loop_ws_taken(fk_loop *l, fk_conn *c);

/* Sends a message (FK_WS_TEXT or FK_WS_BINARY; a text must be UTF-8);
 * compressed: data is its deflated form (permessage-deflate, negotiated at
 * fk_loop_ws_accept), framed with RSV1. Returns 0 to go on, 1 when the caller
 * should wait for FK_EV_WRITABLE (or FK_EV_WS with watermark 0) first, -1
 * when the connection is gone or closing. */
int fk_loop_ws_send(fk_loop *l, fk_conn *c, int opcode, int compressed, const char *data,
                    size_t len);

/* Sends a close frame (code 0: none; reason UTF-8, at most 123 bytes): the
 * connection closes once the client answers it, or a few seconds later.
 * Returns 0, or -1 when the connection is gone. */
int fk_loop_ws_close(fk_loop *l, fk_conn *c, int code, const char *reason, size_t len);

/* Begins a graceful stop (drain) or, with graceful == 0, a fast one. A graceful
 * stop accepts what is queued, then gives up this process's listening sockets;
 * open connections get "Connection: close" on their next response, idle ones
 * close at their keep-alive deadline (or the graceful deadline). */
void fk_loop_stop(fk_loop *l, int graceful);

/* The limits of fk_body_read() on c's streamed body: the loop's header
 * timeout per stall, its request timeout, and max_body_size. Safe to call
 * from a handler's thread. */
void fk_loop_body_limits(const fk_loop *l, const fk_conn *c, fk_body_limits *lim);

/* Requests answered so far, and connections open now. */
uint64_t fk_loop_served(const fk_loop *l);
size_t fk_loop_open(const fk_loop *l);

/* The loop's copy of its configuration (as given to fk_loop_create, with
 * defaults filled in). */
const fk_loop_config *fk_loop_config_of(const fk_loop *l);

#endif
