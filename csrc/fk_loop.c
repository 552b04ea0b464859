#define _GNU_SOURCE
#include "fk_loop.h"
#include "fk_metrics.h"
#include "fk_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 64
#define MAX_EVENTS 256
#define ACCEPT_BATCH 4 /* per wake-up, so that a burst of connections spreads over workers */
#define FIRST_READ 4096        /* bytes read at once while waiting for a head */
#define READ_CHUNK 16384       /* free space wanted before each read of a body */
#define BUF_KEEP 65536         /* buffers larger than this are recycled when empty */
#define SPARES 2               /* large buffers kept by the loop for reuse */
#define SPARE_MAX (8u << 20)   /* largest buffer worth keeping */
#define DIRECT_WRITE 32768     /* bodies this large are written from the caller's memory */
#define HIGH_WATER (256 * 1024) /* streamed output above this pauses the producer */
#define LINGER_MS 2000         /* how long we drain a client's input before closing */
#define LINGER_MAX (1 << 20)   /* and how much of it */
#define TICK_MS 1000
#define EMFILE_PAUSE_MS 100
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
    fk_date date;
    uint64_t own_slot[FK_SLOT_WORDS]; /* counters when no master shares a slot */
    struct {
        char *data;
        size_t cap;
        int used; /* taken or stored since the last sweep */
    } spare[SPARES];
    struct epoll_event events[MAX_EVENTS];
};

uint64_t fk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void refresh_clock(fk_loop *l)
{
    l->now = fk_now_ms();
    fk_date_update(&l->date, time(NULL));
    l->cfg.slot[FK_SLOT_HEARTBEAT] = l->now;
}

fk_loop *fk_loop_create(const fk_loop_config *cfg)
{
    fk_loop *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->cfg = *cfg;
    if (l->cfg.slot == NULL)
        l->cfg.slot = l->own_slot;
    l->epfd = -1;
    l->nodelay_inherited = -1;
    if (l->cfg.max_connections == 0)
        l->cfg.max_connections = 1000;
    if (l->cfg.max_fields == 0)
        l->cfg.max_fields = 100;
    l->limits.max_request_line = l->cfg.max_request_line;
    l->limits.max_field_size = l->cfg.max_field_size;
    l->conns = calloc(l->cfg.max_connections, sizeof(fk_conn));
    l->free_slots = malloc(l->cfg.max_connections * sizeof(uint32_t));
    l->unwatched = malloc(l->cfg.max_connections * sizeof(uint64_t));
    l->scratch = malloc(l->cfg.max_fields * sizeof(fk_header));
    if (l->conns == NULL || l->free_slots == NULL || l->unwatched == NULL || l->scratch == NULL)
        goto fail;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN};
    if (cfg->wake_fd >= 0) {
        ev.data.u64 = TAG_WAKE;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, cfg->wake_fd, &ev) != 0)
            goto fail;
    }
    if (cfg->notify_fd >= 0) {
        ev.data.u64 = TAG_NOTIFY;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, cfg->notify_fd, &ev) != 0)
            goto fail;
    }
    refresh_clock(l);
    l->next_tick = l->now + TICK_MS;
    return l;
fail:
    fk_loop_destroy(l);
    return NULL;
}

