/* The floor: the least a server can do per keep-alive request on this kernel.
 *
 *     cc -O2 -Wall -Wextra -o benchmarks/floor/floor benchmarks/floor/floor.c
 *     benchmarks/floor/floor HOST PORT WORKERS [--pin]
 *
 * The parent binds one listening socket, forks WORKERS children that share it
 * (each watches it with EPOLLEXCLUSIVE, as nginx does) and waits; TERM and INT
 * are passed on to the children. With --pin, child i is pinned to the i-th CPU
 * it may run on, as forker's workers and nginx's worker_cpu_affinity auto are.
 *
 * Each child runs one epoll loop. A connection is watched edge-triggered for
 * input and output from its accept on, so that nothing is ever re-armed. Per
 * request it makes one recv and one send: the recv is not repeated when it
 * returned less than the room it had (edge-triggered epoll reports the next
 * bytes), and the answer leaves in one send, straight from a static buffer.
 * It parses nothing: every "\r\n\r\n" in the input is a request (GET, no
 * body), answered with the bytes forker's native handler sends for GET / of
 * benchmarks/apps/native_app.py: a 118-byte head (Server, Date, Content-Type,
 * Content-Length) and the 11-byte body. A request that carries
 * "Connection: close" (any case) is answered with forker's 137-byte closing
 * head and the connection closed. The Date is rewritten when the second
 * changes, checked once per epoll_wait, with time(2) (the vDSO: no system
 * call). Pipelined requests are answered in one send.
 *
 * It is not a server: it is the upper bound of any HTTP/1.1 server's
 * keep-alive req/s on a given machine and load tool. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 512
#define IN_CAP 8192
#define LISTENER ((uint64_t)1 << 63)

static char keep[] = "HTTP/1.1 200 OK\r\n"
                     "Server: forker\r\n"
                     "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: 11\r\n"
                     "\r\n"
                     "greeting!!!";
static char closing[] = "HTTP/1.1 200 OK\r\n"
                        "Server: forker\r\n"
                        "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
                        "Content-Type: text/plain\r\n"
                        "Content-Length: 11\r\n"
                        "Connection: close\r\n"
                        "\r\n"
                        "greeting!!!";
#define KEEP_LEN (sizeof(keep) - 1)
#define CLOSING_LEN (sizeof(closing) - 1)
#define DATE_AT 39 /* strlen("HTTP/1.1 200 OK\r\nServer: forker\r\nDate: ") */
#define DATE_LEN 29

typedef struct {
    size_t in_len;
    char *out; /* what a short send left, malloc'ed; NULL when nothing waits */
    size_t out_len, out_off;
    int closing; /* close once out is sent */
    char in[IN_CAP];
} conn;

static conn **conns; /* by fd */
static size_t nconns;
static time_t date_second = -1;

static void set_date(void)
{
    time_t now = time(NULL);
    if (now == date_second)
        return;
    date_second = now;
    struct tm tm;
    char text[DATE_LEN + 1];
    gmtime_r(&now, &tm);
    if (strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm) != DATE_LEN)
        return;
    memcpy(keep + DATE_AT, text, DATE_LEN);
    memcpy(closing + DATE_AT, text, DATE_LEN);
}

static void conn_close(int fd)
{
    conn *c = conns[fd];
    if (c != NULL) {
        free(c->out);
        free(c);
        conns[fd] = NULL;
    }
    close(fd); /* also leaves the epoll set: the fd was in no other process */
}

/* Sends out[off..len) of c; keeps what the kernel did not take (malloc'ed)
 * for EPOLLOUT. Returns -1 when the connection was closed. */
static int send_or_keep(int fd, conn *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            char *rest = malloc(len);
            if (rest == NULL) {
                conn_close(fd);
                return -1;
            }
            memcpy(rest, data, len);
            c->out = rest;
            c->out_len = len;
            c->out_off = 0;
            return 0;
        }
        conn_close(fd);
        return -1;
    }
    if (c->closing) {
        conn_close(fd);
        return -1;
    }
    return 0;
}

static int flush_out(int fd, conn *c)
{
    if (c->out == NULL)
        return 0;
    char *out = c->out;
    size_t len = c->out_len - c->out_off;
    const char *from = out + c->out_off;
    c->out = NULL;
    int r = send_or_keep(fd, c, from, len);
    free(out);
    return r;
}

static int wants_close(const char *head, size_t len)
{
    static const char field[] = "\r\nconnection: close";
    size_t n = sizeof(field) - 1;
    for (size_t i = 0; i + n <= len; i++) {
        if (head[i] != '\r')
            continue;
        size_t j = 0;
        while (j < n && (head[i + j] | (field[j] >= 'a' ? 0x20 : 0)) == field[j])
            j++;
        if (j == n)
            return 1;
    }
    return 0;
}

