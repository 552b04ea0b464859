#define _GNU_SOURCE
#include "fk_tls.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* OpenSSL is not linked at build time, so that a wheel works with whatever
 * OpenSSL the interpreter's ssl module uses and an sdist builds without its
 * headers. These few declarations are all forker needs; the types stay opaque,
 * and the functions, constants and their ABI are the same in 1.1.1 and 3.x
 * (SSL_CTX_set_options excepted: see set_options()). */
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
typedef int (*alpn_cb)(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg);
typedef int (*password_cb)(char *buf, int size, int rwflag, void *userdata);

#define SSL_ERROR_SSL 1
#define SSL_ERROR_WANT_READ 2
#define SSL_ERROR_WANT_WRITE 3
#define SSL_ERROR_SYSCALL 5
#define SSL_ERROR_ZERO_RETURN 6
#define SSL_FILETYPE_PEM 1
#define SSL_VERIFY_PEER 0x01
#define SSL_VERIFY_FAIL_IF_NO_PEER_CERT 0x02
#define SSL_TLSEXT_ERR_OK 0
#define SSL_TLSEXT_ERR_ALERT_FATAL 2
#define SSL_CTRL_MODE 33
#define SSL_CTRL_SET_READ_AHEAD 41
#define SSL_CTRL_SET_TLSEXT_TICKET_KEYS 59
#define SSL_CTRL_SET_MIN_PROTO_VERSION 123
#define SSL_CTRL_GET_MIN_PROTO_VERSION 130
#define SSL_MODE_ENABLE_PARTIAL_WRITE 0x01UL
#define SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER 0x02UL
#define SSL_MODE_RELEASE_BUFFERS 0x10UL
#define SSL_OP_IGNORE_UNEXPECTED_EOF (1UL << 7) /* 3.0 and later only */
#define SSL_OP_NO_COMPRESSION (1UL << 17)
#define SSL_OP_CIPHER_SERVER_PREFERENCE (1UL << 22)
#define SSL_OP_NO_RENEGOTIATION (1UL << 30)
#define TLS1_2_VERSION 0x0303
#define TLS_RECORD_HANDSHAKE 0x16 /* content type of a ClientHello's record */

#define SYMBOLS(X)                                                                           \
    X(unsigned long, OpenSSL_version_num, (void))                                            \
    X(const char *, OpenSSL_version, (int type))                                             \
    X(unsigned long, ERR_get_error, (void))                                                  \
    X(void, ERR_clear_error, (void))                                                         \
    X(void, ERR_error_string_n, (unsigned long e, char *buf, size_t len))                    \
    X(const SSL_METHOD *, TLS_server_method, (void))                                         \
    X(SSL_CTX *, SSL_CTX_new, (const SSL_METHOD *method))                                    \
    X(void, SSL_CTX_free, (SSL_CTX * ctx))                                                   \
    X(int, SSL_CTX_up_ref, (SSL_CTX * ctx))                                                  \
    X(int, SSL_CTX_get_verify_mode, (const SSL_CTX *ctx))                                    \
    X(long, SSL_CTX_ctrl, (SSL_CTX * ctx, int cmd, long larg, void *parg))                   \
    X(int, SSL_CTX_use_certificate_chain_file, (SSL_CTX * ctx, const char *file))            \
    X(int, SSL_CTX_use_PrivateKey_file, (SSL_CTX * ctx, const char *file, int type))         \
    X(int, SSL_CTX_check_private_key, (const SSL_CTX *ctx))                                  \
    X(int, SSL_CTX_set_cipher_list, (SSL_CTX * ctx, const char *list))                       \
    X(int, SSL_CTX_load_verify_locations, (SSL_CTX * ctx, const char *file, const char *dir)) \
    X(void *, SSL_load_client_CA_file, (const char *file))                                   \
    X(void, SSL_CTX_set_client_CA_list, (SSL_CTX * ctx, void *names))                        \
    X(void, SSL_CTX_set_verify, (SSL_CTX * ctx, int mode, void *callback))                   \
    X(void, SSL_CTX_set_alpn_select_cb, (SSL_CTX * ctx, alpn_cb cb, void *arg))              \
    X(int, SSL_CTX_set_session_id_context,                                                   \
      (SSL_CTX * ctx, const unsigned char *id, unsigned int len))                            \
    X(void, SSL_CTX_set_default_passwd_cb, (SSL_CTX * ctx, password_cb cb))                  \
    X(SSL *, SSL_new, (SSL_CTX * ctx))                                                       \
    X(void, SSL_free, (SSL * ssl))                                                           \
    X(int, SSL_set_fd, (SSL * ssl, int fd))                                                  \
    X(void, SSL_set_accept_state, (SSL * ssl))                                               \
    X(int, SSL_do_handshake, (SSL * ssl))                                                    \
    X(int, SSL_read, (SSL * ssl, void *buf, int num))                                        \
    X(int, SSL_write, (SSL * ssl, const void *buf, int num))                                 \
    X(int, SSL_get_error, (const SSL *ssl, int ret))                                         \
    X(int, SSL_shutdown, (SSL * ssl))

