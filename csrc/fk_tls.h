/* TLS for the worker loop: OpenSSL found at run time in the process (the copy
 * Python's ssl module loaded; nothing is linked at build time), one server
 * context per worker, and non-blocking handshake, reads and writes driven by
 * the loop's edge-triggered events.
 *
 * A TLS connection has c->ssl set from accept on. The loop reads and writes
 * through fk_conn_recv()/fk_conn_send(), which cost plain connections one
 * branch. OpenSSL's WANT_READ/WANT_WRITE become EAGAIN; the connection is
 * registered for both directions, so fk_tls_events() only has to turn the
 * event a blocked call waits for into the one that retries it. */
#ifndef FK_TLS_H
#define FK_TLS_H

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include "fk_conn.h"
#include "fk_write.h"

typedef struct fk_tls_ctx fk_tls_ctx;

enum fk_tls_verify {
    FK_TLS_VERIFY_NONE = 0,     /* no client certificate asked for */
    FK_TLS_VERIFY_OPTIONAL = 1, /* asked for, verified when sent */
    FK_TLS_VERIFY_REQUIRED = 2, /* handshake fails without a valid one */
};

typedef struct {
    const char *certfile; /* PEM: the certificate, then its chain */
    const char *keyfile;  /* PEM private key; NULL: it is in certfile */
    const char *ca_certs; /* PEM CAs that client certificates must chain to; NULL none */
    const char *ciphers;  /* OpenSSL cipher list for TLS 1.2; NULL: OpenSSL's default */
    int verify;           /* enum fk_tls_verify */
    const unsigned char *ticket_keys; /* FK_TLS_TICKET_KEYS bytes that encrypt session
                                         tickets, the same in every worker so that a
                                         client resumes on any; NULL: per context */
} fk_tls_options;

#define FK_TLS_TICKET_KEYS 80 /* name, HMAC and AES keys of OpenSSL 1.1.1 and 3.x */

/* fk_conn.tls bits */
#define FK_TLS_SNIFFED 0x01          /* first byte seen: a TLS record */
#define FK_TLS_ESTABLISHED 0x02      /* handshake done */
#define FK_TLS_READ_WANTS_WRITE 0x04 /* the last handshake or read step waits for EPOLLOUT */
#define FK_TLS_WRITE_WANTS_READ 0x08 /* the last write waits for EPOLLIN */
#define FK_TLS_FAILED 0x10           /* fatal error: no close_notify */

/* fk_tls_recv(): the first byte was not a TLS handshake record (a plain HTTP
 * request on the TLS port). c->ssl is freed; the caller answers in plain text. */
#define FK_TLS_PLAIN_HTTP (-2)

/* Finds OpenSSL (1.1.1 or later) in the process: in the dependencies of the
 * shared object ssl_module (the path of Python's _ssl extension; NULL when it
 * has none), else any loaded libssl, else the global scope. Nothing is loaded
 * that is not loaded already. Returns 0, or -1 with a message in err. Safe to
 * call again; the first success stays. */
int fk_tls_load(const char *ssl_module, char *err, size_t errlen);

/* The OpenSSL version string found by fk_tls_load(), "" before. */
const char *fk_tls_version(void);

/* A server context: certificate and key loaded, TLS 1.2 minimum, ALPN
 * http/1.1, client verification as o says. NULL with a message naming the
 * file at fault in err. Needs fk_tls_load(). */
fk_tls_ctx *fk_tls_ctx_create(const fk_tls_options *o, char *err, size_t errlen);

/* A context around an OpenSSL SSL_CTX configured elsewhere (Python's
 * ssl.SSLContext), with a reference of its own. forker's needs are added to it:
 * TLS 1.2 at least, ALPN http/1.1, no renegotiation, the shared ticket keys.
 * NULL with a message in err. */
fk_tls_ctx *fk_tls_ctx_adopt(void *ssl_ctx, const unsigned char *ticket_keys, char *err,
                             size_t errlen);

/* Whether ssl_ctx is an SSL_CTX with this verify mode (OpenSSL's SSL_VERIFY_*
 * bits) and these options: a check that a pointer found in a Python object is
 * the context it should be. */
int fk_tls_ctx_matches(void *ssl_ctx, int verify_mode, uint64_t options);

/* Drops forker's reference to the context. */
void fk_tls_ctx_destroy(fk_tls_ctx *ctx);

/* Starts the server side of TLS on the freshly accepted c (c->ssl). Returns 0,
 * or -1 when out of memory. */
int fk_tls_accept(fk_conn *c, fk_tls_ctx *ctx);

/* Handshake first, then decrypted bytes into buf: as recv(2), plus
 * FK_TLS_PLAIN_HTTP. EAGAIN means wait for the next event. */
ssize_t fk_tls_recv(fk_conn *c, char *buf, size_t len);

/* Encrypts and writes (part of) buf: as send(2). A retry after EAGAIN must pass
 * at least the same bytes, possibly moved. */
ssize_t fk_tls_send(fk_conn *c, const char *buf, size_t len);

/* Sends close_notify when the session is sound (best effort, never blocks) and
 * frees c->ssl. */
void fk_tls_close(fk_conn *c);

/* Appends nginx's answer to a plain HTTP request on a TLS port: 400 with
 * Connection: close. Returns 0, or -1 when out of memory. */
int fk_tls_plain_reply(fk_buf *out, const fk_date *date, const char *server, size_t server_len);

/* The epoll events of a TLS connection, plus the direction a blocked handshake,
 * read or write step waits for, so that the loop retries it. */
static inline uint32_t fk_tls_events(const fk_conn *c, uint32_t events)
{
    if ((c->tls & FK_TLS_READ_WANTS_WRITE) && (events & EPOLLOUT))
        events |= EPOLLIN;
    if ((c->tls & FK_TLS_WRITE_WANTS_READ) && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        events |= EPOLLOUT;
    return events;
}

static inline ssize_t fk_conn_recv(fk_conn *c, char *buf, size_t len)
{
    if (FK_LIKELY(c->ssl == NULL))
        return recv(c->fd, buf, len, 0);
    return fk_tls_recv(c, buf, len);
}

/* flags: 0, or MSG_MORE when close follows these bytes (ignored under TLS) */
static inline ssize_t fk_conn_send(fk_conn *c, const char *buf, size_t len, int flags)
{
    if (FK_LIKELY(c->ssl == NULL))
        return send(c->fd, buf, len, MSG_NOSIGNAL | flags);
    return fk_tls_send(c, buf, len);
}

#endif
