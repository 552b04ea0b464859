/* Large buffers kept for reuse: a run of uploads or large responses then
 * reuses mapped pages instead of faulting fresh ones in for every request.
 * Spares unused for a sweep are freed, so an idle worker shrinks back.
 * Owned and used by the loop's thread only. */
#ifndef FK_SPARES_H
#define FK_SPARES_H

#include <stddef.h>
#include "fk_buf.h"

#define FK_SPARES 2                /* large buffers kept */
#define FK_SPARE_MIN 65536         /* buffers larger than this are worth keeping... */
#define FK_SPARE_MAX (8u << 20)    /* ...up to this size */

typedef struct {
    struct {
        char *data;
        size_t cap;
        int used; /* taken or stored since the last sweep */
    } spare[FK_SPARES];
} fk_spares;

/* Frees an emptied (or abandoned) buffer, keeping a large one's memory as a
 * spare. b is empty and unallocated afterwards. */
void fk_spares_release(fk_spares *s, fk_buf *b);

/* Releases b if it is empty and large: one large request or response does not
 * pin memory for the connection's lifetime. */
static inline void fk_spares_trim(fk_spares *s, fk_buf *b)
{
    if (b->len == b->off && b->cap > FK_SPARE_MIN)
        fk_spares_release(s, b);
}

/* Before b grows to hold room more bytes: moves its pending bytes into a spare
 * large enough, if there is one. */
void fk_spares_adopt(fk_spares *s, fk_buf *b, size_t room);

/* Frees the spares unused since the last sweep (about once a second). */
void fk_spares_sweep(fk_spares *s);

/* Frees every spare. */
void fk_spares_free(fk_spares *s);

#endif