int fk_loop_add_listener(fk_loop *l, int fd)
{
    if (l->nlisteners >= MAX_LISTENERS)
        return -EMFILE;
    /* EPOLLEXCLUSIVE: a connection on the shared socket wakes one worker only. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE,
                             .data.u64 = TAG_LISTENER | (uint64_t)l->nlisteners};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -errno;
    l->listeners[l->nlisteners++] = fd;
    l->listening = 1;
    return 0;
}

int fk_loop_add_tls_listener(fk_loop *l, int fd, fk_tls_ctx *tls)
{
    int r = fk_loop_add_listener(l, fd);
    if (r == 0)
        l->tls[l->nlisteners - 1] = tls;
    return r;
}

static void set_listening(fk_loop *l, int on)
{
    if (l->listening == on)
        return;
    for (int i = 0; i < l->nlisteners; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE,
                                 .data.u64 = TAG_LISTENER | (uint64_t)i};
        epoll_ctl(l->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, l->listeners[i], &ev);
    }
    l->listening = on;
}

/* Moves this worker to the back of the shared listeners' wake-up queue. With
 * EPOLLEXCLUSIVE a new connection wakes the first worker of that queue that is
 * waiting, so the first worker registered, quick to accept and soon waiting
 * again, would take nearly every connection of a burst (max/mean 1.7-2.0 over
 * 100 connections opened at once by 2 workers): keep-alive connections then
 * load one CPU for their whole life. Registering anew after each accepting
 * turn sends the next connection to another waiting worker, for two epoll_ctl
 * calls per accepting turn, not per connection. */
static void requeue_listeners(fk_loop *l)
{
    if (!l->listening)
        return;
    set_listening(l, 0);
    set_listening(l, 1);
}

/* ---- queues ---------------------------------------------------------------- */

static void push_ready(fk_loop *l, fk_conn *c)
{
    c->state = FK_CONN_READY;
    c->ready_us = fk_now_us();
    c->next_ready = NULL;
    if (l->ready_tail)
        l->ready_tail->next_ready = c;
    else
        l->ready_head = c;
    l->ready_tail = c;
}

static void push_dirty(fk_loop *l, fk_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = 1;
    c->next_dirty = l->dirty_head;
    l->dirty_head = c;
}

static void push_notify(fk_loop *l, fk_conn *c, int type)
{
    if (c->notify_linked) {
        if (c->notify != FK_EV_CLOSED)
            c->notify = type; /* closing supersedes writable */
        return;
    }
    c->notify = type;
    c->notify_linked = 1;
    c->next_notify = NULL;
    if (l->notify_tail)
        l->notify_tail->next_notify = c;
    else
        l->notify_head = c;
    l->notify_tail = c;
}

/* ---- large buffers ----------------------------------------------------------- */

/* Frees an emptied (or abandoned) buffer, keeping a large one's memory as a
 * spare: a run of uploads or large responses then reuses mapped pages instead
 * of faulting fresh ones in for every request. Spares unused for a sweep are
 * freed, so an idle worker shrinks back. */
static void buf_release(fk_loop *l, fk_buf *b)
{
    if (b->cap > BUF_KEEP && b->cap <= SPARE_MAX) {
        int slot = -1;
        for (int i = 0; i < SPARES; i++)
            if (l->spare[i].data == NULL || (slot >= 0 && l->spare[i].cap < l->spare[slot].cap) ||
                (slot < 0 && l->spare[i].cap < b->cap))
                slot = i;
        if (slot >= 0) {
            free(l->spare[slot].data);
            l->spare[slot].data = b->data;
            l->spare[slot].cap = b->cap;
            l->spare[slot].used = 1;
            b->data = NULL;
            b->off = b->len = b->cap = 0;
            return;
        }
    }
    fk_buf_free(b);
}

static void buf_trim(fk_loop *l, fk_buf *b)
{
    if (b->len == b->off && b->cap > BUF_KEEP)
        buf_release(l, b);
}

/* Before b grows to hold room more bytes: moves its pending bytes into a spare
 * large enough, if the loop has one. */
static void buf_adopt_spare(fk_loop *l, fk_buf *b, size_t room)
{
    size_t pending = b->len - b->off;
    if (b->cap - b->len >= room || room > SPARE_MAX)
        return;
    size_t need = pending + room;
    int best = -1;
    for (int i = 0; i < SPARES; i++)
        if (l->spare[i].data != NULL && l->spare[i].cap >= need &&
            (best < 0 || l->spare[i].cap < l->spare[best].cap))
            best = i;
    if (best < 0 || l->spare[best].cap <= b->cap)
        return;
    char *data = l->spare[best].data;
    if (pending != 0)
        memcpy(data, b->data + b->off, pending);
    free(b->data);
    b->data = data;
    b->cap = l->spare[best].cap;
    b->off = 0;
    b->len = pending;
    l->spare[best].data = NULL;
    l->spare[best].cap = 0;
    l->spare[best].used = 1;
}

static void spares_sweep(fk_loop *l)
{
    for (int i = 0; i < SPARES; i++) {
        if (l->spare[i].data != NULL && !l->spare[i].used) {
            free(l->spare[i].data);
            l->spare[i].data = NULL;
            l->spare[i].cap = 0;
        }
        l->spare[i].used = 0;
    }
}

/* ---- closing --------------------------------------------------------------- */

/* Who owns a slot. A slot is taken by accept and given back by free_slot, and
 * only there; between the two, four things may refer to it, and it is freed
 * only once none does (conn_try_free):
 *   - its socket (fd >= 0), which the loop owns;
 *   - Python (py_owned): from the hand-over of a request until Python has
 *     answered it whole, or until it calls fk_loop_release after FK_EV_CLOSED.
 *     A handler thread reading a streamed body (fk_body.h) is covered by it:
 *     Python finishes the request only once that thread is done with the body,
 *     and the request's input (in, body_fd, the chunked state) is left alone by
 *     the loop until then;
 *   - the dirty queue (dirty) and the notification queue (notify_linked), which
 *     link through the slot itself.
 * Accepting counts slots, not sockets: a closed slot that Python still holds
 * is not free, so the slab never overflows. A slot's generation changes when it
 * is freed; its request_id when a request on it ends. */
static void free_slot(fk_loop *l, fk_conn *c);

static void resume_accepting(fk_loop *l)
{
    if (!l->listening && !l->stopping && l->accept_resume == 0 &&
        l->nused < l->cfg.max_connections)
        set_listening(l, 1);
}

static void conn_try_free(fk_loop *l, fk_conn *c)
{
    if (c->state == FK_CONN_FREE || c->fd >= 0 || c->py_owned || c->dirty || c->notify_linked)
        return;
    free_slot(l, c);
}

/* The handler is done with c's streamed body (read or not). */
static void end_body_stream(fk_conn *c)
{
    if (!c->body_stream)
        return;
    if (c->body_fd >= 0)
        close(c->body_fd);
    c->body_fd = -1;
    c->body_stream = 0;
}

static void free_slot(fk_loop *l, fk_conn *c)
{
    FK_ASSERT(c->state != FK_CONN_FREE && c->fd < 0 && !c->py_owned && !c->dirty &&
              !c->notify_linked && l->nused > 0);
    end_body_stream(c);
    buf_release(l, &c->in);
    buf_release(l, &c->out);
    free(c->headers);
    c->headers = NULL;
    c->headers_cap = 0;
    c->state = FK_CONN_FREE;
    c->generation++;
    l->free_slots[l->nfree++] = c->index;
    l->nused--;
    resume_accepting(l);
}

static void conn_close(fk_loop *l, fk_conn *c)
{
    if (c->fd >= 0) {
        if (c->ssl != NULL)
            fk_tls_close(c);
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
        l->nconns--;
        l->cfg.slot[FK_SLOT_CONN_OPEN] = l->nconns;
    }
    if (c->py_owned) {
        c->state = FK_CONN_CLOSED;
        push_notify(l, c, FK_EV_CLOSED);
        return;
    }
    if (c->state == FK_CONN_READY) {
        /* unlink from the ready queue: only a client that hangs up gets here */
        fk_conn *prev = NULL, *p = l->ready_head;
        while (p != NULL && p != c) {
            prev = p;
            p = p->next_ready;
        }
        if (p != NULL) {
            if (prev)
                prev->next_ready = c->next_ready;
            else
                l->ready_head = c->next_ready;
            if (l->ready_tail == c)
                l->ready_tail = prev;
        }
    }
    c->state = FK_CONN_CLOSED; /* freed now, or when the queues it is on are drained */
    conn_try_free(l, c);
}

/* Shuts our side and drains the client's input briefly, so that unread request
 * bytes do not make the kernel reset the connection before the client has read
 * our final response (nginx's lingering close). */
static void conn_linger(fk_loop *l, fk_conn *c)
{
    if (c->ssl != NULL)
        fk_tls_close(c); /* close_notify first; the input is drained raw */
    shutdown(c->fd, SHUT_WR);
    c->state = FK_CONN_LINGER;
    c->readable = 1;
    c->deadline = l->now + LINGER_MS;
    c->body_len = 0;
}

/* ---- writing --------------------------------------------------------------- */

/* Writes what out holds. Returns 1 when out is empty, 0 when the socket is full
 * (EPOLLOUT will tell), -1 when the connection failed and was closed. */
static void finish_request(fk_loop *l, fk_conn *c);
static int send_file_part(fk_loop *l, fk_conn *c);

/* Whether the connection is closed once out is written: no response is still
 * to come from the handler. */
static int closes_when_flushed(const fk_conn *c)
{
    return c->close_after && c->state != FK_CONN_STREAMING && c->state != FK_CONN_HANDLING &&
           c->state != FK_CONN_READY;
}

static int conn_flush(fk_loop *l, fk_conn *c)
{
    /* The last bytes before a close go with MSG_MORE: the kernel holds the tail
     * of the response, and the FIN that close() or shutdown() adds rides in its
     * segment, which saves the client a wake-up and the loopback two segments
     * (a separate FIN and its ACK) per connection. */
    int flags = closes_when_flushed(c) && c->file_left == 0 ? MSG_MORE : 0;
    while (fk_buf_pending(&c->out) > 0 || c->file_left > 0) {
        if (fk_buf_pending(&c->out) == 0) {
            int r = send_file_part(l, c);
            if (r <= 0)
                return r;
            continue;
        }
        ssize_t n = fk_conn_send(c, c->out.data + c->out.off, fk_buf_pending(&c->out), flags);
        if (n > 0) {
            fk_buf_consume(&c->out, (size_t)n);
            l->cfg.slot[FK_SLOT_BYTES_OUT] += (uint64_t)n;
            c->deadline = l->now + l->cfg.write_timeout_ms;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        conn_close(l, c);
        return -1;
    }
    buf_trim(l, &c->out);
    if (c->state == FK_CONN_HEAD && fk_buf_pending(&c->in) == 0)
        c->deadline = l->now + l->cfg.keepalive_ms;
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

static void count_status(fk_loop *l, int status)
{
    if (status >= 100 && status < 600)
        l->cfg.slot[FK_SLOT_STATUS + status / 100 - 1]++;
}

static void fail_request(fk_loop *l, fk_conn *c, int status)
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

/* ---- reading and parsing --------------------------------------------------- */

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

static void process_input(fk_loop *l, fk_conn *c);

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

static int request_done(fk_loop *l, fk_conn *c);
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
    count_status(l, r->status);
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
    c->keep_alive = (req->flags & FK_REQ_KEEP_ALIVE) && l->cfg.keepalive_ms != 0 && !l->stopping;
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
    if ((req->flags & FK_REQ_EXPECT_CONTINUE) && len - (size_t)r == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (fk_buf_append(&c->out, cont, sizeof(cont) - 1) != 0 || conn_flush(l, c) < 0)
            return;
    }
    process_input(l, c);
}

/* Whether a body of size bytes (known so far) is left to the handler to
 * read. Not with TLS when handlers run on threads: OpenSSL's connection must
 * not be used by the loop's thread and a handler's at once. */
static int streams_body(const fk_loop *l, const fk_conn *c, uint64_t size)
{
    return l->cfg.body_buffer_size != 0 && size > l->cfg.body_buffer_size &&
           (c->ssl == NULL || !l->cfg.threaded) && l->cfg.constant_body == NULL;
}

/* Hands the request over before its body is in: the handler reads the rest
 * (fk_body.h). A handler thread reads through its own descriptor, so that
 * the loop closing the connection meanwhile cannot hand it another socket
 * that reuses the number. */
static void begin_body_stream(fk_loop *l, fk_conn *c)
{
    if ((c->req.flags & FK_REQ_CHUNKED) && reserve_input(l, c, READ_CHUNK) != 0) {
        fail_request(l, c, 500);
        return;
    }
    c->body_fd = -1;
    if (l->cfg.threaded && (c->body_fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
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

static void process_input(fk_loop *l, fk_conn *c)
{
    do {
        c->again = 0;
        if (c->state == FK_CONN_HEAD)
            parse_head(l, c);
        else if (c->state == FK_CONN_BODY)
            parse_body(l, c);
    } while (c->again); /* answered in the loop (health): parse the next one */
}

/* Room wanted before the next read: enough for the rest of a known body (in
 * steps, so a large Content-Length is not allocated before the bytes arrive). */
static size_t read_room(const fk_conn *c)
{
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
    buf_adopt_spare(l, &c->in, room);
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

/* Reads the PROXY header that opens each connection of a proxy_protocol loop.
 * The socket is peeked at until the header is complete, then the header is
 * taken off it: on a TLS connection exactly the header (OpenSSL reads the
 * handshake that follows), on a plain one all that was peeked, the bytes after
 * the header going into c->in as a first read would have put them. A missing,
 * malformed or truncated header closes the connection without a response, as
 * nginx and HAProxy do: the client is a proxy, not an HTTP client. Returns 1
 * when the connection goes on with HTTP, 0 when it waits for more bytes or was
 * closed. */
static int read_proxy(fk_loop *l, fk_conn *c)
{
    char buf[FK_PROXY_MAX];
    ssize_t n;
    do
        n = recv(c->fd, buf, sizeof(buf), MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = 0;
        return 0;
    }
    if (n <= 0) { /* EOF before any header, or an error */
        conn_close(l, c);
        return 0;
    }
    fk_proxy_result r;
    int len = fk_proxy_parse(buf, (size_t)n, &r);
    if (len == FK_NEED_MORE) {
        /* peeking cannot tell that an EOF follows a partial header: ask */
        struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            conn_close(l, c);
            return 0;
        }
        c->readable = 0; /* the next edge brings the rest */
        return 0;
    }
    if (len < 0) {
        l->cfg.slot[FK_SLOT_PARSE_ERRORS]++;
        conn_close(l, c);
        return 0;
    }
    size_t take = c->ssl != NULL ? (size_t)len : (size_t)n;
    ssize_t got;
    do
        got = recv(c->fd, buf, take, 0);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)take) { /* the bytes were there a moment ago: only a failure */
        conn_close(l, c);
        return 0;
    }
    l->cfg.slot[FK_SLOT_BYTES_IN] += (uint64_t)take;
    if (!r.local) {
        c->peer = r.src;
        c->peer_len = r.src_len;
    }
    c->state = FK_CONN_HEAD;
    if (c->ssl == NULL && (size_t)n < sizeof(buf))
        c->readable = 0; /* drained: epoll reports what arrives next */
    if (take > (size_t)len) {
        if (fk_buf_append(&c->in, buf + len, take - (size_t)len) != 0) {
            conn_close(l, c);
            return 0;
        }
        process_input(l, c);
    }
    return 1;
}

static void conn_read(fk_loop *l, fk_conn *c)
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
        if (c->state != FK_CONN_HEAD && c->state != FK_CONN_BODY) {
            if (c->state != FK_CONN_PROXY || !read_proxy(l, c))
                return; /* busy with a request: read later */
            continue;
        }
        if (c->state == FK_CONN_HEAD && fk_buf_pending(&c->out) > HIGH_WATER)
            return; /* pipelining client not reading our answers: resumed once out drains */
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
            if (c->state == FK_CONN_BODY)
                c->deadline = body_deadline(l, c);
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
        if (n == 0 && fk_buf_pending(&c->out) > 0 && c->state == FK_CONN_HEAD &&
            fk_buf_pending(&c->in) == 0) {
            c->close_after = 1;
            return;
        }
        conn_close(l, c);
        return;
    }
}

/* ---- accepting ------------------------------------------------------------- */

/* Adds a connection to the epoll set. Edge-triggered: the add itself reports
 * what is ready already, so nothing that happened before it is missed. */
static int watch(fk_loop *l, fk_conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = ((uint64_t)c->generation << 32) | c->index};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        return -1;
    c->watched = 1;
    return 0;
}