typedef struct {
#define FIELD(ret, name, args) ret(*name) args;
    SYMBOLS(FIELD)
#undef FIELD
    void *SSL_CTX_set_options; /* their type depends on the version */
    void *SSL_CTX_get_options;
    unsigned long version;
} openssl;

/* Resolved once per process and never changed after: the only mutable state of
 * this file, shared by every context like the library it points into. */
static openssl fn;
static int loaded;

struct fk_tls_ctx {
    SSL_CTX *ctx;
};

static void message(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- finding OpenSSL --------------------------------------------------------- */

static const char *resolve(void *handle, openssl *t)
{
#define RESOLVE(ret, name, args)                                                             \
    if ((*(void **)&t->name = dlsym(handle, #name)) == NULL)                                 \
        return #name;
    SYMBOLS(RESOLVE)
#undef RESOLVE
    if ((t->SSL_CTX_set_options = dlsym(handle, "SSL_CTX_set_options")) == NULL)
        return "SSL_CTX_set_options";
    if ((t->SSL_CTX_get_options = dlsym(handle, "SSL_CTX_get_options")) == NULL)
        return "SSL_CTX_get_options";
    t->version = t->OpenSSL_version_num();
    return NULL;
}

typedef struct {
    char path[4][PATH_MAX];
    int count;
} libssl_paths;

static int find_libssl(struct dl_phdr_info *info, size_t size, void *data)
{
    libssl_paths *found = data;
    const char *base = strrchr(info->dlpi_name, '/');
    base = base ? base + 1 : info->dlpi_name;
    /* libssl.so.3, or a copy bundled by auditwheel: libssl-1a2b3c4d.so.1.1 */
    if (strncmp(base, "libssl", 6) == 0 && (base[6] == '.' || base[6] == '-') &&
        found->count < 4 && strlen(info->dlpi_name) < PATH_MAX)
        strcpy(found->path[found->count++], info->dlpi_name);
    return 0;
}

int fk_tls_load(const char *ssl_module, char *err, size_t errlen)
{
    if (loaded)
        return 0;
    /* Looked up through a handle, a symbol is searched for in that object and
     * its dependencies: the _ssl extension's handle finds exactly the libssl
     * and libcrypto it uses, even when other copies are loaded. RTLD_NOLOAD:
     * only what is in the process already. */
    void *handles[6];
    int n = 0;
    if (ssl_module != NULL && (handles[n] = dlopen(ssl_module, RTLD_NOLOAD | RTLD_LAZY)) != NULL)
        n++;
    libssl_paths found = {.count = 0};
    dl_iterate_phdr(find_libssl, &found);
    for (int i = 0; i < found.count; i++)
        if ((handles[n] = dlopen(found.path[i], RTLD_NOLOAD | RTLD_LAZY)) != NULL)
            n++;
    handles[n++] = RTLD_DEFAULT; /* an interpreter with OpenSSL linked in statically */
    const char *missing = "SSL_CTX_new";
    for (int i = 0; i < n; i++) {
        openssl t;
        missing = resolve(handles[i], &t);
        if (missing != NULL)
            continue;
        if (t.version < 0x10101000UL) {
            message(err, errlen, "OpenSSL 1.1.1 or later is needed; Python's ssl module uses %s",
                    t.OpenSSL_version(0));
            return -1;
        }
        fn = t;
        loaded = 1;
        return 0;
    }
    message(err, errlen,
            "OpenSSL not found in this process (no %s): import ssl first; Python must have "
            "its ssl module",
            missing);
    return -1;
}

const char *fk_tls_version(void) { return loaded ? fn.OpenSSL_version(0) : ""; }

/* ---- contexts ---------------------------------------------------------------- */

static void set_options(SSL_CTX *ctx, unsigned long op)
{
    if (fn.version >= 0x30000000UL)
        ((uint64_t(*)(SSL_CTX *, uint64_t))fn.SSL_CTX_set_options)(ctx, op);
    else /* 1.1.1: unsigned long, narrower than uint64_t on 32-bit systems */
        ((unsigned long (*)(SSL_CTX *, unsigned long))fn.SSL_CTX_set_options)(ctx, op);
}

static uint64_t get_options(const SSL_CTX *ctx)
{
    if (fn.version >= 0x30000000UL)
        return ((uint64_t(*)(const SSL_CTX *))fn.SSL_CTX_get_options)(ctx);
    return ((unsigned long (*)(const SSL_CTX *))fn.SSL_CTX_get_options)(ctx);
}

/* Adds OpenSSL's first queued error (the cause; later ones are context) to a
 * message and empties the queue. */
static void openssl_error(char *err, size_t errlen, const char *fmt, const char *arg)
{
    char reason[256] = "no detail";
    unsigned long e = fn.ERR_get_error();
    if (e != 0)
        fn.ERR_error_string_n(e, reason, sizeof(reason));
    fn.ERR_clear_error();
    char head[PATH_MAX + 128];
    snprintf(head, sizeof(head), fmt, arg);
    message(err, errlen, "%s: %s", head, reason);
}

/* HTTP/1.1 (or 1.0) from the client's list. A client that offers neither gets
 * the no_application_protocol alert (RFC 7301, section 3.2), as from nginx. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    const unsigned char *http10 = NULL;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        if (n == 8 && memcmp(in + i + 1, "http/1.0", 8) == 0)
            http10 = in + i + 1;
        i += 1 + n;
    }
    if (http10 == NULL)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = http10;
    *outlen = 8;
    return SSL_TLSEXT_ERR_OK;
}

/* An encrypted key would make OpenSSL prompt on the terminal: fail instead. */
static int no_password(char *buf, int size, int rwflag, void *userdata) { return 0; }

/* What forker needs of any context, its own or one handed in: TLS 1.2 at
 * least, no renegotiation nor compression, partial writes into a moving
 * buffer (out may grow between two retries of a write), buffers released
 * while a connection is idle (as nginx does), whole socket buffers read at
 * once, the session ticket keys shared by the workers, ALPN http/1.1. */
static int prepare(SSL_CTX *ctx, const unsigned char *ticket_keys, char *err, size_t errlen)
{
    if (fn.SSL_CTX_ctrl(ctx, SSL_CTRL_GET_MIN_PROTO_VERSION, 0, NULL) < TLS1_2_VERSION)
        fn.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
    set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                         (fn.version >= 0x30000000UL ? SSL_OP_IGNORE_UNEXPECTED_EOF : 0));
    fn.SSL_CTX_ctrl(ctx, SSL_CTRL_MODE,
                    (long)(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                           SSL_MODE_RELEASE_BUFFERS),
                    NULL);
    fn.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_READ_AHEAD, 1, NULL);
    /* Required once client certificates are verified, or a resumed session
     * fails its handshake. */
    fn.SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"forker", 6);
    if (ticket_keys != NULL &&
        fn.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, FK_TLS_TICKET_KEYS,
                        (void *)ticket_keys) != 1) {
        openssl_error(err, errlen, "%s", "cannot set the session ticket keys");
        return -1;
    }
    fn.SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return 0;
}

