/* HTTP/1.1 request-head parser (RFC 9112), zero-copy and allocation-free.
 *
 * The parser is a pure function over the caller's buffer: every output is a
 * pointer+length slice into that buffer, outputs are reset on entry, and it
 * keeps no state between calls. Feed it the whole buffer again when more bytes
 * arrive, with last_len set to the length of the previous attempt, so it can
 * skip re-scanning for the end of the head. */
#ifndef FK_PARSE_H
#define FK_PARSE_H

#include "fk_common.h"

typedef struct {
    const char *name;
    size_t name_len;
    const char *value; /* OWS trimmed on both sides */
    size_t value_len;
} fk_header;

/* Limits applied while parsing; 0 means the built-in default (8190). */
typedef struct {
    size_t max_request_line; /* request line without CRLF, else FK_ERR_URI_TOO_LONG */
    size_t max_field_size;   /* one field line without CRLF, else FK_ERR_FIELD_TOO_LARGE */
} fk_limits;

/* flags of fk_request, derived from the header fields */
#define FK_REQ_CHUNKED 0x01          /* Transfer-Encoding: chunked (final coding) */
#define FK_REQ_KEEP_ALIVE 0x02       /* connection persists after this request */
#define FK_REQ_EXPECT_CONTINUE 0x04  /* Expect: 100-continue */
#define FK_REQ_UPGRADE 0x08          /* Connection: upgrade with an Upgrade field */
#define FK_REQ_ABSOLUTE_FORM 0x10    /* target was absolute-form (scheme://authority/...) */
#define FK_REQ_HAS_BODY 0x20         /* chunked, or Content-Length > 0 */

typedef struct {
    const char *method;
    size_t method_len;
    const char *target; /* the whole request-target as sent */
    size_t target_len;
    const char *path;   /* the path part: origin-form as is; for absolute-form the part
                           after the authority (may be empty); "*" for asterisk-form;
                           the authority for CONNECT's authority-form */
    size_t path_len;
    const char *query;  /* after '?', without it; NULL when the target has no '?' */
    size_t query_len;
    const char *host;   /* the Host field value, or the authority of an absolute-form
                           target (which wins, RFC 9112 §3.2.2); NULL if neither */
    size_t host_len;
    int minor_version;  /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    unsigned flags;     /* FK_REQ_* */
    int64_t content_length; /* -1 when there is no Content-Length field */
    fk_header *headers; /* caller's array */
    size_t num_headers; /* in: capacity of headers; out: fields parsed */
} fk_request;

/* Parses one request head (request line and fields, up to and including the
 * empty line) at the start of buf. Leading empty lines (CRLF) before the request
 * line are skipped, as RFC 9112 §2.2 recommends.
 *
 * Returns the number of bytes the head occupies (> 0) when it is complete and
 * valid; FK_NEED_MORE when the head is incomplete but valid so far (a request
 * line or field already over its limit is reported at once, not after more
 * input); or one of the FK_ERR_* codes. The caller owns buf, req and
 * req->headers; nothing is allocated.
 *
 * Strictness (each a 400 unless noted): CRLF line endings only (bare LF and bare
 * CR rejected), exactly one SP between request-line parts, method and field names
 * are tokens, no whitespace before a field's colon, no obs-fold, no control bytes
 * but HTAB in field values, no control bytes, SP, DEL or bytes >= 0x80 in the
 * target; HTTP/1.0 and HTTP/1.1 only (another well-formed HTTP/x.y gives
 * FK_ERR_VERSION); HTTP/1.1 requires exactly one Host field, HTTP/1.0 at most
 * one; Content-Length is digits only, without sign or overflow, and repeated
 * fields must agree (a comma list is rejected); Transfer-Encoding with
 * Content-Length, in HTTP/1.0, or with chunked not final is rejected; a coding
 * other than chunked gives FK_ERR_NOT_IMPLEMENTED. */
int fk_parse_request(const char *buf, size_t len, size_t last_len, fk_request *req,
                     const fk_limits *limits);

/* A Content-Length value (1*DIGIT, RFC 9110 §8.6), of a request or of a
 * handler's response; over 18 digits is refused, which also rules out
 * overflowing int64_t. Returns -1 when invalid. */
int64_t fk_parse_content_length(const char *p, size_t n);

#endif
