#define _GNU_SOURCE
#include "fk_loop_int.h"
#include "fk_clock.h"
#include "fk_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
    l->lent_done = malloc(l->cfg.max_connections * sizeof(uint64_t));
    if (l->conns == NULL || l->free_slots == NULL || l->unwatched == NULL || l->scratch == NULL ||
        l->lent_done == NULL)
        goto fail;
    /* not with proxy_protocol: every peer is the balancer */
    l->per_addr = l->cfg.proxy_protocol ? 0 : (uint32_t)l->cfg.max_per_addr;
    if (l->per_addr != 0 && fk_peers_init(&l->peers, l->cfg.max_connections) != 0)
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

void set_listening(fk_loop *l, int on)
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

void push_ready(fk_loop *l, fk_conn *c)
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

void push_dirty(fk_loop *l, fk_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = 1;
    c->next_dirty = l->dirty_head;
    l->dirty_head = c;
}

void push_notify(fk_loop *l, fk_conn *c, int type)
{
    if (c->notify_linked) {
        /* closing supersedes the others, a websocket's news writable (Python
         * looks at the watermark on either); a body's news and writable
         * supersede each other (Python acts on both for either) */
        if (c->notify != FK_EV_CLOSED && !(c->notify == FK_EV_WS && type == FK_EV_WRITABLE))
            c->notify = type;
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
void end_body_stream(fk_conn *c)
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
    fk_spares_release(&l->spares, &c->in);
    fk_spares_release(&l->spares, &c->out);
    free(c->headers);
    c->headers = NULL;
    c->headers_cap = 0;
    free(c->ws);
    c->ws = NULL;
    c->state = FK_CONN_FREE;
    c->generation++;
    l->free_slots[l->nfree++] = c->index;
    l->nused--;
    resume_accepting(l);
}

/* The loop is done with c's lent body (sent, or the connection closed): its
 * ticket goes back to Python, which then drops the bytes (fk_loop_lent_done).
 * Python takes the returned tickets after every fk_loop_next(), before it can
 * lend again, and a slot lends one body at a time: max_connections entries
 * are enough. */
void lent_end(fk_loop *l, fk_conn *c)
{
    if (c->lent_ticket != 0) {
        FK_ASSERT(l->nlent_done < l->cfg.max_connections);
        if (l->nlent_done < l->cfg.max_connections) /* else Python keeps it until it stops */
            l->lent_done[l->nlent_done++] = c->lent_ticket;
    }
    c->lent = NULL;
    c->lent_left = 0;
    c->lent_ticket = 0;
}

size_t fk_loop_lent_done(fk_loop *l, uint64_t *tickets, size_t max)
{
    size_t n = l->nlent_done < max ? l->nlent_done : max;
    l->nlent_done -= n;
    memcpy(tickets, l->lent_done + l->nlent_done, n * sizeof(uint64_t));
    return n;
}

void conn_close(fk_loop *l, fk_conn *c)
{
    lent_end(l, c);
    if (c->fd >= 0) {
        if (c->ssl != NULL)
            fk_tls_close(c);
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
        if (l->per_addr != 0)
            fk_peers_remove(&l->peers, &c->peer);
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
void conn_linger(fk_loop *l, fk_conn *c)
{
    if (c->ssl != NULL)
        fk_tls_close(c); /* close_notify first; the input is drained raw */
    shutdown(c->fd, SHUT_WR);
    c->state = FK_CONN_LINGER;
    c->readable = 1;
    c->deadline = l->now + LINGER_MS;
    c->body_len = 0;
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
void stop_accepting(fk_loop *l, int recycle)
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
        else if (c->state == FK_CONN_WS)
            fk_loop_ws_close(l, c, 1001, NULL, 0); /* going away: the client closes */
    }
}

void fk_loop_stop(fk_loop *l, int graceful)
{
    if (!graceful)
        l->stopping = 2;
    else
        stop_accepting(l, 0);
}

/* Slow readers cannot make the worker hold unbounded memory: a response the
 * socket did not take waits in its connection's out (for a complete body, the
 * part the socket did not take, or the application's own bytes, lent; a
 * streamed one stops its producer at HIGH_WATER). When what all connections
 * hold passes max_output, the connections holding most are closed until it is
 * back under: those are the readers furthest behind, and closing them frees
 * the most for the fewest. A lent body counts although it is Python's: the
 * worker keeps it alive for the reader. */
static uint64_t held_output(const fk_conn *c)
{
    return c->fd >= 0 ? fk_buf_pending(&c->out) + c->lent_left : 0;
}

static void bound_output(fk_loop *l)
{
    uint64_t total = 0;
    for (size_t i = 0; i < l->high_slot; i++)
        total += held_output(&l->conns[i]);
    while (total > l->cfg.max_output) {
        fk_conn *most = NULL;
        for (size_t i = 0; i < l->high_slot; i++) {
            fk_conn *c = &l->conns[i];
            if (c->fd >= 0 && (most == NULL || held_output(c) > held_output(most)))
                most = c;
        }
        if (most == NULL || held_output(most) == 0)
            return;
        total -= held_output(most);
        l->cfg.slot[FK_SLOT_SHED]++;
        conn_close(l, most);
        fk_spares_release(&l->spares, &most->out); /* now, when Python still holds the slot */
    }
}

static void sweep(fk_loop *l)
{
    fk_spares_sweep(&l->spares);
    if (l->cfg.max_output != 0)
        bound_output(l);
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
            if (!conn_unsent(c) && fk_buf_pending(&c->in) > 0)
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
        case FK_CONN_WS:
            ws_timeout(l, c);
            break;
        default:
            if (c->state == FK_CONN_LINGER || conn_unsent(c))
                conn_close(l, c); /* a client not reading: the write timeout */
            else
                c->deadline = 0; /* a slow producer is not a slow client */
            break;
        }
    }
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
    lim->nowait = l->cfg.body_events;
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
        if (conn_flush(l, c) != 1)
            continue;
        if (c->state == FK_CONN_WS) {
            if (c->readable && ws_reading(c))
                conn_read(l, c); /* held back while out was backlogged */
            continue;
        }
        if (c->state != FK_CONN_HEAD)
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
    if ((events & EPOLLRDHUP) && l->cfg.close_on_fin && c->py_owned && !fk_body_unread(c) &&
        (c->state == FK_CONN_HANDLING || c->state == FK_CONN_STREAMING)) {
        conn_close(l, c); /* gone, as far as this application is told (cfg.close_on_fin) */
        return;
    }
    if ((events & EPOLLOUT) && conn_unsent(c)) {
        int r = conn_flush(l, c);
        if (r < 0)
            return;
        if (r == 1 && c->state == FK_CONN_HEAD && fk_buf_pending(&c->in) > 0) {
            process_input(l, c); /* held back while out was backlogged */
            if (c->fd < 0)
                return;
        }
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && l->cfg.body_events &&
        c->py_owned && fk_body_unread(c))
        push_notify(l, c, FK_EV_BODY); /* the reader on this thread reads on */
    if (c->readable && (events & (EPOLLHUP | EPOLLERR)) && c->state != FK_CONN_HEAD &&
        c->state != FK_CONN_BODY && c->state != FK_CONN_LINGER && c->state != FK_CONN_WS &&
        !fk_body_unread(c)) {
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
    if (FK_UNLIKELY(l->cfg.stats != NULL))
        c->begun_us = c->handoff_us;
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

/* fk_loop_next, and with block == 0 fk_loop_poll: the same turn, but epoll is
 * asked without waiting (or, without io, not at all) and 0 is returned once
 * nothing is left to report. */
static int loop_next(fk_loop *l, fk_event *ev, int block, int io)
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
        if (!block && !io) {
            ev->type = 0;
            ev->conn = NULL;
            return 0;
        }
        int timeout = !block ? 0 : (int)(l->next_tick > l->now ? l->next_tick - l->now : 0);
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
        if (!block && n == 0 && !l->tick_pending && !l->wake_pending && !l->notify_pending &&
            !l->ready_head && !l->notify_head && !l->dirty_head) {
            ev->type = 0;
            ev->conn = NULL;
            return 0;
        }
    }
}

int fk_loop_next(fk_loop *l, fk_event *ev) { return loop_next(l, ev, 1, 1); }

int fk_loop_poll(fk_loop *l, fk_event *ev, int io) { return loop_next(l, ev, 0, io); }

int fk_loop_fd(const fk_loop *l) { return l->epfd; }

uint64_t fk_loop_tick_in(const fk_loop *l)
{
    uint64_t now = fk_now_ms();
    return l->next_tick > now ? l->next_tick - now : 0;
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
            free(c->ws);
        }
    }
    if (l->epfd >= 0)
        close(l->epfd);
    fk_spares_free(&l->spares);
    free(l->conns);
    free(l->free_slots);
    free(l->lent_done);
    free(l->unwatched);
    free(l->scratch);
    fk_peers_free(&l->peers);
    free(l);
}