static fk_tls_ctx *new_ctx(char *err, size_t errlen)
{
    if (!loaded) {
        message(err, errlen, "OpenSSL is not loaded");
        return NULL;
    }
    fk_tls_ctx *t = calloc(1, sizeof(*t));
    if (t == NULL)
        message(err, errlen, "out of memory");
    return t;
}

fk_tls_ctx *fk_tls_ctx_create(const fk_tls_options *o, char *err, size_t errlen)
{
    fk_tls_ctx *t = new_ctx(err, errlen);
    if (t == NULL)
        return NULL;
    const char *keyfile = o->keyfile ? o->keyfile : o->certfile;
    fn.ERR_clear_error();
    t->ctx = fn.SSL_CTX_new(fn.TLS_server_method());
    if (t->ctx == NULL) {
        openssl_error(err, errlen, "%s", "cannot create a TLS context");
        goto fail;
    }
    SSL_CTX *ctx = t->ctx;
    set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    fn.SSL_CTX_set_default_passwd_cb(ctx, no_password);
    if (fn.SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1) {
        openssl_error(err, errlen, "certfile %s", o->certfile);
        goto fail;
    }
    if (fn.SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM) != 1) {
        openssl_error(err, errlen, "keyfile %s", keyfile);
        goto fail;
    }
    if (fn.SSL_CTX_check_private_key(ctx) != 1) {
        fn.ERR_clear_error();
        message(err, errlen, "keyfile %s does not match the certificate in %s", keyfile,
                o->certfile);
        goto fail;
    }
    if (o->ciphers != NULL && fn.SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1) {
        openssl_error(err, errlen, "ciphers '%s'", o->ciphers);
        goto fail;
    }
    if (o->ca_certs != NULL) {
        if (fn.SSL_CTX_load_verify_locations(ctx, o->ca_certs, NULL) != 1) {
            openssl_error(err, errlen, "ca_certs %s", o->ca_certs);
            goto fail;
        }
        void *names = fn.SSL_load_client_CA_file(o->ca_certs);
        if (names != NULL) /* the CAs a client is told to choose its certificate by */
            fn.SSL_CTX_set_client_CA_list(ctx, names);
        fn.ERR_clear_error();
    }
    if (o->verify != FK_TLS_VERIFY_NONE)
        fn.SSL_CTX_set_verify(ctx,
                              SSL_VERIFY_PEER | (o->verify == FK_TLS_VERIFY_REQUIRED
                                                     ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                                     : 0),
                              NULL);
    if (prepare(ctx, o->ticket_keys, err, errlen) != 0)
        goto fail;
    return t;
