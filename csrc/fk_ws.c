/* WebSocket framing (RFC 6455, sections 5 and 7.4): the decoder of client
 * frames and the server's frame header (fk_ws.h). */
#include "fk_ws.h"

#include <string.h>

enum {
    S_HEADER,  /* gathering a frame's header into hdr */
    S_PAYLOAD, /* left payload bytes of the frame to come */
    S_ERROR,
};

int fk_utf8_feed(fk_utf8 *u, const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = p[i];
        if (u->need != 0) {
            if (b < u->lo || b > u->hi)
                return -1;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
            i++;
            continue;
        }
        if (b < 0x80) {
            /* ASCII runs eight bytes at a time */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            if (i < n && p[i] < 0x80)
                i++;
            continue;
        }
        u->lo = 0x80;
        u->hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            u->need = 1;
        } else if (b == 0xE0) {
            u->need = 2;
            u->lo = 0xA0; /* not overlong */
        } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
            u->need = 2;
        } else if (b == 0xED) {
            u->need = 2;
            u->hi = 0x9F; /* not a surrogate */
        } else if (b == 0xF0) {
            u->need = 3;
            u->lo = 0x90; /* not overlong */
        } else if (b >= 0xF1 && b <= 0xF3) {
            u->need = 3;
        } else if (b == 0xF4) {
            u->need = 3;
            u->hi = 0x8F; /* not above U+10FFFF */
        } else {
            return -1;
        }
        i++;
    }
    return 0;
}

void fk_ws_init(fk_ws_decoder *d, uint64_t max_size)
{
    memset(d, 0, sizeof(*d));
    d->max_size = max_size;
    d->state = S_HEADER;
}

void fk_ws_message_taken(fk_ws_decoder *d)
{
    d->msg_len = 0;
    d->msg_opcode = 0;
    d->msg_compressed = 0;
    memset(&d->utf8, 0, sizeof(d->utf8));
}

