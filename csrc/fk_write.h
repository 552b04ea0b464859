/* Response framing: status line and head fields, chunk framing, canned errors. */
#ifndef FK_WRITE_H
#define FK_WRITE_H

#include <time.h>
#include "fk_buf.h"

/* The "Date: ...\r\n" field line, formatted at most once per second. */
typedef struct {
    time_t second;
    size_t len;
    char line[48];
} fk_date;

/* Refreshes d when `now` is a new second. */
void fk_date_update(fk_date *d, time_t now);

/* Body framing of a response (fk_response.content_length). */
#define FK_BODY_CHUNKED (-1)    /* Transfer-Encoding: chunked */
#define FK_BODY_UNTIL_CLOSE (-2) /* HTTP/1.0 style: the body ends at connection close */
#define FK_BODY_UNSTATED (-3)    /* HEAD of a body whose length is not known: no framing field */

/* fk_response.flags */
#define FK_RESP_CLOSE 0x01     /* close the connection after this response */
#define FK_RESP_HAS_DATE 0x02  /* the handler's fields include Date: do not add ours */
#define FK_RESP_HAS_SERVER 0x04 /* the handler's fields include Server */

typedef struct {
    int status;
    const char *reason; /* NULL: the standard phrase for status */
    size_t reason_len;
    const char *fields; /* validated "Name: value\r\n" lines, without framing fields */
    size_t fields_len;
    int64_t content_length; /* >= 0, or FK_BODY_CHUNKED / FK_BODY_UNTIL_CLOSE / FK_BODY_UNSTATED */
    unsigned flags;
} fk_response;

/* Whether a response with this status can carry a body (not 1xx, 204, 304). */
static inline int fk_status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* Appends the status line and head of r to out: the handler's fields, then Date
 * and Server (unless r->flags says the handler gave them; server may be empty
 * for none), the framing field (Content-Length or Transfer-Encoding: chunked,
 * none for statuses without a body) and Connection as keep_alive and the
 * request's minor version need. Returns 0, or -1 when out of memory. */
int fk_write_head(fk_buf *out, const fk_response *r, int minor_version, int keep_alive,
                  const fk_date *date, const char *server, size_t server_len);

/* Appends one chunk ("SIZE\r\n" data "\r\n"); nothing for n == 0. Returns 0 or -1. */
int fk_write_chunk(fk_buf *out, const char *data, size_t n);

/* Appends the last chunk and an empty trailer section. Returns 0 or -1. */
int fk_write_last_chunk(fk_buf *out);

/* The body of an error the server answers itself, "500 Internal Server
 * Error\n": the status and its standard reason phrase, into buf (size bytes,
 * FK_ERROR_BODY_MAX is always enough). The loop's own errors (fk_write_error)
 * and the engine's answer to a handler that failed (forker/engine/response.pxi)
 * both use it. Returns its length, or -1 when it does not fit. */
#define FK_ERROR_BODY_MAX 64
int fk_error_body(char *buf, size_t size, int status);

/* Appends a complete error response with Connection: close for an HTTP status
 * (400, 408, 413, 414, 431, 500, 501, 505, 503). Returns 0 or -1. */
int fk_write_error(fk_buf *out, int status, const fk_date *date, const char *server,
                   size_t server_len);

/* Standard reason phrase of a status code; "Unknown" for unregistered codes. */
const char *fk_status_reason(int status, size_t *len);

/* Checks a response field: the name a token, the value free of CR, LF, NUL and
 * other control bytes but HTAB. Returns 0 when valid, -1 otherwise. */
int fk_field_check(const char *name, size_t name_len, const char *value, size_t value_len);

/* What a response field means to the loop (fk_field_kind). */
enum fk_field_kind {
    FK_FIELD_OTHER = 0,
    FK_FIELD_CONTENT_LENGTH,
    FK_FIELD_TRANSFER_ENCODING,
    FK_FIELD_CONNECTION,
    FK_FIELD_DATE,
    FK_FIELD_SERVER,
};

/* Classifies a field name, case-insensitively. */
int fk_field_kind(const char *name, size_t len);

/* Whether a Connection field value lists the "close" option. */
int fk_field_has_close(const char *value, size_t len);

#endif
