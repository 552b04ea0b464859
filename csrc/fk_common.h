/* Shared definitions for forker's C core: status codes, slices, branch hints. */
#ifndef FK_COMMON_H
#define FK_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define FK_LIKELY(x) __builtin_expect(!!(x), 1)
#define FK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define FK_LIKELY(x) (x)
#define FK_UNLIKELY(x) (x)
#endif

/* An invariant checked in debug and sanitizer builds (FORKER_DEBUG), where a
 * broken one aborts the worker at the place it broke. */
#ifdef FORKER_DEBUG
#include <assert.h>
#define FK_ASSERT(x) assert(x)
#else
#define FK_ASSERT(x) ((void)0)
#endif

/* Every status the parser, the chunked decoder and the loop can return.
 * Non-negative values are byte counts; negative values are one of these.
 * fk_status_http_code() maps each error to the response the client gets. */
enum fk_status {
    FK_ERR_BAD_REQUEST = -1,      /* malformed syntax: 400 */
    FK_NEED_MORE = -2,            /* input ends before the element does */
    FK_ERR_URI_TOO_LONG = -3,     /* request line over its limit: 414 */
    FK_ERR_FIELD_TOO_LARGE = -4,  /* one field line over its limit: 431 */
    FK_ERR_TOO_MANY_FIELDS = -5,  /* more fields than the caller's array: 431 */
    FK_ERR_VERSION = -6,          /* well-formed but not HTTP/1.0 or 1.1: 505 */
    FK_ERR_NOT_IMPLEMENTED = -7,  /* transfer coding we do not implement: 501 */
    FK_ERR_BODY_TOO_LARGE = -8,   /* body over max_body_size: 413 */
    FK_ERR_TIMEOUT = -9,          /* client too slow to send its request: 408 */
    FK_ERR_CLOSED = -10,          /* client closed the connection mid-request: 400 */
};

/* HTTP status code for an fk_status error, 400 for anything unknown. */
static inline int fk_status_http_code(int status)
{
    switch (status) {
    case FK_ERR_URI_TOO_LONG: return 414;
    case FK_ERR_FIELD_TOO_LARGE: return 431;
    case FK_ERR_TOO_MANY_FIELDS: return 431;
    case FK_ERR_VERSION: return 505;
    case FK_ERR_NOT_IMPLEMENTED: return 501;
    case FK_ERR_BODY_TOO_LARGE: return 413;
    case FK_ERR_TIMEOUT: return 408;
    default: return 400;
    }
}

#endif
