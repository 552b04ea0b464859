/* One client connection: its socket, buffers, parse state and deadline. */
#ifndef FK_CONN_H
#define FK_CONN_H

#include <sys/socket.h>
#include "fk_buf.h"
#include "fk_chunked.h"
#include "fk_parse.h"
#include "fk_ws.h"

enum fk_conn_state {
    FK_CONN_FREE = 0,   /* slot unused */
    FK_CONN_HEAD,       /* waiting for (the rest of) a request head */
    FK_CONN_BODY,       /* head parsed, reading the body */
    FK_CONN_READY,      /* complete request queued for the handler */
    FK_CONN_HANDLING,   /* handed to Python; the loop does not read it */
    FK_CONN_STREAMING,  /* response body being produced by Python in pieces */
    FK_CONN_LINGER,     /* response sent, write side shut: discarding input until EOF */
    FK_CONN_CLOSED,     /* socket closed while Python still holds the slot */
    FK_CONN_PROXY,      /* accepted on a PROXY protocol listener: waiting for its header */
    FK_CONN_WS,         /* a websocket after its 101: frames both ways (fk_loop_ws.c); Python
                           holds the slot (py_owned) until the connection is closed */
};

/* A connection's websocket state (FK_CONN_WS), allocated at the 101 and freed
 * with the slot. The client's bytes in c->in are, from in.off: the message
 * being reassembled (dec.msg_len bytes, unmasked), then, from raw_off, bytes
 * not decoded yet. */
typedef struct fk_ws_conn {
    fk_ws_decoder dec;
    size_t raw_off;     /* offset from in.off of the bytes not decoded yet */
    int msg_ready;      /* a whole message waits for Python at in.off (dec.msg_len bytes,
                           dec.msg_opcode): nothing more is read until it is taken */
    int in_done;        /* the client's close frame came (or the connection failed):
                           nothing more is read */
    int close_sent;     /* our close frame is queued: no more messages go out */
    int close_code;     /* the client's close frame's code (1005: none given); 0 none came */
    int fail_code;      /* the code the loop failed the connection with; 0 none */
    uint64_t close_due; /* ms by which the client must answer our close frame */
    uint64_t ping_sent; /* ms our keep-alive ping went out, 0 none outstanding */
    uint64_t next_ping; /* ms when the next keep-alive ping is due */
} fk_ws_conn;

typedef struct fk_conn {
    int fd;
    int listener;       /* index of the listener that accepted it */
    uint32_t index;     /* slot in the loop's slab */
    uint32_t generation; /* bumped on reuse: stale references are detected */
    uint32_t request_id; /* bumped when a request ends: a body stream or a response of an
                            earlier request on the same connection is detected */
    enum fk_conn_state state;
    int readable;       /* edge-triggered: data may wait in the socket */
    int peer_shut;      /* the client's FIN was reported (EPOLLRDHUP): read to EOF, since
                           edge-triggered epoll does not report it again */
    int keep_alive;     /* the current request allows reuse */
    int close_after;    /* close once out is flushed */
    int head_only;      /* current request is HEAD: bodies are not sent */
    int py_owned;       /* Python holds state for the slot (must be told when it closes);
                           see "Who owns a slot" in fk_loop.c */
    int fresh;          /* accepted, no request answered yet */
    int again;          /* a request was answered in C: parse the next one */
    int stream_chunked; /* streaming body uses chunk framing */
    int watermark;      /* Python waits for out to drain before producing more */
    int64_t stream_left; /* identity-framed stream: bytes the handler still owes */
    const char *lent;    /* body bytes in Python's memory that follow out (fk_loop_respond
                            with FK_RESPOND_LEND): Python keeps them alive until the loop
                            gives lent_ticket back (fk_loop_lent_done) */
    size_t lent_left;    /* bytes at lent still to send */
    uint64_t lent_ticket; /* names the lent bytes to Python; 0 none */
    int file_fd;         /* file whose bytes follow out (sendfile), -1 none */
    int64_t file_off;    /* next offset to send from file_fd */
    int64_t file_left;   /* bytes of file_fd still to send */
    uint64_t deadline;  /* CLOCK_MONOTONIC ms after which the connection is closed; 0 none */
    uint64_t started;   /* ms when the current request's first byte arrived */
    uint64_t req_bytes; /* bytes received since then (the minimum data rate) */
    uint64_t accepted_us; /* CLOCK_MONOTONIC us of accept */
    uint64_t ready_us;   /* us when the current request was complete */
    uint64_t handoff_us; /* us when it was handed to Python, 0 once answered */
    uint64_t queue_us;   /* handoff_us minus accept (first request) or ready time */
    uint64_t begun_us;   /* statsd only: handoff_us, kept until the request ends; 0 none */
    int status;          /* statsd only: the status the current request was answered with */
    fk_buf in;          /* received bytes; the current request starts at in.off */
    fk_buf out;         /* bytes waiting to be written */
    size_t last_len;    /* bytes of the head the parser already saw */
    size_t head_len;    /* length of the current request's head */
    size_t body_off;    /* offset in in.data where the (decoded) body begins */
    size_t body_len;    /* body bytes available at body_off */
    size_t raw_len;     /* chunked: undecoded bytes following the decoded body */
    fk_chunked chunked;
    int body_stream;     /* the handler reads the rest of the body itself (fk_body.h) */
    int continue_due;    /* FK_CONTINUE_*: the "100 Continue" the client waits for is sent
                            by the handler's first read of the body, if it reads before it
                            answers (fk_body.c); shared by the two threads, atomically */
    int body_fd;         /* streamed body: the handler thread's own dup of fd, -1 none */
    int body_done;       /* streamed body: its last byte has been received */
    int body_error;      /* streamed body: the fk_status of a failed read, 0 none */
    size_t body_taken;   /* streamed body: bytes at body_off already handed over */
    uint64_t body_rest;  /* streamed Content-Length body: bytes still in the socket */
    uint64_t body_total; /* streamed chunked body: bytes decoded so far */
    uint64_t body_bytes_in; /* bytes the handler's reads received (for the counters) */
    uint64_t body_heard_ms; /* streamed body read without waiting: when bytes last came
                               (the stall limit counts from it) */
    fk_request req;     /* current request; slices point into in.data */
    fk_header *headers; /* the current request's fields (copied from the loop's scratch) */
    size_t headers_cap;
    struct fk_conn *next_ready;  /* link in the loop's queue of requests for Python */
    struct fk_conn *next_dirty;  /* link in the loop's queue of buffers to flush */
    struct fk_conn *next_notify; /* link in the loop's queue of notifications */
    int dirty;           /* on the dirty queue */
    int notify;          /* pending notification for Python (an FK_EV_* type), 0 none */
    int notify_linked;   /* on the notification queue (notify may be 0: withdrawn) */
    int linger;          /* on close, shut the write side and drain input first */
    int watched;         /* in the loop's epoll set (added lazily: see watch_new) */
    void *ssl;           /* OpenSSL's SSL on a TLS connection, NULL on a plain one */
    int tls;             /* FK_TLS_* state bits (fk_tls.h) */
    int proxy_local;     /* its PROXY header named no client (LOCAL, UNKNOWN): the peer
                            is the balancer, whose forwarded fields are the client's own */
    fk_ws_conn *ws;      /* websocket state once upgraded (FK_CONN_WS), else NULL */
    struct sockaddr_storage peer;
    socklen_t peer_len;
} fk_conn;

/* Formats the peer address into host (size >= 46) and sets *port; unix
 * sockets give an empty host and port 0. */
void fk_conn_peer(const fk_conn *c, char *host, size_t size, int *port);

#endif
