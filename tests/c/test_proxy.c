/* Unit tests of fk_proxy_parse (PROXY protocol v1 and v2) and fk_net_allows.
 * As in test_parse.c, every input is copied to the end of a mapping followed by
 * a PROT_NONE page, so reading one byte past it faults; build with ASan and
 * UBSan (see the Makefile). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include "fk_proxy.h"
#include "check.h"

#define BAD FK_ERR_BAD_REQUEST
#define MORE FK_NEED_MORE

/* ---- helpers ------------------------------------------------------------- */

static fk_proxy_result res;

static int parse_n(const void *s, size_t n)
{
    memset(&res, 0xAA, sizeof(res)); /* untouched unless complete */
    return fk_proxy_parse(place(s, n), n, &res);
}

static int parse(const char *s) { return parse_n(s, strlen(s)); }

/* Every proper prefix of s[0 .. n) is a valid beginning. */
static int prefixes_need_more(const void *s, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (parse_n(s, k) != MORE)
            return 0;
    return 1;
}

/* The result is the IPv4 source addr:port. */
static int src4(const char *addr, unsigned port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&res.src;
    struct in_addr want;
    inet_pton(AF_INET, addr, &want);
    return !res.local && sin->sin_family == AF_INET && res.src_len == sizeof(*sin) &&
           sin->sin_addr.s_addr == want.s_addr && ntohs(sin->sin_port) == port;
}

static int src6(const char *addr, unsigned port)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&res.src;
    struct in6_addr want;
    inet_pton(AF_INET6, addr, &want);
    return !res.local && sin6->sin6_family == AF_INET6 && res.src_len == sizeof(*sin6) &&
           memcmp(&sin6->sin6_addr, &want, 16) == 0 && ntohs(sin6->sin6_port) == port &&
           sin6->sin6_flowinfo == 0 && sin6->sin6_scope_id == 0;
}

/* ---- version 1 ----------------------------------------------------------- */

static void test_v1_valid(void)
{
    const char *tcp4 = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    CHECK(parse(tcp4) == (int)strlen(tcp4));
    CHECK(res.version == 1 && src4("192.168.0.1", 56324));
    CHECK(prefixes_need_more(tcp4, strlen(tcp4)));

    const char *tcp6 = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    CHECK(parse(tcp6) == (int)strlen(tcp6));
    CHECK(res.version == 1 && src6("2001:db8::1", 65535));
    CHECK(prefixes_need_more(tcp6, strlen(tcp6)));

    CHECK(parse("PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n") > 0 && src6("::ffff:10.1.2.3", 1));
    CHECK(parse("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n") > 0 && src4("0.0.0.0", 0));

    CHECK(parse("PROXY UNKNOWN\r\n") == 15 && res.version == 1 && res.local);
    const char *unknown = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    CHECK(parse(unknown) == (int)strlen(unknown) && res.local);
    CHECK(prefixes_need_more(unknown, strlen(unknown)));

    /* the header only: the HTTP request after it is left alone */
    const char *both = "PROXY TCP4 1.2.3.4 5.6.7.8 1000 80\r\nGET / HTTP/1.1\r\n\r\n";
    CHECK(parse(both) == 36 && src4("1.2.3.4", 1000));
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1000 80\r\nPROXY garbage") == 36);

    /* the longest TCP6 line, and an UNKNOWN line of exactly 107 bytes */
    const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    CHECK(parse(longest) == (int)strlen(longest));
    char line[200];
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 105, "\r\n", 2);
    CHECK(parse_n(line, 107) == 107 && res.local);
    CHECK(prefixes_need_more(line, 107));
}

