/* Large buffers kept for reuse (see fk_spares.h). */
#include "fk_spares.h"

#include <stdlib.h>
#include <string.h>

void fk_spares_release(fk_spares *s, fk_buf *b)
{
    if (b->cap > FK_SPARE_MIN && b->cap <= FK_SPARE_MAX) {
        int victim = -1;
        for (int i = 0; i < FK_SPARES; i++)
            if (s->spare[i].data == NULL ||
                (victim >= 0 && s->spare[i].cap < s->spare[victim].cap) ||
                (victim < 0 && s->spare[i].cap < b->cap))
                victim = i;
        if (victim >= 0) {
            free(s->spare[victim].data);
            s->spare[victim].data = b->data;
            s->spare[victim].cap = b->cap;
            s->spare[victim].used = 1;
            b->data = NULL;
            b->off = b->len = b->cap = 0;
            return;
        }
    }
    fk_buf_free(b);
}

void fk_spares_adopt(fk_spares *s, fk_buf *b, size_t room)
{
    size_t pending = b->len - b->off;
    if (b->cap - b->len >= room || room > FK_SPARE_MAX)
        return;
    size_t need = pending + room;
    int best = -1;
    for (int i = 0; i < FK_SPARES; i++)
        if (s->spare[i].data != NULL && s->spare[i].cap >= need &&
            (best < 0 || s->spare[i].cap < s->spare[best].cap))
            best = i;
    if (best < 0 || s->spare[best].cap <= b->cap)
        return;
    char *data = s->spare[best].data;
    if (pending != 0)
        memcpy(data, b->data + b->off, pending);
    free(b->data);
    b->data = data;
    b->cap = s->spare[best].cap;
    b->off = 0;
    b->len = pending;
    s->spare[best].data = NULL;
    s->spare[best].cap = 0;
    s->spare[best].used = 1;
}

void fk_spares_sweep(fk_spares *s)
{
    for (int i = 0; i < FK_SPARES; i++) {
        if (s->spare[i].data != NULL && !s->spare[i].used) {
            free(s->spare[i].data);
            s->spare[i].data = NULL;
            s->spare[i].cap = 0;
        }
        s->spare[i].used = 0;
    }
}

void fk_spares_free(fk_spares *s)
{
    for (int i = 0; i < FK_SPARES; i++) {
        free(s->spare[i].data);
        s->spare[i].data = NULL;
        s->spare[i].cap = 0;
    }
}
