/* Chunked transfer coding decoder (RFC 9112 §7.1): a byte-at-a-time state
 * machine for the framing, bulk moves for the data. */
#include "fk_chunked.h"
#include "fk_chars.h"

#include <string.h>

/* Character classes, one bit each; tchar is fk_tchar (fk_chars.h). */
#define C_VALUE 0x02 /* field-vchar, obs-text, SP, HTAB; also quoted-pair's escapee */
#define C_QDTEXT 0x04 /* qdtext (RFC 9110 §5.6.4) */
#define C_HEX 0x08   /* HEXDIG */

static const unsigned char ctype[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x06, 0x06, 0x02, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x02, 0x06, 0x06, 0x06,
    0x06, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x00,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
};

#define IS(c, cls) (ctype[(unsigned char)(c)] & (cls))
#define IS_WS(c) ((c) == ' ' || (c) == '\t')

/* Decoder states. Everything up to S_EXT_AFTER_QUOTED is part of the chunk-size
 * line, whose length is bounded by FK_CHUNK_LINE_MAX.
 *   chunk     = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )        */
enum {
    S_SIZE,             /* HEXDIG of chunk-size (hex_digits so far) */
    S_SIZE_WS,          /* BWS after the size or a value: ';' must follow */
    S_EXT_BEFORE_NAME,  /* after ';' */
    S_EXT_NAME,         /* in ext-name */
    S_EXT_AFTER_NAME,   /* BWS after ext-name: '=' or ';' must follow */
    S_EXT_BEFORE_VALUE, /* after '=' */
    S_EXT_TOKEN,        /* in a token ext-val */
    S_EXT_QUOTED,       /* in a quoted-string ext-val */
    S_EXT_ESCAPE,       /* after '\' in a quoted-string */
    S_EXT_AFTER_QUOTED, /* after the closing '"' */
    S_SIZE_LF,          /* CR of the size line seen */
    S_DATA,             /* remaining bytes of chunk-data */
    S_DATA_CR,          /* CRLF after chunk-data */
    S_DATA_LF,
    S_TRAILER_LINE,     /* start of a trailer field line or the final CRLF */
    S_TRAILER_NAME,
    S_TRAILER_VALUE,
    S_TRAILER_LF,
    S_END_LF,
    S_DONE,
    S_ERROR
};

void fk_chunked_init(fk_chunked *d)
{
    d->limit = 0;
    d->total = 0;
    d->remaining = 0;
    d->line_len = 0;
    d->trailer_len = 0;
    d->state = S_SIZE;
    d->hex_digits = 0;
}

