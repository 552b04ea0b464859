#include "fk_buf.h"

#include <stdlib.h>
#include <string.h>

int fk_buf_reserve(fk_buf *b, size_t extra, size_t limit)
{
    size_t pending = b->len - b->off;
    if (b->cap - b->len >= extra)
        return 0;
    if (b->off > 0 && b->cap - pending >= extra) {
        memmove(b->data, b->data + b->off, pending);
        b->off = 0;
        b->len = pending;
        return 0;
    }
    if (extra > SIZE_MAX / 2 - pending)
        return -1;
    size_t need = pending + extra;
    if (limit != 0 && need > limit)
        return -1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    if (limit != 0 && cap > limit)
        cap = limit;
    char *data;
    if (b->off == 0) {
        data = realloc(b->data, cap);
        if (data == NULL)
            return -1;
    } else {
        data = malloc(cap);
        if (data == NULL)
            return -1;
        memcpy(data, b->data + b->off, pending);
        free(b->data);
    }
    b->data = data;
    b->cap = cap;
    b->off = 0;
    b->len = pending;
    return 0;
}

int fk_buf_append(fk_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (fk_buf_reserve(b, n, 0) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void fk_buf_free(fk_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
