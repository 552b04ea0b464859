#include "fk_write.h"
#include "fk_chars.h"

#include <stdio.h>
#include <string.h>

void fk_date_update(fk_date *d, time_t now)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (d->len != 0 && d->second == now)
        return;
    gmtime_r(&now, &tm);
    int n = snprintf(d->line, sizeof(d->line), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    d->len = (n > 0 && (size_t)n < sizeof(d->line)) ? (size_t)n : 0;
    d->second = now;
}

/* The IANA registry's reason phrases (RFC 9110 15 and the WebDAV, 103,
 * 425 and 6585 codes), as Python's http.HTTPStatus has them. */
const char *fk_status_reason(int status, size_t *len)
{
    const char *r;
    switch (status) {
    case 100: r = "Continue"; break;
    case 101: r = "Switching Protocols"; break;
    case 102: r = "Processing"; break;
    case 103: r = "Early Hints"; break;
    case 200: r = "OK"; break;
    case 201: r = "Created"; break;
    case 202: r = "Accepted"; break;
    case 203: r = "Non-Authoritative Information"; break;
    case 204: r = "No Content"; break;
    case 205: r = "Reset Content"; break;
    case 206: r = "Partial Content"; break;
    case 207: r = "Multi-Status"; break;
    case 208: r = "Already Reported"; break;
    case 226: r = "IM Used"; break;
    case 300: r = "Multiple Choices"; break;
    case 301: r = "Moved Permanently"; break;
    case 302: r = "Found"; break;
    case 303: r = "See Other"; break;
    case 304: r = "Not Modified"; break;
    case 305: r = "Use Proxy"; break;
    case 307: r = "Temporary Redirect"; break;
    case 308: r = "Permanent Redirect"; break;
    case 400: r = "Bad Request"; break;
    case 401: r = "Unauthorized"; break;
    case 402: r = "Payment Required"; break;
    case 403: r = "Forbidden"; break;
    case 404: r = "Not Found"; break;
    case 405: r = "Method Not Allowed"; break;
    case 406: r = "Not Acceptable"; break;
    case 407: r = "Proxy Authentication Required"; break;
    case 408: r = "Request Timeout"; break;
    case 409: r = "Conflict"; break;
    case 410: r = "Gone"; break;
    case 411: r = "Length Required"; break;
    case 412: r = "Precondition Failed"; break;
    case 413: r = "Content Too Large"; break;
    case 414: r = "URI Too Long"; break;
    case 415: r = "Unsupported Media Type"; break;
    case 416: r = "Range Not Satisfiable"; break;
    case 417: r = "Expectation Failed"; break;
    case 418: r = "I'm a Teapot"; break;
    case 421: r = "Misdirected Request"; break;
    case 422: r = "Unprocessable Content"; break;
    case 423: r = "Locked"; break;
    case 424: r = "Failed Dependency"; break;
    case 425: r = "Too Early"; break;
    case 426: r = "Upgrade Required"; break;
    case 428: r = "Precondition Required"; break;
    case 429: r = "Too Many Requests"; break;
    case 431: r = "Request Header Fields Too Large"; break;
    case 451: r = "Unavailable For Legal Reasons"; break;
    case 500: r = "Internal Server Error"; break;
    case 501: r = "Not Implemented"; break;
    case 502: r = "Bad Gateway"; break;
    case 503: r = "Service Unavailable"; break;
    case 504: r = "Gateway Timeout"; break;
    case 505: r = "HTTP Version Not Supported"; break;
    case 506: r = "Variant Also Negotiates"; break;
    case 507: r = "Insufficient Storage"; break;
    case 508: r = "Loop Detected"; break;
    case 510: r = "Not Extended"; break;
    case 511: r = "Network Authentication Required"; break;
    default: r = "Unknown"; break;
    }
    *len = strlen(r);
    return r;
}

/* Appends to a buffer whose room the caller reserved; returns the new end. */
static inline char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

