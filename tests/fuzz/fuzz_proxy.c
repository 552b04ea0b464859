/* libFuzzer target for fk_proxy_parse (see run.sh).
 *
 * The first input byte picks a split point; the rest is the connection's first
 * bytes. Besides crashes and sanitizer reports, it traps when: the result is
 * not a known status; a header is longer than the input or than FK_PROXY_MAX;
 * or the outcome on a prefix contradicts the outcome on the whole (a complete
 * header must read the same with any bytes after it, be incomplete on every
 * shorter prefix, and an input refused must not become acceptable). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fk_proxy.h"

static int parse(const uint8_t *data, size_t size, fk_proxy_result *res)
{
    /* an exact-size copy, so that ASan sees a read past the end */
    char *copy = malloc(size ? size : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, size);
    memset(res, 0, sizeof(*res));
    int r = fk_proxy_parse(copy, size, res);
    free(copy);
    if (!(r > 0 || r == FK_NEED_MORE || r == FK_ERR_BAD_REQUEST))
        __builtin_trap();
    if (r > 0 && ((size_t)r > size || r > FK_PROXY_MAX))
        __builtin_trap();
    if (r > 0 && (res->version < 1 || res->version > 2 || (res->local && res->src_len != 0) ||
                  (!res->local && res->src.ss_family != AF_INET &&
                   res->src.ss_family != AF_INET6)))
        __builtin_trap();
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = data[0];
    data++;
    size--;
    if (split > size)
        split = size;
    fk_proxy_result whole, part;
    int a = parse(data, size, &whole);
    int b = parse(data, split, &part);
    if (a > 0) {
        if ((size_t)a <= split ? b != a : b != FK_NEED_MORE)
            __builtin_trap();
        if (b > 0 && (whole.local != part.local || whole.src_len != part.src_len ||
                      memcmp(&whole.src, &part.src, sizeof(whole.src)) != 0))
            __builtin_trap();
        int c = parse(data, (size_t)a, &part); /* the header alone */
        if (c != a)
            __builtin_trap();
    } else if (a == FK_NEED_MORE) {
        if (b != FK_NEED_MORE)
            __builtin_trap();
    } else if (b > 0) {
        __builtin_trap();
    }
    return 0;
}
