#define _GNU_SOURCE
#include "fk_proxy.h"

#include <errno.h>
#include <poll.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define BAD FK_ERR_BAD_REQUEST

static const unsigned char v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                               0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* ---- version 1 ---------------------------------------------------------------- */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Whether c may appear in the part of a TCP4/TCP6 line after the protocol. */
static int v1_address_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' ||
           c == ':' || c == ' ';
}

/* Whether s[0 .. n), the bytes after "PROXY " of an unfinished line, can still
 * begin a valid line: the protocol so far, then (TCP) address characters, a CR
 * only as the last byte seen. */
static int v1_prefix_ok(const char *s, size_t n)
{
    static const char *const protocols[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
    for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++) {
        size_t plen = strlen(protocols[i]);
        if (memcmp(s, protocols[i], n < plen ? n : plen) != 0)
            continue;
        if (n <= plen)
            return 1;
        if (i == 2) /* UNKNOWN: a SP and anything, or the CR, may follow */
            return s[plen] == ' ' || s[plen] == '\r';
        for (size_t j = plen; j < n; j++)
            if (!v1_address_char(s[j]) && !(s[j] == '\r' && j == n - 1))
                return 0;
        return 1;
    }
    return 0;
}

/* Dotted-quad IPv4 address: four decimal parts 0..255, no leading zeros. */
static int v1_ipv4(const char *s, size_t n, struct in_addr *addr)
{
    unsigned char bytes[4];
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return -1;
            i++;
        }
        size_t start = i;
        unsigned value = 0;
        while (i < n && is_digit(s[i]) && i - start < 3)
            value = value * 10 + (unsigned)(s[i++] - '0');
        if (i == start || value > 255 || (i - start > 1 && s[start] == '0'))
            return -1;
        bytes[part] = (unsigned char)value;
    }
    if (i != n)
        return -1;
    memcpy(addr, bytes, 4);
    return 0;
}

/* IPv6 address in RFC 4291 text (inet_pton's rules, on a bounded copy). */
static int v1_ipv6(const char *s, size_t n, struct in6_addr *addr)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(text))
        return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(AF_INET6, text, addr) == 1 ? 0 : -1;
}

/* Decimal port 0..65535, no sign, no leading zeros. */
static int v1_port(const char *s, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    unsigned value = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        value = value * 10 + (unsigned)(s[i] - '0');
    }
    if (value > 65535)
        return -1;
    *port = (uint16_t)value;
    return 0;
}

static int parse_v1(const char *buf, size_t len, fk_proxy_result *out)
{
    size_t n = len < FK_PROXY_V1_MAX ? len : FK_PROXY_V1_MAX;
    if (memcmp(buf, "PROXY ", n < 6 ? n : 6) != 0)
        return BAD;
    const char *lf = memchr(buf, '\n', n);
    if (lf == NULL) {
        if (len >= FK_PROXY_V1_MAX)
            return BAD; /* no CRLF within the longest line allowed */
        if (n > 6 && !v1_prefix_ok(buf + 6, n - 6))
            return BAD;
        return FK_NEED_MORE;
    }
    size_t line = (size_t)(lf - buf) + 1;
    if (line < 8 || buf[line - 2] != '\r')
        return BAD; /* a bare LF, or LF right after "PROXY " */
    const char *p = buf + 6, *end = buf + line - 2; /* [p, end): after "PROXY ", before CR */
    size_t rest = (size_t)(end - p);
    if (memchr(p, '\r', rest) != NULL)
        return BAD;
    if (rest >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (rest == 7 || p[7] == ' ')) {
        memset(out, 0, sizeof(*out));
        out->version = 1;
        out->local = 1;
        return (int)line;
    }
    int family;
    if (rest >= 5 && memcmp(p, "TCP4 ", 5) == 0)
        family = AF_INET;
    else if (rest >= 5 && memcmp(p, "TCP6 ", 5) == 0)
        family = AF_INET6;
    else
        return BAD;
    p += 5;
    for (const char *q = p; q < end; q++)
        if (!v1_address_char(*q))
            return BAD; /* a NUL among them would also cut inet_pton's copy short */
    /* four fields, each followed by exactly one SP, the last by the CR */
    const char *field[4];
    size_t flen[4];
    for (int i = 0; i < 4; i++) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *stop = sp != NULL ? sp : end;
        if (stop == p || (i < 3) != (sp != NULL))
            return BAD; /* empty field (two spaces), too few or too many fields */
        field[i] = p;
        flen[i] = (size_t)(stop - p);
        p = sp != NULL ? sp + 1 : end;
    }
    uint16_t sport, dport;
    if (v1_port(field[2], flen[2], &sport) != 0 || v1_port(field[3], flen[3], &dport) != 0)
        return BAD;
    fk_proxy_result r;
    memset(&r, 0, sizeof(r));
    r.version = 1;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&r.src;
        struct in_addr dst;
        if (v1_ipv4(field[0], flen[0], &sin->sin_addr) != 0 ||
            v1_ipv4(field[1], flen[1], &dst) != 0)
            return BAD;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(sport);
        r.src_len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r.src;
        struct in6_addr dst;
        if (v1_ipv6(field[0], flen[0], &sin6->sin6_addr) != 0 ||
            v1_ipv6(field[1], flen[1], &dst) != 0)
            return BAD;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(sport);
        r.src_len = sizeof(*sin6);
    }
    *out = r;
    return (int)line;
}

/* ---- version 2 ---------------------------------------------------------------- */

#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1

