/* A growable byte buffer with a read offset: bytes [off, len) are pending. */
#ifndef FK_BUF_H
#define FK_BUF_H

#include "fk_common.h"

typedef struct {
    char *data;
    size_t off; /* start of the pending bytes */
    size_t len; /* end of the pending bytes */
    size_t cap;
} fk_buf;

/* Makes room for at least `extra` more bytes after len, moving pending bytes to
 * the front first when that suffices. Returns 0, or -1 when out of memory or
 * when the buffer would exceed `limit` bytes (0: no limit). */
int fk_buf_reserve(fk_buf *b, size_t extra, size_t limit);

/* Appends n bytes. Returns 0, or -1 when out of memory. */
int fk_buf_append(fk_buf *b, const void *p, size_t n);

/* Marks n pending bytes as consumed; an emptied buffer rewinds to offset 0. */
static inline void fk_buf_consume(fk_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

static inline size_t fk_buf_pending(const fk_buf *b) { return b->len - b->off; }

/* Frees the memory; the buffer is then empty and reusable. */
void fk_buf_free(fk_buf *b);

#endif
