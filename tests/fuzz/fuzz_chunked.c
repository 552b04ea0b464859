/* libFuzzer target for fk_chunked_decode (see run.sh).
 *
 * Decodes the input whole, then in pieces whose sizes come from the input, and
 * traps if the two disagree on the status, the decoded bytes or the bytes that
 * follow the body, or if a call reports more output than it was given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fk_chunked.h"

typedef struct {
    ssize_t status; /* FK_NEED_MORE, FK_ERR_BAD_REQUEST, or 0 when done */
    char *out;      /* decoded body, then the bytes after it */
    size_t body_len, out_len;
} result;

/* Feeds data in pieces of the given sizes (cycled); step 0 means all at once. */
static void decode(const uint8_t *data, size_t size, const uint8_t *steps, size_t nsteps,
                   result *res)
{
    fk_chunked d;
    size_t off = 0, s = 0;

    fk_chunked_init(&d);
    res->status = FK_NEED_MORE;
    res->body_len = res->out_len = 0;
    while (off < size) {
        size_t k = nsteps ? (size_t)(steps[s++ % nsteps] % 64) + 1 : size;
        size_t len;
        ssize_t r;
        char *piece;

        if (k > size - off)
            k = size - off;
        piece = malloc(k);
        if (piece == NULL)
            abort();
        memcpy(piece, data + off, k);
        len = k;
        r = fk_chunked_decode(&d, piece, &len);
        if (len > k)
            __builtin_trap();
        if (r == FK_ERR_BAD_REQUEST) {
            res->status = r;
            free(piece);
            return;
        }
        if (r != FK_NEED_MORE && r < 0)
            __builtin_trap();
        memcpy(res->out + res->out_len, piece, len);
        res->out_len += len;
        off += k;
        if (r >= 0) {
            if (len + (size_t)r > k)
                __builtin_trap();
            res->body_len = res->out_len;
            memcpy(res->out + res->out_len, piece + len, (size_t)r);
            res->out_len += (size_t)r;
            memcpy(res->out + res->out_len, data + off, size - off);
            res->out_len += size - off;
            res->status = 0;
            free(piece);
            return;
        }
        free(piece);
    }
    res->body_len = res->out_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    result a, b;
    size_t nsteps = size > 0 ? data[0] % 4 : 0;

    if (size <= nsteps)
        return 0;
    a.out = malloc(size + 1);
    b.out = malloc(size + 1);
    if (a.out == NULL || b.out == NULL)
        abort();
    /* the first byte picks how many of the next bytes are piece sizes */
    decode(data + 1 + nsteps, size - 1 - nsteps, NULL, 0, &a);
    decode(data + 1 + nsteps, size - 1 - nsteps, nsteps ? data + 1 : (const uint8_t *)"\0", 1,
           &b);
    if (a.status != b.status)
        __builtin_trap();
    if (a.status != FK_ERR_BAD_REQUEST &&
        (a.body_len != b.body_len || a.out_len != b.out_len || memcmp(a.out, b.out, a.out_len)))
        __builtin_trap();
    free(a.out);
    free(b.out);
    return 0;
}
