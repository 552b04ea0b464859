/* Accepting (fk_loop_int.h): a new connection's slot, given by the one that
 * made least progress when every slot is taken, and its lazy registration
 * in the epoll set. */
#define _GNU_SOURCE
#include "fk_loop_int.h"
#include "fk_clock.h"
#include "fk_tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

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
void watch_new(fk_loop *l)
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

int conn_idle(const fk_conn *c)
{
    return c->state == FK_CONN_HEAD && !c->fresh && fk_buf_pending(&c->in) == 0 &&
           !conn_unsent(c);
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
            if (conn_unsent(c))
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
int accept_from(fk_loop *l, int index, int batch)
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
        if (l->per_addr != 0 && !fk_peers_add(&l->peers, &peer, l->per_addr)) {
            /* one client holding many slots: closed before it takes another
             * (and before it could make another client's connection give way) */
            close(cfd);
            l->cfg.slot[FK_SLOT_ADDR_REFUSED]++;
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
            if (l->per_addr != 0)
                fk_peers_remove(&l->peers, &peer);
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