/* The family/transport bytes the spec defines; any other must be rejected. */
static int v2_family_ok(unsigned char f)
{
    return f == 0x00 || f == 0x11 || f == 0x12 || f == 0x21 || f == 0x22 || f == 0x31 ||
           f == 0x32;
}

static int parse_v2(const char *buf, size_t len, fk_proxy_result *out)
{
    const unsigned char *b = (const unsigned char *)buf;
    if (memcmp(b, v2_signature, len < 12 ? len : 12) != 0)
        return BAD;
    if (len > 12 && ((b[12] >> 4) != 2 || (b[12] & 0x0F) > V2_CMD_PROXY))
        return BAD;
    if (len > 13 && !v2_family_ok(b[13]))
        return BAD;
    if (len < FK_PROXY_V2_HEAD)
        return FK_NEED_MORE;
    size_t total = FK_PROXY_V2_HEAD + ((size_t)b[14] << 8 | b[15]);
    if (total > FK_PROXY_MAX)
        return BAD;
    if (len < total)
        return FK_NEED_MORE;
    fk_proxy_result r;
    memset(&r, 0, sizeof(r));
    r.version = 2;
    if ((b[12] & 0x0F) == V2_CMD_LOCAL) {
        /* the proxy's own connection (a health check): whatever follows is ignored */
        r.local = 1;
        *out = r;
        return (int)total;
    }
    const unsigned char *a = b + FK_PROXY_V2_HEAD;
    size_t addr_len;
    switch (b[13] >> 4) {
    case 0x1: addr_len = 12; break;  /* src, dst 4 bytes each, then the two ports */
    case 0x2: addr_len = 36; break;  /* 16-byte addresses */
    case 0x3: addr_len = 216; break; /* two 108-byte unix paths */
    default: addr_len = 0; break;    /* UNSPEC */
    }
    if (total - FK_PROXY_V2_HEAD < addr_len)
        return BAD;
    /* TLVs (type, 2-byte length, value) fill the rest exactly */
    size_t off = FK_PROXY_V2_HEAD + addr_len;
    while (off < total) {
        if (total - off < 3)
            return BAD;
        size_t value_len = (size_t)b[off + 1] << 8 | b[off + 2];
        if (total - off - 3 < value_len)
            return BAD;
        off += 3 + value_len;
    }
    switch (b[13] >> 4) {
    case 0x1: {
        struct sockaddr_in *sin = (struct sockaddr_in *)&r.src;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, a, 4);
        memcpy(&sin->sin_port, a + 8, 2); /* both in network order */
        r.src_len = sizeof(*sin);
        break;
    }
    case 0x2: {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r.src;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, a, 16);
        memcpy(&sin6->sin6_port, a + 32, 2);
        r.src_len = sizeof(*sin6);
        break;
    }
    default: /* UNSPEC, or unix paths: the connection's own peer stands */
        r.local = 1;
        break;
    }
    *out = r;
    return (int)total;
}

int fk_proxy_parse(const char *buf, size_t len, fk_proxy_result *out)
{
    if (len == 0)
        return FK_NEED_MORE;
    if (buf[0] == 'P')
        return parse_v1(buf, len, out);
    if (buf[0] == '\r')
        return parse_v2(buf, len, out);
    return BAD;
}

/* ---- allow-list ------------------------------------------------------------------ */

static int prefix_match(const unsigned char *net, const unsigned char *addr, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(net, addr, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xFF << (8 - rest));
    return (net[whole] & mask) == (addr[whole] & mask);
}

int fk_net_allows(const fk_net *nets, size_t n, const struct sockaddr_storage *sa)
{
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    unsigned char addr[16];
    int family;
    if (sa->ss_family == AF_UNIX)
        return 1;
    if (sa->ss_family == AF_INET) {
        family = AF_INET;
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->ss_family == AF_INET6) {
        const unsigned char *a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a6, v4_mapped, 12) == 0) {
            family = AF_INET;
            memcpy(addr, a6 + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(addr, a6, 16);
        }
    } else {
        return 0;
    }
    unsigned max_bits = family == AF_INET ? 32 : 128;
    for (size_t i = 0; i < n; i++)
        if (nets[i].family == family &&
            prefix_match(nets[i].addr, addr, nets[i].bits < max_bits ? nets[i].bits : max_bits))
            return 1;
    return 0;
}

int fk_proxy_read(int fd, int exact, char *buf, fk_proxy_result *r, size_t *len, size_t *taken,
                  int *drained)
{
    ssize_t n;
    do
        n = recv(fd, buf, FK_PROXY_MAX, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return FK_PROXY_AGAIN;
    if (n <= 0) /* EOF before any header, or an error */
        return FK_PROXY_CLOSED;
    int parsed = fk_proxy_parse(buf, (size_t)n, r);
    if (parsed == FK_NEED_MORE) {
        /* peeking cannot tell that an EOF follows a partial header: ask */
        struct pollfd p = {.fd = fd, .events = POLLRDHUP};
        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
            return FK_PROXY_CLOSED;
        return FK_PROXY_AGAIN;
    }
    if (parsed < 0)
        return FK_PROXY_BAD;
    size_t take = exact ? (size_t)parsed : (size_t)n;
    ssize_t got;
    do
        got = recv(fd, buf, take, 0);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)take) /* the bytes were there a moment ago: only a failure */
        return FK_PROXY_CLOSED;
    *len = (size_t)parsed;
    *taken = take;
    *drained = !exact && (size_t)n < FK_PROXY_MAX;
    return FK_PROXY_DONE;
}