static int hex_value(unsigned char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* What follows an ext-name or ext-val: another extension, the end of the line,
 * or BWS before ';'. Returns the next state, -1 if none. */
static int after_ext_item(unsigned char c)
{
    if (c == ';')
        return S_EXT_BEFORE_NAME;
    if (c == '\r')
        return S_SIZE_LF;
    if (IS_WS(c))
        return S_SIZE_WS;
    return -1;
}

ssize_t fk_chunked_decode(fk_chunked *d, char *buf, size_t *len)
{
    size_t n = *len, src = 0, dst = 0, left;
    int next;

    if (d->state == S_DONE) {
        *len = 0;
        return (ssize_t)n;
    }
    if (d->state == S_ERROR)
        goto bad;

    while (src < n) {
        unsigned char c;

        if (d->state == S_DATA) {
            left = n - src;
            if (d->remaining < left)
                left = (size_t)d->remaining;
            memmove(buf + dst, buf + src, left);
            dst += left;
            src += left;
            d->remaining -= left;
            if (d->remaining == 0)
                d->state = S_DATA_CR;
            continue;
        }

        c = (unsigned char)buf[src++];
        if (d->state < S_SIZE_LF && c != '\r' && ++d->line_len > FK_CHUNK_LINE_MAX)
            goto bad;
        if (d->state >= S_TRAILER_LINE && ++d->trailer_len > FK_CHUNK_TRAILER_MAX)
            goto bad;

        switch (d->state) {
        case S_SIZE:
            if (IS(c, C_HEX)) {
                /* keep the size within int64_t; leading zeros are free */
                if (d->remaining > (uint64_t)INT64_MAX >> 4)
                    goto bad;
                d->remaining = d->remaining << 4 | (uint64_t)hex_value(c);
                d->hex_digits = 1;
                break;
            }
            if (d->hex_digits == 0 || (next = after_ext_item(c)) < 0)
                goto bad;
            d->state = next;
            break;
        case S_SIZE_WS:
            if (c == ';')
                d->state = S_EXT_BEFORE_NAME;
            else if (!IS_WS(c))
                goto bad;
            break;
        case S_EXT_BEFORE_NAME:
            if (FK_IS_TCHAR(c))
                d->state = S_EXT_NAME;
            else if (!IS_WS(c))
                goto bad;
            break;
        case S_EXT_NAME:
            if (FK_IS_TCHAR(c))
                break;
            if (c == '=')
                d->state = S_EXT_BEFORE_VALUE;
            else if (IS_WS(c))
                d->state = S_EXT_AFTER_NAME;
            else if ((next = after_ext_item(c)) >= 0)
                d->state = next;
            else
                goto bad;
            break;
        case S_EXT_AFTER_NAME:
            if (c == '=')
                d->state = S_EXT_BEFORE_VALUE;
            else if (c == ';')
                d->state = S_EXT_BEFORE_NAME;
            else if (!IS_WS(c))
                goto bad;
            break;
        case S_EXT_BEFORE_VALUE:
            if (c == '"')
                d->state = S_EXT_QUOTED;
            else if (FK_IS_TCHAR(c))
                d->state = S_EXT_TOKEN;
            else if (!IS_WS(c))
                goto bad;
            break;
        case S_EXT_TOKEN:
            if (FK_IS_TCHAR(c))
                break;
            if ((next = after_ext_item(c)) < 0)
                goto bad;
            d->state = next;
            break;
        case S_EXT_QUOTED:
            if (c == '"')
                d->state = S_EXT_AFTER_QUOTED;
            else if (c == '\\')
                d->state = S_EXT_ESCAPE;
            else if (!IS(c, C_QDTEXT))
                goto bad;
            break;
        case S_EXT_ESCAPE:
            if (!IS(c, C_VALUE))
                goto bad;
            d->state = S_EXT_QUOTED;
            break;
        case S_EXT_AFTER_QUOTED:
            if ((next = after_ext_item(c)) < 0)
                goto bad;
            d->state = next;
            break;
        case S_SIZE_LF:
            if (c != '\n')
                goto bad;
            /* total <= limit always holds, so limit - total cannot wrap */
            if (d->limit != 0 && d->remaining > d->limit - d->total)
                goto too_large;
            d->total += d->remaining;
            d->line_len = 0;
            d->hex_digits = 0;
            d->state = d->remaining > 0 ? S_DATA : S_TRAILER_LINE;
            break;
        case S_DATA_CR:
            if (c != '\r')
                goto bad;
            d->state = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (c != '\n')
                goto bad;
            d->state = S_SIZE;
            break;
        case S_TRAILER_LINE:
            /* a leading SP or HTAB would be obs-fold: refused as in the head */
            if (c == '\r')
                d->state = S_END_LF;
            else if (FK_IS_TCHAR(c))
                d->state = S_TRAILER_NAME;
            else
                goto bad;
            break;
        case S_TRAILER_NAME:
            if (c == ':')
                d->state = S_TRAILER_VALUE;
            else if (!FK_IS_TCHAR(c))
                goto bad;
            break;
        case S_TRAILER_VALUE:
            if (c == '\r')
                d->state = S_TRAILER_LF;
            else if (!IS(c, C_VALUE))
                goto bad;
            break;
        case S_TRAILER_LF:
            if (c != '\n')
                goto bad;
            d->state = S_TRAILER_LINE;
            break;
        case S_END_LF:
            if (c != '\n')
                goto bad;
            d->state = S_DONE;
            goto done;
        default:
            goto bad;
        }
    }
    *len = dst;
    return FK_NEED_MORE;

done:
    left = n - src;
    memmove(buf + dst, buf + src, left);
    *len = dst;
    return (ssize_t)left;

bad:
    d->state = S_ERROR;
    *len = dst;
    return FK_ERR_BAD_REQUEST;

too_large:
    d->state = S_ERROR;
    *len = dst;
    return FK_ERR_BODY_TOO_LARGE;
}