int fk_write_head(fk_buf *out, const fk_response *r, int minor_version, int keep_alive,
                  const fk_date *date, const char *server, size_t server_len)
{
    size_t reason_len = r->reason_len;
    const char *reason = r->reason;
    if (reason == NULL)
        reason = fk_status_reason(r->status, &reason_len);
    /* status line + fields + date + server + framing + connection, generously */
    size_t need = 16 + reason_len + r->fields_len + sizeof(date->line) + server_len + 128;
    if (fk_buf_reserve(out, need, 0) != 0)
        return -1;
    char *p = out->data + out->len;
    int status = r->status;
    p = PUT_LIT(p, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100 % 10);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = put(p, reason, reason_len);
    p = PUT_LIT(p, "\r\n");
    if (!(r->flags & FK_RESP_HAS_SERVER) && server_len != 0) {
        p = PUT_LIT(p, "Server: ");
        p = put(p, server, server_len);
        p = PUT_LIT(p, "\r\n");
    }
    if (!(r->flags & FK_RESP_HAS_DATE))
        p = put(p, date->line, date->len);
    if (r->fields_len != 0)
        p = put(p, r->fields, r->fields_len);
    if (fk_status_has_body(status)) {
        if (r->content_length >= 0) {
            p = PUT_LIT(p, "Content-Length: ");
            p = put_u64(p, (uint64_t)r->content_length);
            p = PUT_LIT(p, "\r\n");
        } else if (r->content_length == FK_BODY_CHUNKED) {
            p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
        }
    }
    if (!keep_alive)
        p = PUT_LIT(p, "Connection: close\r\n");
    else if (minor_version == 0)
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    p = PUT_LIT(p, "\r\n");
    out->len = (size_t)(p - out->data);
    return 0;
}

int fk_write_chunk(fk_buf *out, const char *data, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n == 0)
        return 0;
    if (fk_buf_reserve(out, n + 24, 0) != 0)
        return -1;
    char tmp[16];
    size_t digits = 0;
    for (size_t v = n; v != 0; v >>= 4)
        tmp[digits++] = hex[v & 15];
    char *p = out->data + out->len;
    while (digits > 0)
        *p++ = tmp[--digits];
    p = PUT_LIT(p, "\r\n");
    p = put(p, data, n);
    p = PUT_LIT(p, "\r\n");
    out->len = (size_t)(p - out->data);
    return 0;
}

int fk_write_last_chunk(fk_buf *out)
{
    return fk_buf_append(out, "0\r\n\r\n", 5);
}

int fk_error_body(char *buf, size_t size, int status)
{
    size_t reason_len;
    const char *reason = fk_status_reason(status, &reason_len);
    int n = snprintf(buf, size, "%d %.*s\n", status, (int)reason_len, reason);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

int fk_write_error(fk_buf *out, int status, const fk_date *date, const char *server,
                   size_t server_len)
{
    char body[FK_ERROR_BODY_MAX];
    int body_len = fk_error_body(body, sizeof(body), status);
    if (body_len < 0)
        return -1;
    static const char type[] = "Content-Type: text/plain; charset=utf-8\r\n";
    fk_response r = {
        .status = status,
        .fields = type,
        .fields_len = sizeof(type) - 1,
        .content_length = body_len,
    };
    if (fk_write_head(out, &r, 1, 0, date, server, server_len) != 0)
        return -1;
    return fk_buf_append(out, body, (size_t)body_len);
}

int fk_field_check(const char *name, size_t name_len, const char *value, size_t value_len)
{
    if (name_len == 0)
        return -1;
    for (size_t i = 0; i < name_len; i++)
        if (!FK_IS_TCHAR(name[i]))
            return -1;
    return fk_field_value_check(value, value_len);
}

static int same_lower(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch + ('a' - 'A'));
        if (ch != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

int fk_field_kind(const char *name, size_t len)
{
    switch (len) {
    case 4:
        return same_lower(name, "date", 4) ? FK_FIELD_DATE : FK_FIELD_OTHER;
    case 6:
        return same_lower(name, "server", 6) ? FK_FIELD_SERVER : FK_FIELD_OTHER;
    case 10:
        return same_lower(name, "connection", 10) ? FK_FIELD_CONNECTION : FK_FIELD_OTHER;
    case 14:
        return same_lower(name, "content-length", 14) ? FK_FIELD_CONTENT_LENGTH : FK_FIELD_OTHER;
    case 17:
        return same_lower(name, "transfer-encoding", 17) ? FK_FIELD_TRANSFER_ENCODING
                                                          : FK_FIELD_OTHER;
    default:
        return FK_FIELD_OTHER;
    }
}

int fk_field_has_close(const char *value, size_t len)
{
    /* comma-separated tokens with optional whitespace: look for "close" alone */
    size_t i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',' && value[i] != ' ' && value[i] != '\t')
            i++;
        if (i - start == 5 && same_lower(value + start, "close", 5))
            return 1;
    }
    return 0;
}