fail:
    fk_tls_ctx_destroy(t);
    return NULL;
}

int fk_tls_ctx_matches(void *ssl_ctx, int verify_mode, uint64_t options)
{
    return loaded && ssl_ctx != NULL && fn.SSL_CTX_get_verify_mode(ssl_ctx) == verify_mode &&
           get_options(ssl_ctx) == options;
}

fk_tls_ctx *fk_tls_ctx_adopt(void *ssl_ctx, const unsigned char *ticket_keys, char *err,
                             size_t errlen)
{
    fk_tls_ctx *t = new_ctx(err, errlen);
    if (t == NULL)
        return NULL;
    fn.SSL_CTX_up_ref(ssl_ctx);
    t->ctx = ssl_ctx;
    if (prepare(t->ctx, ticket_keys, err, errlen) != 0) {
        fk_tls_ctx_destroy(t);
        return NULL;
    }
    return t;
}

void fk_tls_ctx_destroy(fk_tls_ctx *t)
{
    if (t == NULL)
        return;
    if (t->ctx != NULL)
        fn.SSL_CTX_free(t->ctx);
    free(t);
}

/* ---- connections --------------------------------------------------------------- */

int fk_tls_accept(fk_conn *c, fk_tls_ctx *t)
{
    SSL *ssl = fn.SSL_new(t->ctx);
    if (ssl == NULL || fn.SSL_set_fd(ssl, c->fd) != 1) {
        if (ssl != NULL)
            fn.SSL_free(ssl);
        fn.ERR_clear_error();
        return -1;
    }
    fn.SSL_set_accept_state(ssl);
    c->ssl = ssl;
    c->tls = 0;
    return 0;
}

/* Maps a failed OpenSSL call to recv(2) conventions: -1 with errno (EAGAIN when
 * the call waits for an event), or 0 for the end of the stream. A wait for the
 * other direction than the call's own is recorded for fk_tls_events(). */