static void test_v1_invalid(void)
{
    /* rejected at once when the beginning already cannot be a header */
    CHECK(parse("GET / HTTP/1.1\r\n") == BAD);
    CHECK(parse("G") == BAD);
    CHECK(parse("proxy") == BAD);
    CHECK(parse("PROXY  ") == BAD);
    CHECK(parse("PROXY X") == BAD);
    CHECK(parse("PROXY TCP5") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 g") == BAD);
    CHECK(parse("PROXY TCP4 1.2\r3") == BAD);
    CHECK(parse("PROXY UNKNOWNX") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r") == MORE);

    /* structure */
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n") == BAD);             /* bare LF */
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n") == BAD);
    CHECK(parse("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n") == BAD);          /* two spaces */
    CHECK(parse("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n") == BAD);          /* trailing space */
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n") == BAD);             /* 3 fields */
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n") == BAD);         /* 5 fields */
    CHECK(parse("PROXY TCP4\r\n") == BAD);
    CHECK(parse("PROXY \r\n") == BAD);
    CHECK(parse("PROXY\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\t\r\n") == BAD);
    CHECK(parse(" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n") == BAD);
    CHECK(parse("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n") == BAD);
    CHECK(parse("PROXY UNKNOWN\n") == BAD);

    /* addresses */
    CHECK(parse("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n") == BAD);         /* leading zero */
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.0008 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 ::1 5.6.7.8 1 2\r\n") == BAD);               /* family mismatch */
    CHECK(parse("PROXY TCP6 1.2.3.4 ::1 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP6 ::1 1.2.3.4 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP6 2001:db8:::1 ::1 1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP6 12345::1 ::1 1 2\r\n") == BAD);
    /* a NUL inside a field (inet_pton would stop at it), found by fuzzing */
    static const char nul6[] = "PROXY TCP6 ::1\0x ::1 1 2\r\n";
    static const char nul4[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
    CHECK(parse_n(nul6, sizeof(nul6) - 1) == BAD);
    CHECK(parse_n(nul4, sizeof(nul4) - 1) == BAD);

    /* ports */
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n") == BAD);        /* leading zero */
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n") == BAD);
    CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n") == BAD);

    /* longer than 107 bytes */
    char line[200];
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 106, "\r\n", 2);
    CHECK(parse_n(line, 108) == BAD);
    CHECK(parse_n(line, 107) == BAD); /* no CRLF within 107 bytes: refused before the rest */
    CHECK(parse_n(line, 106) == MORE);
    memset(line, '1', sizeof(line));
    memcpy(line, "PROXY TCP4 ", 11);
    CHECK(parse_n(line, 106) == MORE); /* valid characters so far */
    CHECK(parse_n(line, 107) == BAD);
    CHECK(parse_n(line, sizeof(line)) == BAD);
}

/* ---- version 2 ----------------------------------------------------------- */

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header: command byte, family byte, then body (addresses and TLVs) of
 * body_len bytes; the length field says len_field (body_len unless testing). */
static size_t v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam,
                 const void *body, size_t body_len, size_t len_field)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (unsigned char)(len_field >> 8);
    out[15] = (unsigned char)len_field;
    if (body_len)
        memcpy(out + 16, body, body_len);
    return 16 + body_len;
}

static const unsigned char inet4[12] = {198, 51, 100, 9, 10, 0, 0, 1, 0x10, 0x92, 0x01, 0xBB};

static void inet6_body(unsigned char *b)
{
    inet_pton(AF_INET6, "2001:db8::42", b);
    inet_pton(AF_INET6, "2001:db8::1", b + 16);
    b[32] = 0xFF; b[33] = 0xFE; /* source port 65534 */
    b[34] = 0x00; b[35] = 0x50; /* destination port 80 */
}