/* Watches the connections accepted since the last wait that are still open.
 * Called just before the loop blocks: a connection whose request was read,
 * answered and closed in one turn (a connection per request, the common case
 * behind many clients) never costs an epoll_ctl. */
static void watch_new(fk_loop *l)
{
    for (size_t i = 0; i < l->nunwatched; i++) {
        uint64_t id = l->unwatched[i];
        fk_conn *c = &l->conns[(uint32_t)id];
        if (c->generation != (uint32_t)(id >> 32) || c->fd < 0 || c->watched)
            continue;
        if (watch(l, c) != 0)
            conn_close(l, c);
    }
    l->nunwatched = 0;
}

static int conn_idle(const fk_conn *c)
{
    return c->state == FK_CONN_HEAD && !c->fresh && fk_buf_pending(&c->in) == 0 &&
           fk_buf_pending(&c->out) == 0;
}

/* When every slot is taken, the connection that made least progress gives
 * its slot to a new one, so that a flood of slow or idle clients cannot keep
 * the next client out (nginx reuses idle keep-alive connections the same way;
 * this goes on to slow heads and bodies): first connections closing or idle
 * between requests, then those still sending a head (or a PROXY header), then
 * those sending a body; the oldest first within each. Connections whose
 * request is with the handler, or that are writing a response, keep theirs.
 * Returns the connection to close, NULL when none may be. */