/* Answers every complete request in c->in; keeps a partial one. */
static int answer(int fd, conn *c)
{
    char batch[64 * sizeof(keep)];
    size_t batch_len = 0, at = 0;
    for (;;) {
        char *end = memmem(c->in + at, c->in_len - at, "\r\n\r\n", 4);
        if (end == NULL)
            break;
        size_t head_len = (size_t)(end + 4 - (c->in + at));
        int close_it = wants_close(c->in + at, head_len);
        at += head_len;
        const char *reply = close_it ? closing : keep;
        size_t reply_len = close_it ? CLOSING_LEN : KEEP_LEN;
        if (batch_len + reply_len > sizeof(batch)) {
            if (send_or_keep(fd, c, batch, batch_len) < 0)
                return -1;
            batch_len = 0;
            if (c->out != NULL) { /* a pipelining client that does not read: drop it */
                conn_close(fd);
                return -1;
            }
        }
        memcpy(batch + batch_len, reply, reply_len);
        batch_len += reply_len;
        if (close_it) {
            c->closing = 1;
            at = c->in_len; /* nothing after it is answered */
            break;
        }
    }
    if (at > 0) {
        memmove(c->in, c->in + at, c->in_len - at);
        c->in_len -= at;
    }
    if (batch_len == KEEP_LEN && !c->closing) /* the usual case: no copy */
        return send_or_keep(fd, c, keep, KEEP_LEN);
    if (batch_len > 0)
        return send_or_keep(fd, c, batch, batch_len);
    if (c->in_len == IN_CAP) { /* a head larger than the buffer */
        conn_close(fd);
        return -1;
    }
    return 0;
}

/* Reads and answers until the input is drained. While answers wait for
 * EPOLLOUT it reads nothing (the client is not reading): called again once
 * they are sent. */
static void on_readable(int fd, conn *c)
{
    while (c->out == NULL) {
        size_t room = IN_CAP - c->in_len;
        ssize_t n = recv(fd, c->in + c->in_len, room, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            if (answer(fd, c) < 0)
                return;
            if ((size_t)n < room)
                return; /* drained: epoll reports the next bytes */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(fd); /* EOF or error */
        return;
    }
}

static void accept_all(int lfd, int epfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or another worker took it; EMFILE: retried on the next event */
        if ((size_t)fd >= nconns) {
            size_t want = nconns * 2;
            while (want <= (size_t)fd)
                want *= 2;
            conn **grown = realloc(conns, want * sizeof(*conns));
            if (grown == NULL) {
                close(fd);
                continue;
            }
            memset(grown + nconns, 0, (want - nconns) * sizeof(*conns));
            conns = grown;
            nconns = want;
        }
        conn *c = malloc(sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->in_len = 0;
        c->out = NULL;
        c->out_len = c->out_off = 0;
        c->closing = 0;
        conns[fd] = c;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_close(fd);
            continue;
        }
        on_readable(fd, c); /* the request may be here already */
    }
}

static void serve(int lfd)
{
    nconns = 1024;
    conns = calloc(nconns, sizeof(*conns));
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || epfd < 0) {
        perror("floor: epoll_create1");
        exit(1);
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = LISTENER};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) != 0) {
        perror("floor: epoll_ctl");
        exit(1);
    }
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("floor: epoll_wait");
            exit(1);
        }
        set_date();
        for (int i = 0; i < n; i++) {
            uint64_t data = events[i].data.u64;
            if (data == LISTENER) {
                accept_all(lfd, epfd);
                continue;
            }
            int fd = (int)data;
            conn *c = conns[fd];
            if (c == NULL)
                continue; /* closed earlier in this batch */
            uint32_t e = events[i].events;
            if (c->out != NULL) {
                if (!(e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) || flush_out(fd, c) < 0 ||
                    c->out != NULL)
                    continue;
                on_readable(fd, c); /* held back while the answers waited */
            } else if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                on_readable(fd, c);
            }
        }
    }
}

static pid_t *children;
static int nchildren;

static void forward(int sig)
{
    for (int i = 0; i < nchildren; i++)
        if (children[i] > 0)
            kill(children[i], sig);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT WORKERS [--pin]\n", argv[0]);
        return 2;
    }
    int workers = atoi(argv[3]);
    int pin = argc > 4 && strcmp(argv[4], "--pin") == 0;
    if (workers < 1)
        workers = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (lfd < 0 || inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 2048) != 0) {
        perror("floor: listen");
        return 1;
    }
    cpu_set_t usable;
    int cpus[CPU_SETSIZE], ncpus = 0;
    if (sched_getaffinity(0, sizeof(usable), &usable) == 0)
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
            if (CPU_ISSET(cpu, &usable))
                cpus[ncpus++] = cpu;
    children = calloc((size_t)workers, sizeof(*children));
    if (children == NULL)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < workers; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("floor: fork");
            forward(SIGTERM);
            return 1;
        }
        if (pid == 0) {
            if (pin && ncpus > 0) {
                cpu_set_t one_cpu;
                CPU_ZERO(&one_cpu);
                CPU_SET(cpus[i % ncpus], &one_cpu);
                sched_setaffinity(0, sizeof(one_cpu), &one_cpu);
            }
            serve(lfd);
            _exit(0);
        }
        children[i] = pid;
        nchildren = i + 1;
    }
    struct sigaction sa = {.sa_handler = forward};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int left = workers;
    while (left > 0) {
        if (wait(NULL) > 0)
            left--;
        else if (errno != EINTR)
            break;
    }
    return 0;
}