static void test_v2_valid(void)
{
    unsigned char h[8192], body[4096];
    size_t n;

    n = v2(h, 0x21, 0x11, inet4, 12, 12);
    CHECK(parse_n(h, n) == 28 && res.version == 2 && src4("198.51.100.9", 4242));
    CHECK(prefixes_need_more(h, n));
    n = v2(h, 0x21, 0x12, inet4, 12, 12); /* UDP */
    CHECK(parse_n(h, n) == 28 && src4("198.51.100.9", 4242));

    inet6_body(body);
    n = v2(h, 0x21, 0x21, body, 36, 36);
    CHECK(parse_n(h, n) == 52 && src6("2001:db8::42", 65534));
    CHECK(prefixes_need_more(h, n));
    n = v2(h, 0x21, 0x22, body, 36, 36);
    CHECK(parse_n(h, n) == 52 && src6("2001:db8::42", 65534));

    /* LOCAL (a health check of the proxy's): the peer stays; the body is ignored */
    n = v2(h, 0x20, 0x00, NULL, 0, 0);
    CHECK(parse_n(h, n) == 16 && res.version == 2 && res.local);
    n = v2(h, 0x20, 0x11, inet4, 12, 12);
    CHECK(parse_n(h, n) == 28 && res.local);
    n = v2(h, 0x20, 0x11, "\x01\x02", 2, 2); /* unchecked, as the spec asks */
    CHECK(parse_n(h, n) == 18 && res.local);

    /* PROXY with UNSPEC or unix addresses: the peer stays */
    n = v2(h, 0x21, 0x00, NULL, 0, 0);
    CHECK(parse_n(h, n) == 16 && res.local);
    memset(body, 0, 216);
    memcpy(body, "/run/client.sock", 16);
    n = v2(h, 0x21, 0x31, body, 216, 216);
    CHECK(parse_n(h, n) == 232 && res.local);
    n = v2(h, 0x21, 0x32, body, 216, 216);
    CHECK(parse_n(h, n) == 232 && res.local);

    /* TLVs after the addresses: ALPN "h2", an authority, an empty NOOP */
    memcpy(body, inet4, 12);
    memcpy(body + 12, "\x01\x00\x02h2\x02\x00\x0b" "example.com\x04\x00\x00", 3 + 2 + 3 + 11 + 3);
    n = v2(h, 0x21, 0x11, body, 34, 34);
    CHECK(parse_n(h, n) == 50 && src4("198.51.100.9", 4242));
    CHECK(prefixes_need_more(h, n));

    /* the header only: what follows is left alone */
    n = v2(h, 0x21, 0x11, inet4, 12, 12);
    memcpy(h + n, "GET / HTTP/1.1\r\n\r\n", 18);
    CHECK(parse_n(h, n + 18) == 28 && src4("198.51.100.9", 4242));

    /* the largest accepted header: TLVs up to FK_PROXY_MAX in all */
    size_t tlv = FK_PROXY_MAX - 16 - 12 - 3;
    memcpy(body, inet4, 12);
    body[12] = 0x04;
    body[13] = (unsigned char)(tlv >> 8);
    body[14] = (unsigned char)tlv;
    memset(body + 15, 'p', tlv);
    n = v2(h, 0x21, 0x11, body, FK_PROXY_MAX - 16, FK_PROXY_MAX - 16);
    CHECK(parse_n(h, n) == FK_PROXY_MAX && src4("198.51.100.9", 4242));
}

static void test_v2_invalid(void)
{
    unsigned char h[8192], body[512];
    size_t n;

    /* signature */
    n = v2(h, 0x21, 0x11, inet4, 12, 12);
    h[11] = 0x0B;
    CHECK(parse_n(h, n) == BAD);
    CHECK(parse_n(h, 12) == BAD);
    CHECK(parse_n(h, 11) == MORE);
    CHECK(parse_n("\r\n\r\n\r\n", 6) == BAD);
    CHECK(parse_n("\r\nGET", 5) == BAD);

    /* version, command, family: rejected as soon as their byte arrives */
    n = v2(h, 0x11, 0x11, inet4, 12, 12);
    CHECK(parse_n(h, 13) == BAD);
    n = v2(h, 0x31, 0x11, inet4, 12, 12);
    CHECK(parse_n(h, n) == BAD);
    n = v2(h, 0x22, 0x11, inet4, 12, 12);
    CHECK(parse_n(h, 13) == BAD);
    n = v2(h, 0x2F, 0x11, inet4, 12, 12);
    CHECK(parse_n(h, n) == BAD);
    static const unsigned char bad_families[] = {0x01, 0x10, 0x13, 0x20, 0x23, 0x30, 0x41, 0xFF};
    for (size_t i = 0; i < sizeof(bad_families); i++) {
        n = v2(h, 0x21, bad_families[i], inet4, 12, 12);
        CHECK(parse_n(h, 14) == BAD);
        n = v2(h, 0x20, bad_families[i], inet4, 12, 12); /* LOCAL too */
        CHECK(parse_n(h, n) == BAD);
    }

    /* lengths: too short for the family's addresses, more than accepted */
    n = v2(h, 0x21, 0x11, inet4, 11, 11);
    CHECK(parse_n(h, n) == BAD);
    memset(body, 0, sizeof(body));
    n = v2(h, 0x21, 0x21, body, 35, 35);
    CHECK(parse_n(h, n) == BAD);
    n = v2(h, 0x21, 0x31, body, 215, 215);
    CHECK(parse_n(h, n) == BAD);
    n = v2(h, 0x21, 0x11, inet4, 12, FK_PROXY_MAX - 15); /* one byte more than accepted */
    CHECK(parse_n(h, 16) == BAD);
    n = v2(h, 0x21, 0x11, inet4, 12, 0xFFFF);
    CHECK(parse_n(h, 16) == BAD);
    n = v2(h, 0x20, 0x00, NULL, 0, 0xFFFF);
    CHECK(parse_n(h, 16) == BAD);
    /* the length says more than was sent: a truncated header waits */
    n = v2(h, 0x21, 0x11, inet4, 12, 20);
    CHECK(parse_n(h, n) == MORE);

    /* TLVs must fill the rest exactly */
    memcpy(body, inet4, 12);
    memcpy(body + 12, "\x01\x00\x05h2", 5); /* says 5 bytes, 2 follow */
    n = v2(h, 0x21, 0x11, body, 17, 17);
    CHECK(parse_n(h, n) == BAD);
    memcpy(body + 12, "\x01\x00", 2); /* a TLV head cut short */
    n = v2(h, 0x21, 0x11, body, 14, 14);
    CHECK(parse_n(h, n) == BAD);
    n = v2(h, 0x21, 0x11, body, 13, 13);
    CHECK(parse_n(h, n) == BAD);
}