static fk_conn *eviction_victim(fk_loop *l)
{
    fk_conn *victim = NULL;
    int victim_rank = 3;
    uint64_t victim_since = UINT64_MAX;
    for (size_t i = 0; i < l->high_slot; i++) {
        fk_conn *c = &l->conns[i];
        if (c->fd < 0 || c->py_owned || c->dirty || c->notify_linked)
            continue;
        int rank;
        uint64_t since = c->started != 0 ? c->started : c->accepted_us / 1000;
        if (c->state == FK_CONN_LINGER) {
            rank = 0;
        } else if (c->state == FK_CONN_HEAD || c->state == FK_CONN_PROXY) {
            if (fk_buf_pending(&c->out) > 0 || c->file_left > 0)
                continue;
            if (conn_idle(c)) {
                rank = 0;
                since = c->deadline; /* idle since deadline - keepalive */
            } else {
                rank = 1;
            }
        } else if (c->state == FK_CONN_BODY) {
            rank = 2;
        } else {
            continue;
        }
        if (rank < victim_rank || (rank == victim_rank && since < victim_since)) {
            victim = c;
            victim_rank = rank;
            victim_since = since;
        }
    }
    return victim;
}

/* Accepts up to batch connections from listener index (fewer when its queue
 * empties or max_connections is reached). Returns how many it accepted. */
