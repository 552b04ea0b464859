/* HTTP/1.1 request-head parser (RFC 9112 §2-§3, §5-§6; RFC 9110 §5, §7.2). */
#define _GNU_SOURCE /* memrchr */
#include "fk_parse.h"
#include "fk_chars.h"

#include <limits.h>
#include <string.h>

#if defined(__SSE2__) && !defined(FK_NO_SIMD)
#include <emmintrin.h>
#define FK_PARSE_SSE2 1
#endif

#define DEFAULT_LIMIT 8190
#define MAX_EMPTY_LINES 8 /* CRLFs tolerated before the request line */

/* Character classes, one bit each; tchar is fk_tchar (fk_chars.h). */
#define C_TARGET 0x02 /* request-target byte: VCHAR but '#' (RFC 9112 §3.2: no fragment) */
#define C_VALUE 0x04  /* field-vchar, obs-text, SP, HTAB (RFC 9110 §5.5) */
#define C_HOST 0x08   /* reg-name: unreserved, sub-delims, '%' (RFC 3986 §3.2.2) */
#define C_HEX 0x10    /* HEXDIG */

static const unsigned char ctype[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x04, 0x0e, 0x06, 0x04, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x06,
    0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x06, 0x0e, 0x06, 0x0e, 0x06, 0x06,
    0x06, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e,
    0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x06, 0x06, 0x06, 0x06, 0x0e,
    0x06, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e,
    0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x06, 0x06, 0x06, 0x0e, 0x00,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
    0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04,
};

#define IS(c, cls) (ctype[(unsigned char)(c)] & (cls))
#define IS_DIGIT(c) ((unsigned)(unsigned char)(c) - '0' < 10u)
#define IS_ALPHA(c) ((unsigned)((unsigned char)(c) | 0x20) - 'a' < 26u)
#define IS_OWS(c) ((c) == ' ' || (c) == '\t')

/* End of the scan for a line starting at p: a line of at most max bytes plus its
 * CRLF lies within [p, p + max + 2), so nothing past that is ever looked at. */
static const char *line_limit(const char *p, const char *end, size_t max)
{
    return (size_t)(end - p) > max + 2 ? p + max + 2 : end;
}

/* The line at start ran out of input at lend, before its CRLF: it is either
 * already over max (a pending CR not counted) or may still complete. */
static int open_line(const char *start, const char *lend, size_t max, int too_long)
{
    size_t n = (size_t)(lend - start);
    if (n > 0 && lend[-1] == '\r')
        n--;
    return n > max ? too_long : FK_NEED_MORE;
}

/* First byte in [p, end) that is not VCHAR, or is '#': a fragment is no part
 * of a request-target (RFC 9112 §3.2), so the target ends there and the
 * request line is refused. */
static const char *scan_target(const char *p, const char *end)
{
#ifdef FK_PARSE_SSE2
    const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f), hash = _mm_set1_epi8('#');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, sp), v);  /* <= 0x20 */
        __m128i high = _mm_cmpeq_epi8(_mm_max_epu8(v, del), v); /* >= 0x7f */
        high = _mm_or_si128(high, _mm_cmpeq_epi8(v, hash));
        int m = _mm_movemask_epi8(_mm_or_si128(low, high));
        if (m != 0)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && IS(*p, C_TARGET))
        p++;
    return p;
}

/* First byte in [p, end) that cannot appear in a field value. */
static const char *scan_value(const char *p, const char *end)
{
#ifdef FK_PARSE_SSE2
    const __m128i us = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'),
                  del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, us), v); /* <= 0x1f */
        ctl = _mm_andnot_si128(_mm_cmpeq_epi8(v, tab), ctl);
        int m = _mm_movemask_epi8(_mm_or_si128(ctl, _mm_cmpeq_epi8(v, del)));
        if (m != 0)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && IS(*p, C_VALUE))
        p++;
    return p;
}

static const char *scan_token(const char *p, const char *end)
{
    /* eight lookups and one branch per step: names are mostly 4 to 20 bytes */
    while (end - p >= 8 && (FK_IS_TCHAR(p[0]) & FK_IS_TCHAR(p[1]) & FK_IS_TCHAR(p[2]) &
                            FK_IS_TCHAR(p[3]) & FK_IS_TCHAR(p[4]) & FK_IS_TCHAR(p[5]) &
                            FK_IS_TCHAR(p[6]) & FK_IS_TCHAR(p[7])))
        p += 8;
    while (p < end && FK_IS_TCHAR(*p))
        p++;
    return p;
}