int fk_ws_close_code_valid(unsigned code)
{
    /* 1004-1006 and 1015 are never on the wire; 1016-2999 are unassigned */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

size_t fk_ws_frame_header(unsigned char *out, int fin, int rsv1, int opcode, uint64_t len)
{
    out[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 10;
}

static int fail(fk_ws_decoder *d, int err)
{
    d->state = S_ERROR;
    return err;
}

/* Bytes of the header a frame whose first two bytes are b0 b1 has. */
static size_t header_size(uint8_t b1)
{
    uint8_t len7 = b1 & 0x7F;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((b1 & 0x80) ? 4 : 0);
}

/* The header in d->hdr is whole: checks it and sets up the frame. */
static int begin_frame(fk_ws_decoder *d)
{
    uint8_t b0 = d->hdr[0], b1 = d->hdr[1];
    uint8_t len7 = b1 & 0x7F;
    uint64_t len = len7;
    size_t at = 2;
    if (b0 & 0x30)
        return fail(d, FK_WS_ERR_PROTOCOL); /* RSV2-3: no extension uses them */
    if ((b0 & 0x40) && !d->deflate)
        return fail(d, FK_WS_ERR_PROTOCOL); /* RSV1 without permessage-deflate */
    if (!(b1 & 0x80))
        return fail(d, FK_WS_ERR_PROTOCOL); /* a client's frame is masked (5.1) */
    if (len7 == 126) {
        len = ((uint64_t)d->hdr[2] << 8) | d->hdr[3];
        at = 4;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | d->hdr[2 + i];
        if (len >> 63)
            return fail(d, FK_WS_ERR_PROTOCOL); /* the most significant bit MUST be 0 */
        at = 10;
    }
    memcpy(d->mask, d->hdr + at, 4);
    d->opcode = b0 & 0x0F;
    d->fin = (b0 & 0x80) != 0;
    d->left = len;
    d->pos = 0;
    switch (d->opcode) {
    case FK_WS_CLOSE:
    case FK_WS_PING:
    case FK_WS_PONG:
        if (!d->fin || len > FK_WS_CONTROL_MAX || (b0 & 0x40))
            return fail(d, FK_WS_ERR_PROTOCOL); /* 5.5; RSV1 on a control frame (RFC 7692 6) */
        d->ctl_opcode = d->opcode;
        d->ctl_len = 0;
        break;
    case FK_WS_CONT:
        if (d->msg_opcode == 0 || (b0 & 0x40))
            return fail(d, FK_WS_ERR_PROTOCOL); /* nothing to continue; RSV1 is the first's */
        break;
    case FK_WS_TEXT:
    case FK_WS_BINARY:
        if (d->msg_opcode != 0)
            return fail(d, FK_WS_ERR_PROTOCOL); /* a new message inside one */
        d->msg_opcode = d->opcode;
        d->msg_compressed = (b0 & 0x40) != 0;
        break;
    default:
        return fail(d, FK_WS_ERR_PROTOCOL); /* reserved opcodes */
    }
    if (d->opcode < FK_WS_CLOSE && (len > d->max_size || d->msg_len > d->max_size - len))
        return fail(d, FK_WS_ERR_TOO_BIG); /* refused before its bytes are read */
    d->state = S_PAYLOAD;
    return FK_WS_MORE;
}

/* Copies n payload bytes from src to dst (dst <= src, or apart), unmasking
 * them; forward, so that the overlap of a move down is safe. */
static void unmask_move(char *dst, const char *src, size_t n, const uint8_t mask[4], uint64_t pos)
{
    uint8_t m[8];
    for (int i = 0; i < 8; i++)
        m[i] = mask[(pos + (uint64_t)i) & 3];
    uint64_t mw;
    memcpy(&mw, m, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8); /* read whole before the store below may reach it */
        w ^= mw;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = (char)(src[i] ^ m[i & 7]);
}

/* The control frame in d->ctl is whole: checks a close frame's code and reason. */
static int end_control(fk_ws_decoder *d)
{
    d->state = S_HEADER;
    d->hdr_len = 0;
    if (d->ctl_opcode != FK_WS_CLOSE)
        return FK_WS_CONTROL;
    if (d->ctl_len == 0) {
        d->close_code = 1005; /* no status code was present */
        return FK_WS_CONTROL;
    }
    if (d->ctl_len == 1)
        return fail(d, FK_WS_ERR_PROTOCOL);
    unsigned code = ((unsigned)(uint8_t)d->ctl[0] << 8) | (uint8_t)d->ctl[1];
    if (!fk_ws_close_code_valid(code))
        return fail(d, FK_WS_ERR_PROTOCOL);
    fk_utf8 u = {0, 0, 0};
    if (fk_utf8_feed(&u, (const unsigned char *)d->ctl + 2, d->ctl_len - 2) != 0 || u.need != 0)
        return fail(d, FK_WS_ERR_UTF8);
    d->close_code = (int)code;
    return FK_WS_CONTROL;
}

/* The current data frame is whole: the message is, when it was the last. */
static int end_data(fk_ws_decoder *d)
{
    d->state = S_HEADER;
    d->hdr_len = 0;
    if (!d->fin)
        return FK_WS_MORE;
    if (d->msg_opcode == FK_WS_TEXT && !d->msg_compressed && d->utf8.need != 0)
        return fail(d, FK_WS_ERR_UTF8); /* ends inside a character */
    return FK_WS_MESSAGE;
}

int fk_ws_decode(fk_ws_decoder *d, char *buf, size_t raw_off, size_t raw_len, size_t *used)
{
    size_t i = 0;
    *used = 0;
    if (d->state == S_ERROR)
        return FK_WS_ERR_PROTOCOL;
    FK_ASSERT(raw_off >= d->msg_len);
    const char *raw = buf + raw_off;
    int r = FK_WS_MORE;
    while (i < raw_len || (d->state == S_PAYLOAD && d->left == 0)) {
        if (d->state == S_HEADER) {
            /* gather the header a byte at a time: it is at most 14 */
            d->hdr[d->hdr_len++] = (uint8_t)raw[i++];
            if (d->hdr_len == 2 && !(d->hdr[1] & 0x80)) {
                r = fail(d, FK_WS_ERR_PROTOCOL); /* unmasked: refused at once */
                break;
            }
            if (d->hdr_len < 2 || d->hdr_len < header_size(d->hdr[1]))
                continue;
            r = begin_frame(d);
            if (r < 0)
                break;
            continue;
        }
        /* S_PAYLOAD */
        size_t n = raw_len - i;
        if ((uint64_t)n > d->left)
            n = (size_t)d->left;
        if (d->opcode >= FK_WS_CLOSE) {
            unmask_move(d->ctl + d->ctl_len, raw + i, n, d->mask, d->pos);
            d->ctl_len += n;
        } else {
            char *dst = buf + d->msg_len;
            unmask_move(dst, raw + i, n, d->mask, d->pos);
            if (d->msg_opcode == FK_WS_TEXT && !d->msg_compressed &&
                fk_utf8_feed(&d->utf8, (const unsigned char *)dst, n) != 0) {
                r = fail(d, FK_WS_ERR_UTF8);
                break;
            }
            d->msg_len += n;
        }
        i += n;
        d->left -= n;
        d->pos += n;
        if (d->left != 0)
            continue;
        r = d->opcode >= FK_WS_CLOSE ? end_control(d) : end_data(d);
        if (r != FK_WS_MORE)
            break;
    }
    *used = i;
    return r;
}