static int accept_from(fk_loop *l, int index, int batch)
{
    int fd = l->listeners[index], accepted = 0;
    for (int i = 0; i < batch; i++) {
        /* Full: a new connection takes the slot of one that made least progress
         * (only once accept4 gave one: an empty queue evicts nobody). */
        int full = l->nused >= l->cfg.max_connections;
        if (full && eviction_victim(l) == NULL) {
            set_listening(l, 0); /* the other workers take the load */
            return accepted;
        }
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int cfd = accept4(fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: stop polling the listener for a moment
                 * instead of spinning on a level-triggered event */
                set_listening(l, 0);
                l->accept_resume = l->now + EMFILE_PAUSE_MS;
            }
            return accepted;
        }
        if (FK_UNLIKELY(l->cfg.proxy_protocol) &&
            !fk_net_allows(l->cfg.proxy_allow, l->cfg.proxy_allow_len, &peer)) {
            /* not a proxy trusted to name clients: refused before a byte is read */
            close(cfd);
            l->cfg.slot[FK_SLOT_PARSE_ERRORS]++;
            continue;
        }
        if (full) {
            fk_conn *victim = eviction_victim(l);
            l->cfg.slot[FK_SLOT_EVICTED]++;
            conn_close(l, victim); /* nothing else refers to it: freed now */
            FK_ASSERT(victim->state == FK_CONN_FREE);
        }
        uint32_t slot;
        if (l->nfree > 0)
            slot = l->free_slots[--l->nfree];
        else
            slot = (uint32_t)l->high_slot++;
        FK_ASSERT(slot < l->cfg.max_connections && l->conns[slot].state == FK_CONN_FREE);
        fk_conn *c = &l->conns[slot];
        if (peer.ss_family != AF_UNIX) {
            if (l->nodelay_inherited < 0) {
                int on = 0;
                socklen_t len = sizeof(on);
                getsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &on, &len);
                l->nodelay_inherited = on != 0;
            }
            if (!l->nodelay_inherited) {
                int on = 1;
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
            }
        }
        uint32_t generation = c->generation;
        memset(c, 0, offsetof(fk_conn, peer));
        c->generation = generation;
        c->peer = peer;
        c->peer_len = peer_len;
        c->index = slot;
        c->fd = cfd;
        c->listener = index;
        c->state = l->cfg.proxy_protocol ? FK_CONN_PROXY : FK_CONN_HEAD;
        c->file_fd = -1;
        c->fresh = 1;
        c->readable = 1; /* try at once: the request often arrives with the handshake */
        c->deadline = l->now + l->cfg.header_timeout_ms;
        if (l->nunwatched < l->cfg.max_connections) {
            l->unwatched[l->nunwatched++] = ((uint64_t)generation << 32) | slot;
        } else if (watch(l, c) != 0) {
            close(cfd);
            c->fd = -1;
            c->state = FK_CONN_FREE;
            l->free_slots[l->nfree++] = slot;
            continue;
        }
        accepted++;
        l->nconns++;
        l->nused++;
        FK_ASSERT(l->nused <= l->cfg.max_connections && l->nconns <= l->nused);
        l->cfg.slot[FK_SLOT_CONN_OPEN] = l->nconns;
        l->cfg.slot[FK_SLOT_CONN_TOTAL]++;
        c->accepted_us = fk_now_us();
        if (l->tls[index] != NULL && fk_tls_accept(c, l->tls[index]) != 0) {
            conn_close(l, c);
            continue;
        }
        conn_read(l, c);
    }
    return accepted;
}

/* ---- stopping and timeouts ------------------------------------------------- */

