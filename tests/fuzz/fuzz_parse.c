/* libFuzzer target for fk_parse_request (see run.sh).
 *
 * Besides crashes and sanitizer reports, it traps when: the result is not a
 * known status; an accepted head's slices leave it; or the outcome depends on
 * how the input was split (a prefix, then the whole buffer with last_len). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fk_parse.h"

#define CAP 16

static int known(int r)
{
    return r > 0 || r == FK_NEED_MORE || r == FK_ERR_BAD_REQUEST || r == FK_ERR_URI_TOO_LONG ||
           r == FK_ERR_FIELD_TOO_LARGE || r == FK_ERR_TOO_MANY_FIELDS || r == FK_ERR_VERSION ||
           r == FK_ERR_NOT_IMPLEMENTED;
}

static void check_slice(const char *base, int r, const char *p, size_t n, int may_be_null)
{
    if (p == NULL) {
        if (!may_be_null || n != 0)
            __builtin_trap();
        return;
    }
    if (p < base || (size_t)(p - base) > (size_t)r || n > (size_t)r - (size_t)(p - base))
        __builtin_trap();
}

static int parse(const char *buf, size_t len, size_t last_len, fk_request *req, fk_header *h,
                 size_t cap, const fk_limits *lim)
{
    req->headers = h;
    req->num_headers = cap;
    return fk_parse_request(buf, len, last_len, req, lim);
}

static int same(const fk_request *a, const fk_request *b)
{
    size_t i;
    if (a->method != b->method || a->method_len != b->method_len || a->target != b->target ||
        a->target_len != b->target_len || a->path != b->path || a->path_len != b->path_len ||
        a->query != b->query || a->query_len != b->query_len || a->host != b->host ||
        a->host_len != b->host_len || a->minor_version != b->minor_version ||
        a->flags != b->flags || a->content_length != b->content_length ||
        a->num_headers != b->num_headers)
        return 0;
    for (i = 0; i < a->num_headers; i++) {
        if (a->headers[i].name != b->headers[i].name ||
            a->headers[i].name_len != b->headers[i].name_len ||
            a->headers[i].value != b->headers[i].value ||
            a->headers[i].value_len != b->headers[i].value_len)
            return 0;
    }
    return 1;
}

static void run(const char *buf, size_t size, size_t cap, const fk_limits *lim)
{
    fk_header h1[CAP], h2[CAP];
    fk_request whole, split;
    size_t i, k;
    int r, p, q;

    r = parse(buf, size, 0, &whole, h1, cap, lim);
    if (!known(r))
        __builtin_trap();
    if (r > 0) {
        if ((size_t)r > size || whole.num_headers > cap)
            __builtin_trap();
        check_slice(buf, r, whole.method, whole.method_len, 0);
        check_slice(buf, r, whole.target, whole.target_len, 0);
        check_slice(buf, r, whole.path, whole.path_len, 0);
        check_slice(buf, r, whole.query, whole.query_len, 1);
        check_slice(buf, r, whole.host, whole.host_len, 1);
        for (i = 0; i < whole.num_headers; i++) {
            check_slice(buf, r, h1[i].name, h1[i].name_len, 0);
            check_slice(buf, r, h1[i].value, h1[i].value_len, 0);
        }
    }

    /* two splits: the middle, and a point chosen by the input */
    for (i = 0; i < 2 && size > 1; i++) {
        k = i == 0 ? size / 2 : 1 + (size_t)(unsigned char)buf[size - 1] * 31 % (size - 1);
        {
            char *prefix = malloc(k); /* its own allocation, so over-reads are caught */
            if (prefix == NULL)
                return;
            memcpy(prefix, buf, k);
            p = parse(prefix, k, 0, &split, h2, cap, lim);
            free(prefix);
        }
        if (!known(p))
            __builtin_trap();
        /* a prefix of an accepted head is incomplete, or is the same head */
        if (r > 0 && (size_t)r > k && p != FK_NEED_MORE)
            __builtin_trap();
        if (p != FK_NEED_MORE)
            continue;
        q = parse(buf, size, k, &split, h2, cap, lim);
        if (!known(q))
            __builtin_trap();
        /* acceptance never depends on the split */
        if ((r > 0 || q > 0) && (q != r || !same(&whole, &split)))
            __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fk_limits defaults = {0, 0}, small = {40, 24};
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    if (size)
        memcpy(buf, data, size);
    run(buf, size, CAP, &defaults);
    run(buf, size, 3, &small);
    free(buf);
    return 0;
}