/* Checks the n bytes at p against "HTTP/" DIGIT "." DIGIT CRLF (n <= 10). */
static int version_ok(const char *p, size_t n)
{
    static const char pattern[] = "HTTP/#.#\r\n";
    size_t i;
    for (i = 0; i < n; i++) {
        if (pattern[i] == '#' ? !IS_DIGIT(p[i]) : p[i] != pattern[i])
            return 0;
    }
    return 1;
}

/* Request line (RFC 9112 §3): method SP request-target SP HTTP-version CRLF.
 * Returns the start of the next line, or NULL with *ret set. */
static const char *parse_request_line(const char *p, const char *end, fk_request *req,
                                      size_t max, int *ret)
{
    const char *start = p, *lend = line_limit(p, end, max), *q;

    q = scan_token(p, lend);
    if (FK_UNLIKELY(q == lend))
        goto open;
    if (FK_UNLIKELY(*q != ' ' || q == p))
        goto bad;
    req->method = p;
    req->method_len = (size_t)(q - p);

    p = q + 1;
    q = scan_target(p, lend);
    if (FK_UNLIKELY(q == lend))
        goto open;
    if (FK_UNLIKELY(*q != ' ' || q == p))
        goto bad;
    req->target = p;
    req->target_len = (size_t)(q - p);

    p = q + 1;
    if (FK_LIKELY(lend - p >= 10 && memcmp(p, "HTTP/1.1\r\n", 10) == 0)) {
        req->minor_version = 1;
        return p + 10;
    }
    if (lend - p < 10) {
        if (!version_ok(p, (size_t)(lend - p)))
            goto bad;
        goto open;
    }
    if (!version_ok(p, 10))
        goto bad;
    if (p[5] != '1') {
        *ret = FK_ERR_VERSION;
        return NULL;
    }
    /* HTTP/1.2 to 1.9 are processed as HTTP/1.1, the highest minor version
     * forker implements (RFC 9110 §2.5), as nginx and gunicorn do */
    req->minor_version = p[7] > '1' ? 1 : p[7] - '0';
    return p + 10;
open:
    *ret = open_line(start, lend, max, FK_ERR_URI_TOO_LONG);
    return NULL;
bad:
    *ret = FK_ERR_BAD_REQUEST;
    return NULL;
}

/* field-line = field-name ":" OWS field-value OWS CRLF (RFC 9112 §5). The
 * caller has checked that the line does not start with CR. */
static const char *parse_field_line(const char *p, const char *end, fk_header *h, size_t max,
                                    int *ret)
{
    const char *start = p, *lend = line_limit(p, end, max), *q, *v;

    /* No whitespace before the colon (§5.1) and none at the start of the line,
     * which is obs-fold (§5.2): both fail the token scan. */
    q = scan_token(p, lend);
    if (FK_UNLIKELY(q == lend))
        goto open;
    if (FK_UNLIKELY(*q != ':' || q == p))
        goto bad;
    h->name = p;
    h->name_len = (size_t)(q - p);

    q++;
    while (q < lend && IS_OWS(*q))
        q++;
    v = q;
    q = scan_value(q, lend);
    if (FK_UNLIKELY(q == lend))
        goto open;
    if (FK_UNLIKELY(*q != '\r'))
        goto bad;
    if (FK_UNLIKELY(q + 1 == lend))
        goto open;
    if (FK_UNLIKELY(q[1] != '\n'))
        goto bad;
    h->value = v;
    p = q;
    while (p > v && IS_OWS(p[-1]))
        p--;
    h->value_len = (size_t)(p - v);
    return q + 2;
open:
    *ret = open_line(start, lend, max, FK_ERR_FIELD_TOO_LARGE);
    return NULL;
bad:
    *ret = FK_ERR_BAD_REQUEST;
    return NULL;
}