/* Drops this process's share of the listening sockets once it stopped
 * accepting: when every process has, the kernel refuses new connections, which
 * a balancer retries elsewhere safely, instead of queueing them until we exit
 * and then resetting them with a request already sent. The descriptors are
 * owned by Python's socket objects: dup3 of a spare socket keeps each number
 * valid for its owner to close. */
static void release_listeners(fk_loop *l)
{
    for (int i = 0; i < l->nlisteners; i++) {
        int spare = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (spare < 0)
            return; /* out of descriptors: the listeners close when we exit */
        dup3(spare, l->listeners[i], O_CLOEXEC);
        close(spare);
    }
}

/* Stop accepting; serve what is open. recycle: a max_requests recycle, where
 * the master keeps the listener open and its queue waits for our successor, so
 * the queue is left to it and idle connections go at once rather than at their
 * keep-alive deadline. */
static void stop_accepting(fk_loop *l, int recycle)
{
    if (l->stopping)
        return;
    /* stopping before the queue is drained: a health check read from it is
     * answered 503, and its connection closes after its answer */
    l->stopping = 1;
    l->stop_deadline = l->now + l->cfg.graceful_ms;
    /* otherwise serve all the kernel already queued for us (what is left when
     * the last copy of a listener is released is reset), then stop */
    if (l->listening && !recycle)
        for (int i = 0; i < l->nlisteners; i++)
            accept_from(l, i, INT_MAX);
    set_listening(l, 0);
    release_listeners(l);
    /* An idle keep-alive connection is not closed now: a balancer may be
     * sending on it at this very moment, and a request lost that way cannot
     * be retried safely (a POST). Its next request is answered with
     * "Connection: close"; without one it closes at its keep-alive deadline
     * as usual, by which time a balancer with a shorter idle timeout (as in
     * docs/deploy/) has closed it from its side. */
    for (size_t i = 0; i < l->high_slot; i++) {
        fk_conn *c = &l->conns[i];
        if (c->state == FK_CONN_FREE || c->fd < 0)
            continue;
        c->keep_alive = 0;
        if (recycle && conn_idle(c))
            conn_close(l, c);
    }
}

void fk_loop_stop(fk_loop *l, int graceful)
{
    if (!graceful)
        l->stopping = 2;
    else
        stop_accepting(l, 0);
}

static void sweep(fk_loop *l)
{
    spares_sweep(l);
    if (l->cfg.parent_pid != 0 && getppid() != l->cfg.parent_pid)
        fk_loop_stop(l, 1); /* orphaned: the master is gone */
    if (l->accept_resume != 0 && l->now >= l->accept_resume) {
        l->accept_resume = 0;
        resume_accepting(l);
    }
    for (size_t i = 0; i < l->high_slot; i++) {
        fk_conn *c = &l->conns[i];
        if (c->fd < 0 || c->state == FK_CONN_FREE || c->deadline == 0 || l->now < c->deadline)
            continue;
        switch (c->state) {
        case FK_CONN_HEAD:
            if (fk_buf_pending(&c->out) == 0 && fk_buf_pending(&c->in) > 0)
                fail_request(l, c, 408); /* a head dribbled too slowly */
            else
                conn_close(l, c); /* idle keep-alive, or a stalled reader */
            break;
        case FK_CONN_BODY:
            fail_request(l, c, 408);
            break;
        case FK_CONN_PROXY:
            conn_close(l, c); /* no PROXY header in time: no HTTP answer either */
            break;
        case FK_CONN_READY:
        case FK_CONN_HANDLING:
            break; /* the handler's own timeout belongs to the master */
        default:
            if (c->state == FK_CONN_LINGER || fk_buf_pending(&c->out) > 0 || c->file_left > 0)
                conn_close(l, c); /* a client not reading: the write timeout */
            else
                c->deadline = 0; /* a slow producer is not a slow client */
            break;
        }
    }
}

/* ---- answering ------------------------------------------------------------- */

/* The request is answered: account for it and go on with the connection. */
/* The request is answered: account for it and reset the connection for the
 * next one. Returns 1 when bytes of a next request may be parsed now. */
