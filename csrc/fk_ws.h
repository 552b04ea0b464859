/* WebSocket framing (RFC 6455): an incremental, in-place decoder of a
 * client's frames and the header of a server's frame. A pure parser in the
 * style of fk_chunked.h: it works over the caller's buffer, allocates
 * nothing, and checks every length before it uses it. */
#ifndef FK_WS_H
#define FK_WS_H

#include "fk_common.h"

#define FK_WS_CONTROL_MAX 125 /* payload bytes of a control frame */
#define FK_WS_HEADER_MAX 14   /* a client frame's header: 2 + 8 (length) + 4 (mask) */
#define FK_WS_SERVER_HEADER_MAX 10

enum fk_ws_opcode {
    FK_WS_CONT = 0x0,
    FK_WS_TEXT = 0x1,
    FK_WS_BINARY = 0x2,
    FK_WS_CLOSE = 0x8,
    FK_WS_PING = 0x9,
    FK_WS_PONG = 0xA,
};

/* What fk_ws_decode returns: an event, or an error whose close code the
 * connection is failed with. */
enum fk_ws_result {
    FK_WS_MORE = 0,            /* every byte given was used: call again with more */
    FK_WS_MESSAGE = 1,         /* a whole data message is at buf[0 .. msg_len) */
    FK_WS_CONTROL = 2,         /* a whole control frame: ctl_opcode, ctl[0 .. ctl_len) */
    FK_WS_ERR_PROTOCOL = -1,   /* 1002: a frame RFC 6455 forbids */
    FK_WS_ERR_TOO_BIG = -2,    /* 1009: the message would pass max_size */
    FK_WS_ERR_UTF8 = -3,       /* 1007: a text message or close reason not UTF-8 */
};

/* An incremental UTF-8 check (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF): the continuation bytes still wanted, and the range
 * the next one must be in. */
typedef struct {
    uint8_t need, lo, hi;
} fk_utf8;

/* Checks n more bytes; 0 while they are valid so far, -1 once they are not.
 * A complete text also ends with u->need == 0. */
int fk_utf8_feed(fk_utf8 *u, const unsigned char *p, size_t n);

typedef struct {
    uint64_t max_size;    /* most bytes of a message, reassembled (set after init) */
    uint64_t msg_len;     /* bytes of the current message, unmasked at buf[0 ..) */
    uint64_t left;        /* payload bytes of the current frame still to come */
    uint64_t pos;         /* payload bytes of the current frame seen (the mask's phase) */
    int state;
    uint8_t hdr[FK_WS_HEADER_MAX];
    uint8_t hdr_len;      /* bytes of the current frame's header gathered so far */
    uint8_t opcode, fin;  /* of the current frame */
    uint8_t mask[4];
    uint8_t msg_opcode;   /* FK_WS_TEXT or FK_WS_BINARY while a message is open, else 0 */
    uint8_t deflate;      /* permessage-deflate was negotiated (RFC 7692): RSV1 may mark a
                             message compressed (set after init) */
    uint8_t msg_compressed; /* the open message's first frame had RSV1: its bytes are
                               compressed, left to the caller to inflate and check */
    fk_utf8 utf8;         /* of the open text message (not checked when compressed) */
    uint8_t ctl_opcode;   /* the control frame being gathered, then returned */
    size_t ctl_len;
    int close_code;       /* of a close frame returned: its code, 1005 when it had none */
    char ctl[FK_WS_CONTROL_MAX];
} fk_ws_decoder;

/* Prepares d for a connection; max_size is set after, and is never 0. */
void fk_ws_init(fk_ws_decoder *d, uint64_t max_size);

/* Decodes the client's raw bytes buf[raw_off .. raw_off + raw_len), where
 * buf[0 .. d->msg_len) holds the current message so far (raw_off >= msg_len).
 * Data payloads are unmasked and moved down to follow the message; a control
 * frame's payload is copied into d->ctl. *used tells how many raw bytes were
 * consumed (a partial header is kept in d, so all of them unless an event
 * returns early). Returns:
 *   FK_WS_MORE      all raw bytes used, no event;
 *   FK_WS_MESSAGE   the message is whole: buf[0 .. d->msg_len), d->msg_opcode,
 *                   d->msg_compressed (text already checked as UTF-8 unless
 *                   compressed: then only once inflated); the caller takes it,
 *                   calls fk_ws_message_taken, and goes on with the raw bytes
 *                   after *used, which it moves to follow the (now empty)
 *                   message, or simply restarts buf there;
 *   FK_WS_CONTROL   a ping, pong or close: d->ctl_opcode, d->ctl[0 ..
 *                   d->ctl_len); for a close d->close_code (checked), the
 *                   reason (UTF-8) after its two bytes; decoding goes on after
 *                   *used;
 *   FK_WS_ERR_*     the connection must be failed with that error's close
 *                   code; the decoder stays failed.
 * Refused: reserved bits set (RSV1 is allowed only with d->deflate, and then
 * only on the first frame of a data message), unknown opcodes,
 * unmasked frames, a 64-bit length with its top bit set, fragmented or
 * over-long control frames, a continuation without a message or a new
 * message inside one, close codes RFC 6455 forbids on the wire. */
int fk_ws_decode(fk_ws_decoder *d, char *buf, size_t raw_off, size_t raw_len, size_t *used);

/* The caller took the message fk_ws_decode returned: the next one starts at 0. */
void fk_ws_message_taken(fk_ws_decoder *d);

/* Whether a close code may be sent or received in a close frame. */
int fk_ws_close_code_valid(unsigned code);

/* Writes the header of a server frame (unmasked) of len payload bytes into
 * out, which has room for FK_WS_SERVER_HEADER_MAX; returns its length. rsv1
 * marks the first frame of a compressed message (permessage-deflate). */
size_t fk_ws_frame_header(unsigned char *out, int fin, int rsv1, int opcode, uint64_t len);

#endif
