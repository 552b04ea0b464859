/* Unit tests of fk_body_read over a socketpair: a streamed body's buffered
 * part, then the socket; Content-Length and chunked framing; what follows the
 * body left for the next request; stalls, hang-ups, oversize and bad coding.
 * Build with ASan and UBSan (see the Makefile). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fk_body.h"
#include "check.h"

#include "fk_clock.h"

/* What fk_body.c takes from the TLS layer. */
ssize_t fk_tls_recv(fk_conn *c, char *buf, size_t len)
{
    (void)c, (void)buf, (void)len;
    return -1; /* never called: these connections are plain */
}

ssize_t fk_tls_send(fk_conn *c, const char *buf, size_t len, int flags)
{
    (void)c, (void)buf, (void)len, (void)flags;
    return -1; /* never called: these connections are plain */
}

static const fk_body_limits LIMITS = {.stall_ms = 2000, .deadline_ms = 0, .max_body_size = 0};

/* A connection whose head ("HEAD" standing in for it) and first body bytes
 * are buffered, with room bytes of free space after them; the client end of
 * the socketpair goes to *peer. */
static fk_conn *conn_with(const char *buffered, size_t n, size_t room, int chunked,
                          uint64_t content_length, int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fk_conn *c = calloc(1, sizeof(*c));
    c->fd = sv[0];
    c->body_fd = -1;
    c->in.cap = 4 + n + room;
    c->in.data = malloc(c->in.cap);
    memcpy(c->in.data, "HEAD", 4);
    memcpy(c->in.data + 4, buffered, n);
    c->in.len = 4 + n;
    c->body_off = 4;
    c->body_len = n;
    c->body_stream = 1;
    c->req.flags = chunked ? FK_REQ_CHUNKED : 0;
    c->req.content_length = (int64_t)content_length;
    c->body_rest = content_length - n;
    c->body_total = n;
    fk_chunked_init(&c->chunked);
    *peer = sv[1];
    return c;
}

static void conn_free(fk_conn *c, int peer)
{
    close(c->fd);
    if (peer >= 0)
        close(peer);
    free(c->in.data);
    free(c);
}

static void send_all(int fd, const char *s)
{
    size_t n = strlen(s);
    if (write(fd, s, n) != (ssize_t)n)
        abort();
}

/* Reads the whole body in steps of step bytes into out (NUL-terminated). */
static ssize_t read_all(fk_conn *c, char *out, size_t size, size_t step)
{
    size_t got = 0;
    for (;;) {
        size_t want = step < size - 1 - got ? step : size - 1 - got;
        ssize_t n = fk_body_read(c, out + got, want, &LIMITS);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    return (ssize_t)got;
}

static void test_content_length(void)
{
    int peer;
    fk_conn *c = conn_with("hello ", 6, 16, 0, 17, &peer);
    send_all(peer, "world, againGET / HTTP/1.1\r\n");
    char out[64];
    CHECK(read_all(c, out, sizeof(out), 3) == 17);
    CHECK(strcmp(out, "hello world, again") != 0); /* 17 bytes, not 18 */
    CHECK(strcmp(out, "hello world, agai") == 0);
    CHECK(c->body_done && c->body_rest == 0);
    CHECK(fk_body_read(c, out, 10, &LIMITS) == 0);
    char next[32] = {0};
    CHECK(recv(c->fd, next, sizeof(next) - 1, 0) == 17); /* the next request stays */
    CHECK(strncmp(next, "nGET / HTTP/1.1\r\n", 17) == 0);
    conn_free(c, peer);
}

static void test_chunked_in_small_steps(void)
{
    /* room of 5 bytes: sizes, data and CRLFs arrive split across reads */
    int peer;
    fk_conn *c = conn_with("abc", 3, 5, 1, 0, &peer);
    send_all(peer, "4;x=y\r\ndefg\r\n1\r\nh\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n"
                   "GET /next HTTP/1.1\r\n\r\n");
    shutdown(peer, SHUT_WR);
    char out[64];
    CHECK(read_all(c, out, sizeof(out), 2) == 24);
    CHECK(strcmp(out, "abcdefgh0123456789abcdef") == 0);
    CHECK(c->body_done && c->body_total == 24);
    /* bytes after the body stay in the buffer, right after the decoded data */
    size_t end = c->in.off + c->body_off + c->body_len;
    CHECK(c->in.len >= end);
    size_t next_len = c->in.len - end;
    CHECK(next_len <= 5);
    CHECK(memcmp(c->in.data + end, "GET /next", next_len) == 0);
    conn_free(c, peer);
}

static void test_chunked_over_max(void)
{
    int peer;
    fk_conn *c = conn_with("", 0, 64, 1, 0, &peer);
    send_all(peer, "8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n");
    fk_body_limits lim = LIMITS;
    lim.max_body_size = 12;
    char out[64];
    ssize_t n = 0, r;
    while ((r = fk_body_read(c, out, 4, &lim)) > 0)
        n += r;
    CHECK(r == FK_ERR_BODY_TOO_LARGE);
    CHECK(n <= 16);
    CHECK(fk_body_read(c, out, 4, &lim) == FK_ERR_BODY_TOO_LARGE); /* sticky */
    conn_free(c, peer);
}

static void test_bad_chunk(void)
{
    int peer;
    fk_conn *c = conn_with("", 0, 64, 1, 0, &peer);
    send_all(peer, "zz\r\n");
    char out[16];
    CHECK(fk_body_read(c, out, sizeof(out), &LIMITS) == FK_ERR_BAD_REQUEST);
    conn_free(c, peer);
}

static void test_stall_and_deadline(void)
{
    int peer;
    fk_conn *c = conn_with("ab", 2, 0, 0, 10, &peer);
    fk_body_limits lim = LIMITS;
    lim.stall_ms = 50;
    char out[16];
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == 2); /* the buffered part first */
    uint64_t start = fk_now_ms();
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_ERR_TIMEOUT);
    CHECK(fk_now_ms() - start >= 40);
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_ERR_TIMEOUT);
    conn_free(c, peer);

    c = conn_with("", 0, 0, 0, 10, &peer);
    lim.stall_ms = 10000;
    lim.deadline_ms = fk_now_ms() + 30; /* the whole-request deadline wins */
    start = fk_now_ms();
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_ERR_TIMEOUT);
    CHECK(fk_now_ms() - start < 5000);
    conn_free(c, peer);
}

