/* libFuzzer target for fk_ws_decode (see run.sh).
 *
 * Decodes the input as client frames whole, then in pieces whose sizes come
 * from the input, keeping the buffer as the loop keeps c->in (fk_loop_ws.c),
 * and traps if the two disagree on the events, the messages or the error, or
 * if a call reports more bytes used than it was given or a message longer
 * than the limit. The first byte's bit 2 picks a connection that negotiated
 * permessage-deflate (RSV1 allowed on a message's first frame). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fk_ws.h"

#define MAX_SIZE 4096

typedef struct {
    int error;        /* the error that ended the stream, 0 none */
    uint64_t hash;    /* of every event and message, in order */
    size_t events;
} result;

static void mix(result *res, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        res->hash = (res->hash ^ b[i]) * 1099511628211ULL;
}

static void decode(const uint8_t *data, size_t size, const uint8_t *steps, size_t nsteps,
                   int deflate, result *res)
{
    fk_ws_decoder d;
    char *buf = malloc(size + 1);
    size_t end = 0, raw_off = 0, off = 0, s = 0;
    if (buf == NULL)
        abort();
    fk_ws_init(&d, MAX_SIZE);
    d.deflate = (uint8_t)deflate;
    res->error = 0;
    res->hash = 14695981039346656037ULL;
    res->events = 0;
    while (off < size) {
        size_t k = nsteps ? (size_t)(steps[s++ % nsteps] % 64) + 1 : size;
        if (k > size - off)
            k = size - off;
        memcpy(buf + end, data + off, k);
        end += k;
        off += k;
        for (;;) {
            size_t used = 0;
            int r = fk_ws_decode(&d, buf, raw_off, end - raw_off, &used);
            if (used > end - raw_off || d.msg_len > raw_off + used || d.msg_len > MAX_SIZE)
                __builtin_trap();
            raw_off += used;
            if (r == FK_WS_MORE) {
                if (raw_off != end)
                    __builtin_trap();
                end = raw_off = (size_t)d.msg_len;
                break;
            }
            res->events++;
            if (r == FK_WS_MESSAGE) {
                if (d.msg_compressed && !deflate)
                    __builtin_trap();
                mix(res, &d.msg_opcode, 1);
                mix(res, &d.msg_compressed, 1);
                mix(res, buf, (size_t)d.msg_len);
                memmove(buf, buf + raw_off, end - raw_off);
                end -= raw_off;
                raw_off = 0;
                fk_ws_message_taken(&d);
                continue;
            }
            if (r == FK_WS_CONTROL) {
                if (d.ctl_len > FK_WS_CONTROL_MAX)
                    __builtin_trap();
                mix(res, &d.ctl_opcode, 1);
                mix(res, d.ctl, d.ctl_len);
                continue;
            }
            if (r >= 0)
                __builtin_trap();
            res->error = r;
            free(buf);
            return;
        }
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    result a, b;
    size_t nsteps = size > 0 ? data[0] % 4 : 0;
    int deflate = size > 0 ? (data[0] >> 2) & 1 : 0;

    if (size <= nsteps)
        return 0;
    /* the first byte picks how many of the next bytes are piece sizes */
    decode(data + 1 + nsteps, size - 1 - nsteps, NULL, 0, deflate, &a);
    decode(data + 1 + nsteps, size - 1 - nsteps, nsteps ? data + 1 : (const uint8_t *)"\0", 1,
           deflate, &b);
    if (a.error != b.error || a.hash != b.hash || a.events != b.events)
        __builtin_trap();
    return 0;
}