static ssize_t io_result(fk_conn *c, int r, int is_read)
{
    int e = fn.SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (!is_read)
            c->tls |= FK_TLS_WRITE_WANTS_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (is_read)
            c->tls |= FK_TLS_READ_WANTS_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN: /* close_notify, or (3.x) an EOF without it */
        return 0;
    case SSL_ERROR_SYSCALL: {
        int saved = errno;
        c->tls |= FK_TLS_FAILED;
        fn.ERR_clear_error();
        errno = saved;
        if (saved != 0)
            return -1;
        if (is_read)
            return 0; /* 1.1.1 reports an EOF without close_notify so */
        errno = EPIPE;
        return -1;
    }
    default: /* a protocol error, a refused certificate... */
        c->tls |= FK_TLS_FAILED;
        fn.ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

ssize_t fk_tls_recv(fk_conn *c, char *buf, size_t len)
{
    SSL *ssl = c->ssl;
    c->tls &= ~FK_TLS_READ_WANTS_WRITE;
    if (FK_UNLIKELY(!(c->tls & FK_TLS_ESTABLISHED))) {
        if (!(c->tls & FK_TLS_SNIFFED)) {
            /* Every TLS connection opens with a handshake record. Peeking at the
             * first byte tells a plain HTTP client before OpenSSL sees it. */
            unsigned char first;
            ssize_t n = recv(c->fd, &first, 1, MSG_PEEK);
            if (n <= 0)
                return n;
            if (first != TLS_RECORD_HANDSHAKE) {
                fn.SSL_free(ssl);
                c->ssl = NULL;
                c->tls = 0;
                return FK_TLS_PLAIN_HTTP;
            }
            c->tls |= FK_TLS_SNIFFED;
        }
        errno = 0;
        fn.ERR_clear_error();
        int r = fn.SSL_do_handshake(ssl);
        if (r != 1)
            return io_result(c, r, 1);
        c->tls |= FK_TLS_ESTABLISHED;
    }
    if (len > INT_MAX)
        len = INT_MAX;
    errno = 0;
    fn.ERR_clear_error();
    int n = fn.SSL_read(ssl, buf, (int)len);
    if (FK_LIKELY(n > 0))
        return n;
    return io_result(c, n, 1);
}

ssize_t fk_tls_send(fk_conn *c, const char *buf, size_t len)
{
    c->tls &= ~FK_TLS_WRITE_WANTS_READ;
    if (len > INT_MAX)
        len = INT_MAX;
    errno = 0;
    fn.ERR_clear_error();
    int n = fn.SSL_write(c->ssl, buf, (int)len);
    if (FK_LIKELY(n > 0))
        return n;
    if (io_result(c, n, 0) == 0)
        errno = EPIPE; /* close_notify received: nothing more can be sent */
    return -1;
}

void fk_tls_close(fk_conn *c)
{
    if (c->ssl == NULL)
        return;
    /* close_notify tells the client the response ended here, not a truncation.
     * One try: a full socket buffer or a gone peer is not worth waiting for.
     * (OpenSSL writes with write(2): SIGPIPE must be ignored, as Python does.) */
    if ((c->tls & (FK_TLS_ESTABLISHED | FK_TLS_FAILED)) == FK_TLS_ESTABLISHED) {
        fn.ERR_clear_error();
        fn.SSL_shutdown(c->ssl);
        fn.ERR_clear_error();
    }
    fn.SSL_free(c->ssl);
    c->ssl = NULL;
    c->tls = 0;
}

int fk_tls_plain_reply(fk_buf *out, const fk_date *date, const char *server, size_t server_len)
{
    static const char type[] = "Content-Type: text/plain; charset=utf-8\r\n";
    static const char body[] = "400 Bad Request: the plain HTTP request was sent to HTTPS port\n";
    fk_response r = {
        .status = 400,
        .fields = type,
        .fields_len = sizeof(type) - 1,
        .content_length = sizeof(body) - 1,
    };
    if (fk_write_head(out, &r, 1, 0, date, server, server_len) != 0)
        return -1;
    return fk_buf_append(out, body, sizeof(body) - 1);
}