static int request_done(fk_loop *l, fk_conn *c)
{
    l->served++;
    l->cfg.slot[FK_SLOT_REQUESTS] = l->served;
    if (!l->cfg.threaded)
        l->cfg.slot[FK_SLOT_BUSY_SINCE] = 0;
    if (l->cfg.max_requests != 0 && l->served >= l->cfg.max_requests && !l->stopping)
        stop_accepting(l, 1);
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
    buf_trim(l, &c->in);
    /* pipelined: the next request may be complete already; held back while
     * out is backlogged, or a client that never reads makes us buffer them all */
    return fk_buf_pending(&c->in) > 0 && fk_buf_pending(&c->out) <= HIGH_WATER;
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
    count_status(l, r->status);
    if (c->handoff_us != 0) {
        fk_hist_add(l->cfg.slot + FK_SLOT_HANDLER, fk_now_us() - c->handoff_us);
        c->handoff_us = 0;
    }
    if (r->flags & FK_RESP_CLOSE)
        c->keep_alive = 0;
    if (r->content_length == FK_BODY_UNTIL_CLOSE)
        c->keep_alive = 0;
    if (l->stopping)
        c->keep_alive = 0;
    if (FK_UNLIKELY(fk_body_unread(c))) {
        c->keep_alive = 0; /* the rest of the body is drained by the lingering close */
        c->linger = 1;
    }
    int has_body = fk_status_has_body(r->status) && !c->head_only;
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
    if (has_body && len >= DIRECT_WRITE && c->ssl == NULL && c->file_left == 0) {
        /* A large body goes out from the caller's memory with the pending head
         * in one sendmsg; only what the socket does not take is copied. */
        struct iovec iov[2] = {
            {.iov_base = c->out.data + c->out.off, .iov_len = fk_buf_pending(&c->out)},
            {.iov_base = (void *)(uintptr_t)body, .iov_len = len},
        };
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n > 0) {
            size_t sent = (size_t)n, head = fk_buf_pending(&c->out);
            l->cfg.slot[FK_SLOT_BYTES_OUT] += sent;
            c->deadline = l->now + l->cfg.write_timeout_ms;
            fk_buf_consume(&c->out, sent < head ? sent : head);
            if (sent > head) {
                body += sent - head;
                len -= sent - head;
            }
        } /* on EAGAIN or an error, the flush below retries or fails as usual */
    }
    if (has_body && len != 0) {
        buf_adopt_spare(l, &c->out, len);
        if (fk_buf_append(&c->out, body, len) != 0) {
            conn_close(l, c);
            return -1;
        }
    }
    finish_request(l, c);
    return after_write(l, c);
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

void fk_loop_release(fk_loop *l, fk_conn *c)
{
    FK_ASSERT(c->state != FK_CONN_FREE);
    if (c->state == FK_CONN_FREE)
        return;
    c->py_owned = 0;
    c->notify = 0; /* withdrawn; unlinked when fk_loop_next reaches it */
    c->file_fd = -1; /* Python closes the file */
    c->file_left = 0;
    if (c->fd >= 0) {
        c->keep_alive = 0;
        c->close_after = 1;
        c->state = FK_CONN_HEAD;
        conn_close(l, c);
        return;
    }
    conn_try_free(l, c);
}

void fk_loop_body_limits(const fk_loop *l, const fk_conn *c, fk_body_limits *lim)
{
    lim->stall_ms = l->cfg.header_timeout_ms > INT_MAX ? INT_MAX : (int)l->cfg.header_timeout_ms;
    lim->deadline_ms = l->cfg.request_timeout_ms != 0 ? c->started + l->cfg.request_timeout_ms : 0;
    lim->max_body_size = l->cfg.max_body_size;
    lim->rate_base_ms = c->started + l->cfg.header_timeout_ms;
    lim->min_rate = l->cfg.min_rate;
}

fk_conn *fk_loop_conn(fk_loop *l, uint32_t index, uint32_t generation)
{
    if (index >= l->high_slot)
        return NULL;
    fk_conn *c = &l->conns[index];
    return c->generation == generation && c->state != FK_CONN_FREE ? c : NULL;
}

uint64_t fk_loop_served(const fk_loop *l) { return l->served; }
size_t fk_loop_open(const fk_loop *l) { return l->nconns; }
const fk_loop_config *fk_loop_config_of(const fk_loop *l) { return &l->cfg; }

/* ---- the loop -------------------------------------------------------------- */

static void flush_dirty(fk_loop *l)
{
    while (l->dirty_head) {
        fk_conn *c = l->dirty_head;
        l->dirty_head = c->next_dirty;
        c->dirty = 0;
        if (c->fd < 0) {
            conn_try_free(l, c);
            continue;
        }
        if (conn_flush(l, c) != 1 || c->state != FK_CONN_HEAD)
            continue;
        if (fk_buf_pending(&c->in) > 0)
            process_input(l, c); /* held back while out was backlogged */
        if (c->fd >= 0 && c->state == FK_CONN_HEAD && c->readable)
            conn_read(l, c); /* data that arrived while the handler ran */
    }
}

static void on_conn_event(fk_loop *l, uint64_t data, uint32_t events)
{
    uint32_t slot = (uint32_t)data;
    if (slot >= l->high_slot)
        return;
    fk_conn *c = &l->conns[slot];
    if (c->generation != (uint32_t)(data >> 32) || c->fd < 0)
        return; /* closed earlier in this batch */
    if (c->ssl != NULL)
        events = fk_tls_events(c, events);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->readable = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP))
        c->peer_shut = 1;
    if ((events & EPOLLOUT) && (fk_buf_pending(&c->out) > 0 || c->file_left > 0)) {
        int r = conn_flush(l, c);
        if (r < 0)
            return;
        if (r == 1 && c->state == FK_CONN_HEAD && fk_buf_pending(&c->in) > 0) {
            process_input(l, c); /* held back while out was backlogged */
            if (c->fd < 0)
                return;
        }
    }
    if (c->readable && (events & (EPOLLHUP | EPOLLERR)) && c->state != FK_CONN_HEAD &&
        c->state != FK_CONN_BODY && c->state != FK_CONN_LINGER && !fk_body_unread(c)) {
        conn_close(l, c); /* gone while its request is with the handler */
        return;
    }
    if (c->readable)
        conn_read(l, c);
}

/* Records in the shared slot that a handler call starts, and for which request
 * ("METHOD target", truncated), so that the master can name a stuck request. */