static unsigned char lower(unsigned char c)
{
    return (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

/* p[0 .. n) equals the lowercase literal s, ignoring ASCII case. */
static int ieq(const char *p, size_t n, const char *s, size_t sn)
{
    size_t i;
    if (n != sn)
        return 0;
    for (i = 0; i < n; i++) {
        if (lower((unsigned char)p[i]) != (unsigned char)s[i])
            return 0;
    }
    return 1;
}

#define IEQ(p, n, lit) ieq((p), (n), lit, sizeof(lit) - 1)

static int is_token(const char *p, size_t n)
{
    return n > 0 && scan_token(p, p + n) == p + n;
}

enum { AUTH_FIELD, AUTH_ABSOLUTE, AUTH_CONNECT };

/* uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2). userinfo is refused
 * (RFC 9110 §4.2.4). A Host field may be empty (RFC 9112 §3.2); the authority of a
 * target may not, and CONNECT's needs a port (§3.2.3). */
static int valid_authority(const char *p, size_t n, int mode)
{
    size_t i = 0, port;

    if (n == 0)
        return mode == AUTH_FIELD;
    if (p[0] == '[') {
        /* IP-literal: IPv6address or IPvFuture, checked for its alphabet only */
        for (i = 1; i < n && p[i] != ']'; i++) {
            if (!IS(p[i], C_HOST) && p[i] != ':')
                return 0;
        }
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        for (; i < n && IS(p[i], C_HOST); i++) {
            if (p[i] == '%') {
                if (n - i < 3 || !IS(p[i + 1], C_HEX) || !IS(p[i + 2], C_HEX))
                    return 0;
                i += 2;
            }
        }
        if (i == 0)
            return 0;
    }
    if (i == n)
        return mode != AUTH_CONNECT;
    if (p[i] != ':')
        return 0;
    port = ++i;
    while (i < n && IS_DIGIT(p[i]))
        i++;
    return i == n && (mode != AUTH_CONNECT || i > port);
}

/* Splits p[0 .. n) at its first '?' into path and query. */
static void split_query(fk_request *req, const char *p, size_t n)
{
    const char *q = memchr(p, '?', n);
    req->path = p;
    if (q == NULL) {
        req->path_len = n;
        return;
    }
    req->path_len = (size_t)(q - p);
    req->query = q + 1;
    req->query_len = n - req->path_len - 1;
}

/* The four forms of request-target (RFC 9112 §3.2), each tied to its methods. */
static int check_target(fk_request *req)
{
    const char *t = req->target;
    size_t n = req->target_len, i, a;

    if (req->method_len == 7 && memcmp(req->method, "CONNECT", 7) == 0) {
        if (!valid_authority(t, n, AUTH_CONNECT))
            return FK_ERR_BAD_REQUEST;
        req->path = t;
        req->path_len = n;
        return 0;
    }
    if (FK_LIKELY(t[0] == '/')) {
        split_query(req, t, n);
        return 0;
    }
    if (t[0] == '*') {
        if (n != 1 || req->method_len != 7 || memcmp(req->method, "OPTIONS", 7) != 0)
            return FK_ERR_BAD_REQUEST;
        req->path = t;
        req->path_len = 1;
        return 0;
    }
    /* absolute-form: scheme "://" authority path-abempty ["?" query] */
    if (!IS_ALPHA(t[0]))
        return FK_ERR_BAD_REQUEST;
    for (i = 1; i < n && (IS_ALPHA(t[i]) || IS_DIGIT(t[i]) || t[i] == '+' || t[i] == '-' ||
                          t[i] == '.');
         i++)
        ;
    if (n - i < 3 || memcmp(t + i, "://", 3) != 0)
        return FK_ERR_BAD_REQUEST;
    a = i + 3;
    for (i = a; i < n && t[i] != '/' && t[i] != '?'; i++)
        ;
    if (!valid_authority(t + a, i - a, AUTH_ABSOLUTE))
        return FK_ERR_BAD_REQUEST;
    req->host = t + a;
    req->host_len = i - a;
    req->flags |= FK_REQ_ABSOLUTE_FORM;
    split_query(req, t + i, n - i);
    return 0;
}

int64_t fk_parse_content_length(const char *p, size_t n)
{
    int64_t v = 0;
    size_t i;
    if (n == 0 || n > 18)
        return -1;
    for (i = 0; i < n; i++) {
        if (!IS_DIGIT(p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* What the fields say about framing and the connection (RFC 9112 §6, §9;
 * RFC 9110 §7.2, §7.6.1, §10.1.1). */
typedef struct {
    int hosts, te, te_chunked, te_last_chunked, te_other;
    int close, keep_alive, upgrade_token, upgrade_field, expect_continue;
    int64_t content_length;
} field_facts;

/* One element of a comma-separated list, OWS-trimmed in place. */
static void trim(const char **p, const char **e)
{
    while (*p < *e && IS_OWS(**p))
        (*p)++;
    while (*e > *p && IS_OWS((*e)[-1]))
        (*e)--;
}

static int transfer_encoding(field_facts *f, const char *v, size_t n)
{
    const char *end = v + n, *p = v, *e;
    f->te = 1;
    for (;;) {
        e = memchr(p, ',', (size_t)(end - p));
        if (e == NULL)
            e = end;
        {
            const char *s = p, *t = e;
            trim(&s, &t);
            /* No empty elements here: "chunked," must not read as chunked final
             * for us while another parser reads it otherwise. */
            if (!is_token(s, (size_t)(t - s)))
                return FK_ERR_BAD_REQUEST;
            if (IEQ(s, (size_t)(t - s), "chunked")) {
                if (f->te_chunked++)
                    return FK_ERR_BAD_REQUEST;
                f->te_last_chunked = 1;
            } else {
                f->te_other = 1;
                f->te_last_chunked = 0;
            }
        }
        if (e == end)
            return 0;
        p = e + 1;
    }
}

static int connection(field_facts *f, const char *v, size_t n)
{
    const char *end = v + n, *p = v, *e;
    for (;;) {
        e = memchr(p, ',', (size_t)(end - p));
        if (e == NULL)
            e = end;
        {
            const char *s = p, *t = e;
            size_t len;
            trim(&s, &t);
            len = (size_t)(t - s);
            if (len > 0 && !is_token(s, len))
                return FK_ERR_BAD_REQUEST;
            if (IEQ(s, len, "close"))
                f->close = 1;
            else if (IEQ(s, len, "keep-alive"))
                f->keep_alive = 1;
            else if (IEQ(s, len, "upgrade"))
                f->upgrade_token = 1;
        }
        if (e == end)
            return 0;
        p = e + 1;
    }
}

static int check_fields(fk_request *req)
{
    field_facts f;
    size_t i;
    int rc;

    memset(&f, 0, sizeof(f));
    f.content_length = -1;
    for (i = 0; i < req->num_headers; i++) {
        const fk_header *h = &req->headers[i];
        const char *v = h->value;
        size_t n = h->value_len;
        int64_t cl;

        switch (h->name_len) {
        case 4:
            if (!IEQ(h->name, 4, "host"))
                break;
            if (++f.hosts > 1 || !valid_authority(v, n, AUTH_FIELD))
                return FK_ERR_BAD_REQUEST;
            if (!(req->flags & FK_REQ_ABSOLUTE_FORM)) {
                req->host = v;
                req->host_len = n;
            }
            break;
        case 6:
            if (IEQ(h->name, 6, "expect") && IEQ(v, n, "100-continue"))
                f.expect_continue = 1;
            break;
        case 7:
            if (IEQ(h->name, 7, "upgrade") && n > 0)
                f.upgrade_field = 1;
            break;
        case 10:
            if (IEQ(h->name, 10, "connection") && (rc = connection(&f, v, n)) != 0)
                return rc;
            break;
        case 14:
            if (!IEQ(h->name, 14, "content-length"))
                break;
            /* repeats must agree (RFC 9110 §8.6); a list is never accepted */
            cl = fk_parse_content_length(v, n);
            if (cl < 0 || (f.content_length >= 0 && cl != f.content_length))
                return FK_ERR_BAD_REQUEST;
            f.content_length = cl;
            break;
        case 17:
            if (IEQ(h->name, 17, "transfer-encoding") &&
                (rc = transfer_encoding(&f, v, n)) != 0)
                return rc;
            break;
        default:
            break;
        }
    }

    if (req->minor_version == 1 && f.hosts == 0)
        return FK_ERR_BAD_REQUEST;
    if (f.te) {
        /* RFC 9112 §6.1 and §6.3: any doubt about the framing is a 400 */
        if (f.content_length >= 0 || req->minor_version == 0 || !f.te_last_chunked)
            return FK_ERR_BAD_REQUEST;
        if (f.te_other)
            return FK_ERR_NOT_IMPLEMENTED;
        req->flags |= FK_REQ_CHUNKED | FK_REQ_HAS_BODY;
    }
    req->content_length = f.content_length;
    if (f.content_length > 0)
        req->flags |= FK_REQ_HAS_BODY;
    if ((req->minor_version == 1 || f.keep_alive) && !f.close)
        req->flags |= FK_REQ_KEEP_ALIVE;
    if (f.upgrade_token && f.upgrade_field)
        req->flags |= FK_REQ_UPGRADE;
    if (f.expect_continue && req->minor_version == 1)
        req->flags |= FK_REQ_EXPECT_CONTINUE;
    return 0;
}

static int parse_head(const char *buf, const char *end, fk_request *req, size_t capacity,
                      size_t line_max, size_t field_max)
{
    const char *p = buf;
    int empty = 0, ret = 0;

    /* RFC 9112 §2.2: ignore at least one empty line before the request line */
    for (;;) {
        if (FK_UNLIKELY(p == end))
            return FK_NEED_MORE;
        if (FK_LIKELY(*p != '\r' && *p != '\n'))
            break;
        if (*p == '\n')
            return FK_ERR_BAD_REQUEST;
        if (end - p < 2)
            return FK_NEED_MORE;
        if (p[1] != '\n' || ++empty > MAX_EMPTY_LINES)
            return FK_ERR_BAD_REQUEST;
        p += 2;
    }

    p = parse_request_line(p, end, req, line_max, &ret);
    if (p == NULL)
        return ret;
    if ((ret = check_target(req)) != 0)
        return ret;

    for (;;) {
        if (FK_UNLIKELY(p == end))
            return FK_NEED_MORE;
        if (*p == '\r') {
            if (end - p < 2)
                return FK_NEED_MORE;
            if (p[1] != '\n')
                return FK_ERR_BAD_REQUEST;
            p += 2;
            break;
        }
        if (FK_UNLIKELY(req->num_headers == capacity))
            return FK_ERR_TOO_MANY_FIELDS;
        p = parse_field_line(p, end, &req->headers[req->num_headers], field_max, &ret);
        if (p == NULL)
            return ret;
        req->num_headers++;
    }

    if ((ret = check_fields(req)) != 0)
        return ret;
    if (FK_UNLIKELY(p - buf > INT_MAX))
        return FK_ERR_FIELD_TOO_LARGE;
    return (int)(p - buf);
}

/* True when the bytes added since last_len end no line and cannot have made an
 * earlier line invalid: no LF, no CR except a pending last byte, no control
 * byte, and the line they extend was already open. Their other errors show
 * once the line ends or passes its limit. */
static int only_extends_open_line(const char *buf, size_t len, size_t last_len)
{
    const char *p = buf + last_len - 1, *end = buf + len;
    if (*p == '\n' || *p == '\r')
        return 0;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (FK_UNLIKELY((c < 0x20 && c != '\t') || c == 0x7f))
            return c == '\r' && p + 1 == end;
    }
    return 1;
}

/* Limit check of the open line, without rescanning the head. It is the request
 * line if no LF follows the empty lines within the request-line limit; else a
 * field line starting after the last LF, which is within reach of the end or
 * the line is too long anyway. */
static int check_open_line(const char *buf, const char *end, size_t line_max, size_t field_max)
{
    const char *p = buf, *lend, *nl, *lo, *q;
    int empty = 0;

    /* bounded scans only: this runs on every read of a slowly sent head */
    while (end - p >= 2 && p[0] == '\r' && p[1] == '\n' && empty++ < MAX_EMPTY_LINES)
        p += 2;
    lend = line_limit(p, end, line_max);
    nl = memchr(p, '\n', (size_t)(lend - p));
    if (nl == NULL)
        return open_line(p, lend, line_max, FK_ERR_URI_TOO_LONG);
    lo = (size_t)(end - (nl + 1)) > field_max + 2 ? end - (field_max + 2) : nl + 1;
    q = memrchr(lo, '\n', (size_t)(end - lo));
    return open_line(q != NULL ? q + 1 : lo, end, field_max, FK_ERR_FIELD_TOO_LARGE);
}

static size_t limit_or_default(size_t v)
{
    if (v == 0)
        return DEFAULT_LIMIT;
    return v > SIZE_MAX / 4 ? SIZE_MAX / 4 : v;
}

int fk_parse_request(const char *buf, size_t len, size_t last_len, fk_request *req,
                     const fk_limits *limits)
{
    size_t capacity = req->num_headers;
    size_t line_max = limit_or_default(limits ? limits->max_request_line : 0);
    size_t field_max = limit_or_default(limits ? limits->max_field_size : 0);

    req->method = req->target = req->path = req->query = req->host = NULL;
    req->method_len = req->target_len = req->path_len = req->query_len = req->host_len = 0;
    req->minor_version = -1;
    req->flags = 0;
    req->content_length = -1;
    req->num_headers = 0;

    if (last_len != 0 && last_len < len && only_extends_open_line(buf, len, last_len))
        return check_open_line(buf, buf + len, line_max, field_max);
    return parse_head(buf, buf + len, req, capacity, line_max, field_max);
}