/* ---- allow-list ---------------------------------------------------------- */

static fk_net net(int family, const char *addr, unsigned bits)
{
    fk_net nt;
    memset(&nt, 0, sizeof(nt));
    nt.family = family;
    nt.bits = bits;
    inet_pton(family, addr, nt.addr);
    return nt;
}

static struct sockaddr_storage peer(int family, const char *addr)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = (sa_family_t)family;
    if (family == AF_INET)
        inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr);
    else if (family == AF_INET6)
        inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr);
    return ss;
}

static void test_allow(void)
{
    fk_net nets[4];
    nets[0] = net(AF_INET, "127.0.0.1", 32);
    nets[1] = net(AF_INET, "10.20.0.0", 14);
    nets[2] = net(AF_INET6, "2001:db8::", 32);
    struct sockaddr_storage p;

    p = peer(AF_INET, "127.0.0.1");
    CHECK(fk_net_allows(nets, 3, &p));
    p = peer(AF_INET, "127.0.0.2");
    CHECK(!fk_net_allows(nets, 3, &p));
    p = peer(AF_INET, "10.23.255.255");
    CHECK(fk_net_allows(nets, 3, &p));
    p = peer(AF_INET, "10.24.0.0");
    CHECK(!fk_net_allows(nets, 3, &p));
    p = peer(AF_INET, "10.19.255.255");
    CHECK(!fk_net_allows(nets, 3, &p));
    p = peer(AF_INET6, "::ffff:127.0.0.1"); /* a v4 client of a [::] listener */
    CHECK(fk_net_allows(nets, 3, &p));
    p = peer(AF_INET6, "::ffff:127.0.0.3");
    CHECK(!fk_net_allows(nets, 3, &p));
    p = peer(AF_INET6, "2001:db8:ffff::1");
    CHECK(fk_net_allows(nets, 3, &p));
    p = peer(AF_INET6, "2001:db9::1");
    CHECK(!fk_net_allows(nets, 3, &p));
    p = peer(AF_INET6, "::1");
    CHECK(!fk_net_allows(nets, 3, &p));
    p = peer(AF_UNIX, NULL); /* a proxy on the same host */
    CHECK(fk_net_allows(nets, 0, &p));
    p = peer(AF_INET, "127.0.0.1");
    CHECK(!fk_net_allows(nets, 0, &p));

    /* '*': both families with prefix 0; an oversized prefix is clamped */
    nets[0] = net(AF_INET, "0.0.0.0", 0);
    nets[1] = net(AF_INET6, "::", 0);
    p = peer(AF_INET, "203.0.113.1");
    CHECK(fk_net_allows(nets, 2, &p));
    p = peer(AF_INET6, "2001:db8::1");
    CHECK(fk_net_allows(nets, 2, &p));
    nets[0] = net(AF_INET, "192.0.2.1", 200);
    p = peer(AF_INET, "192.0.2.1");
    CHECK(fk_net_allows(nets, 1, &p));
}

int main(void)
{
    test_v1_valid();
    test_v1_invalid();
    test_v2_valid();
    test_v2_invalid();
    test_allow();
    unplace();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
