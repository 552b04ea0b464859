/* Incremental, in-place decoder of the chunked transfer coding (RFC 9112 §7.1). */
#ifndef FK_CHUNKED_H
#define FK_CHUNKED_H

#include <sys/types.h>
#include "fk_common.h"

/* Longest chunk-size line (size plus extensions) and longest trailer section;
 * past these the decoder returns FK_ERR_BAD_REQUEST rather than buffer more. */
#define FK_CHUNK_LINE_MAX 4096
#define FK_CHUNK_TRAILER_MAX 8192

typedef struct {
    uint64_t limit;     /* most data bytes the body may have; 0 unlimited (set after init) */
    uint64_t total;     /* data bytes of the chunks announced so far */
    uint64_t remaining; /* data bytes left in the current chunk */
    size_t line_len;    /* bytes seen of the current size or trailer line */
    size_t trailer_len; /* bytes seen of the trailer section */
    int state;
    int hex_digits;
} fk_chunked;

/* Prepares d for a new body, without a limit. */
void fk_chunked_init(fk_chunked *d);

/* Decodes the raw bytes buf[0 .. *len) in place. On return buf[0 .. *len) holds
 * the chunk data decoded by this call (the caller appends it to what earlier
 * calls decoded). Returns:
 *   >= 0           the body is complete (last chunk and trailers consumed); the
 *                  return value is the number of raw bytes that followed the body
 *                  (the next pipelined request), moved to buf[*len ...];
 *   FK_NEED_MORE   all input consumed, body not finished: call again with the
 *                  next bytes only;
 *   FK_ERR_BAD_REQUEST  malformed coding: non-hex or overflowing size, junk
 *                  after the size, missing CRLF after data, bare LF or CR,
 *                  an over-long size line or trailer section.
 *   FK_ERR_BODY_TOO_LARGE  a chunk's size line announced more data than
 *                  limit leaves room for (refused before any of that data).
 * On an error the decoder stays failed: later calls return FK_ERR_BAD_REQUEST.
 * Chunk extensions (;name=value) are validated and ignored; trailer fields are
 * validated as field lines and discarded. */
ssize_t fk_chunked_decode(fk_chunked *d, char *buf, size_t *len);

#endif