static void slot_record(fk_loop *l, fk_conn *c)
{
    c->handoff_us = fk_now_us();
    c->queue_us = c->handoff_us - (c->fresh ? c->accepted_us : c->ready_us);
    fk_hist_add(l->cfg.slot + FK_SLOT_QUEUE, c->queue_us);
    if (l->cfg.threaded)
        return; /* Python records its oldest running call */
    char *text = (char *)(uintptr_t)(l->cfg.slot + FK_SLOT_TEXT);
    size_t room = FK_SLOT_TEXT_SIZE - 1, n = c->req.method_len < room ? c->req.method_len : room;
    memcpy(text, c->req.method, n);
    if (n < room)
        text[n++] = ' ';
    size_t t = c->req.target_len < room - n ? c->req.target_len : room - n;
    memcpy(text + n, c->req.target, t);
    memset(text + n + t, 0, FK_SLOT_TEXT_SIZE - n - t);
    l->cfg.slot[FK_SLOT_BUSY_SINCE] = l->now;
}

int fk_loop_next(fk_loop *l, fk_event *ev)
{
    for (;;) {
        if (l->stopping == 2) {
            ev->type = FK_EV_DONE;
            ev->conn = NULL;
            return FK_EV_DONE;
        }
        while (l->notify_head) {
            fk_conn *c = l->notify_head;
            l->notify_head = c->next_notify;
            if (l->notify_head == NULL)
                l->notify_tail = NULL;
            int type = c->notify;
            c->notify = 0;
            c->notify_linked = 0;
            if (type == 0 || c->state == FK_CONN_FREE) {
                conn_try_free(l, c); /* withdrawn by fk_loop_release */
                continue;
            }
            ev->type = type;
            ev->conn = c;
            return type;
        }
        if (l->ready_head) {
            fk_conn *c = l->ready_head;
            l->ready_head = c->next_ready;
            if (l->ready_head == NULL)
                l->ready_tail = NULL;
            c->state = FK_CONN_HANDLING;
            slot_record(l, c);
            ev->type = FK_EV_REQUEST;
            ev->conn = c;
            return FK_EV_REQUEST;
        }
        if (l->wake_pending || l->notify_pending || l->tick_pending) {
            int type = l->wake_pending ? FK_EV_WAKE : l->notify_pending ? FK_EV_NOTIFY : FK_EV_TICK;
            if (type == FK_EV_WAKE)
                l->wake_pending = 0;
            else if (type == FK_EV_NOTIFY)
                l->notify_pending = 0;
            else
                l->tick_pending = 0;
            ev->type = type;
            ev->conn = NULL;
            return type;
        }
        flush_dirty(l);
        if (l->ready_head || l->notify_head)
            continue;
        if (l->stopping == 1 && (l->nconns == 0 || l->now >= l->stop_deadline)) {
            ev->type = FK_EV_DONE;
            ev->conn = NULL;
            return FK_EV_DONE;
        }
        watch_new(l);
        if (l->ready_head || l->notify_head)
            continue; /* a connection failed to be watched and was closed */
        if (l->requeue_listeners) {
            l->requeue_listeners = 0;
            requeue_listeners(l);
        }
        int timeout = (int)(l->next_tick > l->now ? l->next_tick - l->now : 0);
        int n = epoll_wait(l->epfd, l->events, MAX_EVENTS, timeout);
        refresh_clock(l);
        if (n < 0) {
            if (errno == EINTR) {
                l->wake_pending = 1;
                continue;
            }
            ev->type = FK_EV_DONE; /* epoll itself failed: nothing sane left to do */
            ev->conn = NULL;
            return FK_EV_DONE;
        }
        for (int i = 0; i < n; i++) {
            uint64_t data = l->events[i].data.u64;
            if (!(data & TAG_MASK))
                on_conn_event(l, data, l->events[i].events);
            else if (data & TAG_LISTENER) {
                if (l->listening && accept_from(l, (int)(data & 0xffff), ACCEPT_BATCH) > 0 &&
                    l->cfg.shared_listeners)
                    l->requeue_listeners = 1;
            } else if (data & TAG_WAKE) {
                char sink[64];
                while (read(l->cfg.wake_fd, sink, sizeof(sink)) > 0) {
                }
                l->wake_pending = 1;
            } else if (data & TAG_NOTIFY) {
                uint64_t value;
                if (read(l->cfg.notify_fd, &value, sizeof(value)) < 0 && errno != EAGAIN) {
                    /* nothing to recover: the flag below still makes Python look */
                }
                l->notify_pending = 1;
            }
        }
        if (l->now >= l->next_tick) {
            l->next_tick = l->now + TICK_MS;
            sweep(l);
            l->tick_pending = 1;
        }
    }
}

void fk_loop_destroy(fk_loop *l)
{
    if (l == NULL)
        return;
    if (l->conns) {
        for (size_t i = 0; i < l->high_slot; i++) {
            fk_conn *c = &l->conns[i];
            if (c->fd >= 0 && c->state != FK_CONN_FREE) {
                fk_tls_close(c);
                close(c->fd);
            }
            fk_buf_free(&c->in);
            fk_buf_free(&c->out);
            free(c->headers);
        }
    }
    if (l->epfd >= 0)
        close(l->epfd);
    for (int i = 0; i < SPARES; i++)
        free(l->spare[i].data);
    free(l->conns);
    free(l->free_slots);
    free(l->unwatched);
    free(l->scratch);
    free(l);
}