static void test_hang_up(void)
{
    int peer;
    fk_conn *c = conn_with("", 0, 0, 0, 100, &peer);
    send_all(peer, "partial");
    close(peer);
    char out[200];
    CHECK(fk_body_read(c, out, sizeof(out), &LIMITS) == 7);
    CHECK(fk_body_read(c, out, sizeof(out), &LIMITS) == FK_ERR_CLOSED);
    CHECK(c->body_bytes_in == 7);
    conn_free(c, -1);
}

static void test_own_descriptor(void)
{
    /* a handler thread reads through body_fd, even once fd is gone */
    int peer;
    fk_conn *c = conn_with("", 0, 0, 0, 5, &peer);
    c->body_fd = dup(c->fd);
    close(c->fd);
    c->fd = open("/dev/null", O_RDONLY); /* the number reused by something else */
    send_all(peer, "12345");
    char out[16];
    CHECK(read_all(c, out, sizeof(out), 16) == 5 && strcmp(out, "12345") == 0);
    close(c->body_fd);
    conn_free(c, peer);
}

/* Expect: 100-continue deferred to the first read: sent once, before the
 * body is read; never once the answer has begun. */
static void test_continue_on_first_read(void)
{
    int peer;
    fk_conn *c = conn_with("", 0, 16, 0, 5, &peer);
    c->continue_due = FK_CONTINUE_DUE;
    send_all(peer, "hello");
    char out[16];
    CHECK(read_all(c, out, sizeof(out), 2) == 5 && strcmp(out, "hello") == 0);
    CHECK(c->continue_due == FK_CONTINUE_NONE);
    char got[64] = {0};
    CHECK(recv(peer, got, sizeof(got) - 1, MSG_DONTWAIT) == 25);
    CHECK(strcmp(got, "HTTP/1.1 100 Continue\r\n\r\n") == 0);
    conn_free(c, peer);

    c = conn_with("", 0, 16, 0, 5, &peer);
    c->continue_due = FK_CONTINUE_DUE;
    fk_body_no_continue(c); /* the handler answered without reading */
    CHECK(c->continue_due == FK_CONTINUE_NONE);
    send_all(peer, "hello");
    CHECK(read_all(c, out, sizeof(out), 5) == 5);
    CHECK(recv(peer, got, sizeof(got) - 1, MSG_DONTWAIT) < 0 && errno == EAGAIN);
    conn_free(c, peer);
}

/* Reads that never wait (the loop's body_events): FK_NEED_MORE when nothing
 * came, which is not an error; the stall counts from the last bytes, and
 * fk_body_wait_ms says how long is left of it. */
static void test_nowait(void)
{
    int peer;
    fk_conn *c = conn_with("ab", 2, 0, 0, 10, &peer);
    fk_body_limits lim = LIMITS;
    lim.nowait = 1;
    lim.stall_ms = 60;
    c->body_heard_ms = fk_now_ms();
    char out[16];
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == 2);
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_NEED_MORE);
    CHECK(c->body_error == 0);
    int left = fk_body_wait_ms(c, &lim);
    CHECK(left >= 0 && left <= 60);
    send_all(peer, "cdef");
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == 4 && memcmp(out, "cdef", 4) == 0);
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_NEED_MORE);
    struct timespec pause = {0, 80 * 1000000L};
    nanosleep(&pause, NULL);
    CHECK(fk_body_wait_ms(c, &lim) == 0);
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_ERR_TIMEOUT);
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_ERR_TIMEOUT); /* sticky */
    conn_free(c, peer);

    /* chunked, a chunk in two pieces */
    c = conn_with("", 0, 64, 1, 0, &peer);
    lim = LIMITS;
    lim.nowait = 1;
    lim.stall_ms = 0;
    CHECK(fk_body_wait_ms(c, &lim) == -1); /* nothing limits the wait */
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_NEED_MORE);
    send_all(peer, "5\r\nhe");
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == 2 && memcmp(out, "he", 2) == 0);
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_NEED_MORE);
    send_all(peer, "llo\r\n0\r\n\r\n");
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == 3 && memcmp(out, "llo", 3) == 0);
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == 0);
    conn_free(c, peer);

    /* a hang-up is told as in a waiting read */
    c = conn_with("", 0, 0, 0, 10, &peer);
    lim = LIMITS;
    lim.nowait = 1;
    close(peer);
    CHECK(fk_body_read(c, out, sizeof(out), &lim) == FK_ERR_CLOSED);
    conn_free(c, -1);
}

int main(void)
{
    test_content_length();
    test_chunked_in_small_steps();
    test_chunked_over_max();
    test_bad_chunk();
    test_stall_and_deadline();
    test_hang_up();
    test_own_descriptor();
    test_continue_on_first_read();
    test_nowait();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
