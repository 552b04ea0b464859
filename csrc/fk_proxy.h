/* PROXY protocol header parser, versions 1 and 2 (HAProxy's proxy-protocol.txt),
 * and the allow-list of peers trusted to send one.
 *
 * A proxy that speaks the protocol opens each connection with one header that
 * names the client it relays for. The parser is, like fk_parse_request(), a pure
 * function over the caller's buffer: feed it the bytes received so far from the
 * connection's start, again when more arrive. It reads nothing past the header,
 * so the caller can take exactly the header off the stream. */
#ifndef FK_PROXY_H
#define FK_PROXY_H

#include <sys/socket.h>
#include "fk_common.h"

#define FK_PROXY_V1_MAX 107  /* the longest v1 line, CRLF included (the spec's limit) */
#define FK_PROXY_V2_HEAD 16  /* v2's fixed part: signature, version/command, family, length */
#define FK_PROXY_MAX 4096    /* the longest header accepted: v2 allows 16 + 65535 bytes, but
                                addresses take 216 at most and TLVs (ALPN, authority, TLS
                                details, cloud endpoint ids) a few hundred; more is refused */

typedef struct {
    int version;     /* 1 or 2 */
    int local;       /* 1: keep the connection's own peer address (v2 LOCAL command, v1
                        UNKNOWN, v2 UNSPEC or AF_UNIX family); src is then empty */
    struct sockaddr_storage src; /* the client's address and port (AF_INET or AF_INET6) */
    socklen_t src_len;
} fk_proxy_result;

/* Parses a PROXY header at the start of buf[0 .. len).
 *
 * Returns the header's length in bytes (> 0) when it is complete and valid;
 * FK_NEED_MORE when buf is a valid beginning of a header; FK_ERR_BAD_REQUEST
 * as soon as it cannot be one (not a PROXY header at all, malformed, or longer
 * than FK_PROXY_MAX). out is written only on success.
 *
 * Strictness. v1: "PROXY TCP4 " or "PROXY TCP6 ", then source address, destination
 * address, source port and destination port separated by single spaces, then
 * CRLF, FK_PROXY_V1_MAX bytes at most; addresses in the protocol's family
 * (dotted quad without leading zeros, or RFC 4291 text), ports decimal 0..65535
 * without leading zeros. "PROXY UNKNOWN" may be followed by anything up to the
 * CRLF. v2: the 12-byte signature, version 2, command LOCAL or PROXY, one of the
 * seven family/transport bytes the spec defines, and a length that holds the
 * family's addresses; for PROXY the TLVs after the addresses must fill the rest
 * exactly. A LOCAL header's contents are skipped unchecked, as the spec asks. */
int fk_proxy_parse(const char *buf, size_t len, fk_proxy_result *out);

enum {
    FK_PROXY_DONE = 1,   /* the header was taken off the socket */
    FK_PROXY_AGAIN = 0,  /* more bytes are needed: wait for the socket's next edge */
    FK_PROXY_CLOSED = -1, /* EOF or an error before the header ended */
    FK_PROXY_BAD = -2,   /* not a valid header */
};

/* Reads the PROXY header at the start of the non-blocking socket fd. The
 * socket is peeked at until the header is complete, then the header is taken
 * off it: with exact (a TLS connection, whose handshake OpenSSL reads next)
 * exactly the header, otherwise all that was peeked, the bytes after the
 * header (buf[*len .. *taken)) being the connection's first input. buf holds
 * FK_PROXY_MAX bytes. *drained tells that the socket had no more to give (the
 * caller's edge-triggered poll reports what comes next). Returns FK_PROXY_*;
 * r, *len and *taken are set with FK_PROXY_DONE. */
int fk_proxy_read(int fd, int exact, char *buf, fk_proxy_result *r, size_t *len, size_t *taken,
                  int *drained);

/* An IP network of an allow-list. */
typedef struct {
    int family;             /* AF_INET or AF_INET6 */
    unsigned bits;          /* prefix length */
    unsigned char addr[16]; /* network address, 4 or 16 bytes used */
} fk_net;

/* Whether the peer sa belongs to one of the n networks. Unix-socket peers
 * always do (a proxy on the same host); an IPv4-mapped IPv6 address is matched
 * as the IPv4 address it carries. */
int fk_net_allows(const fk_net *nets, size_t n, const struct sockaddr_storage *sa);

#endif
