/* Unit tests of fk_parse_request and fk_chunked_decode. Every input is copied to
 * the end of a mapping followed by a PROT_NONE page, so reading one byte past
 * it faults; build with ASan and UBSan (see the Makefile). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fk_chunked.h"
#include "fk_parse.h"
#include "check.h"

/* ---- parser helpers ------------------------------------------------------ */

static fk_header hdrs[64];
static fk_request req;

static int parse_ex(const char *s, size_t n, size_t last_len, size_t cap, size_t line_max,
                    size_t field_max)
{
    fk_limits lim;
    const char *b = place(s, n);
    lim.max_request_line = line_max;
    lim.max_field_size = field_max;
    req.headers = hdrs;
    req.num_headers = cap;
    return fk_parse_request(b, n, last_len, &req, &lim);
}

static int parse(const char *s)
{
    return parse_ex(s, strlen(s), 0, 64, 0, 0);
}

static int parse_cap(const char *s, size_t cap)
{
    return parse_ex(s, strlen(s), 0, cap, 0, 0);
}

/* Feeds every prefix in turn, as a connection reading one byte at a time would:
 * returns the first result that is not FK_NEED_MORE, or FK_NEED_MORE. */
static int parse_bytewise(const char *s)
{
    size_t n = strlen(s), i, last = 0;
    int r = FK_NEED_MORE;
    for (i = 1; i <= n; i++) {
        r = parse_ex(s, i, last, 64, 0, 0);
        if (r != FK_NEED_MORE)
            return i == n ? r : -100 - (int)i;
        last = i;
    }
    return r;
}

static int eq(const char *p, size_t n, const char *s)
{
    return p != NULL && n == strlen(s) && memcmp(p, s, n) == 0;
}

#define SLICE(field, s) eq(req.field, req.field##_len, s)

/* prefix, then n copies of c, then suffix, in one malloc'd string */
static char *pad(const char *prefix, char c, size_t n, const char *suffix)
{
    size_t lp = strlen(prefix), ls = strlen(suffix);
    char *s = malloc(lp + n + ls + 1);
    if (s == NULL)
        exit(2);
    memcpy(s, prefix, lp);
    memset(s + lp, c, n);
    memcpy(s + lp + n, suffix, ls + 1);
    return s;
}

#define PARSE_LIT(lit) parse_ex(lit, sizeof(lit) - 1, 0, 64, 0, 0)

#define H11 "Host: example.com\r\n"

/* ---- request line -------------------------------------------------------- */

static void test_request_line(void)
{
    static const char get[] = "GET /index.html HTTP/1.1\r\n" H11 "\r\n";

    CHECK(parse(get) == (int)strlen(get));
    CHECK(SLICE(method, "GET"));
    CHECK(SLICE(target, "/index.html"));
    CHECK(SLICE(path, "/index.html"));
    CHECK(req.query == NULL);
    CHECK(SLICE(host, "example.com"));
    CHECK(req.minor_version == 1);
    CHECK(req.flags == FK_REQ_KEEP_ALIVE);
    CHECK(req.content_length == -1);
    CHECK(req.num_headers == 1);
    CHECK(eq(hdrs[0].name, hdrs[0].name_len, "Host"));
    CHECK(eq(hdrs[0].value, hdrs[0].value_len, "example.com"));
    CHECK(parse_bytewise(get) == (int)strlen(get));

    /* HTTP/1.0 needs no Host and does not persist by default */
    CHECK(parse("GET / HTTP/1.0\r\n\r\n") == 18);
    CHECK(req.minor_version == 0 && req.flags == 0 && req.host == NULL);

    /* leading empty lines are skipped and counted */
    CHECK(parse("\r\nGET / HTTP/1.0\r\n\r\n") == 20);
    CHECK(parse("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.0\r\n\r\n") == 34);
    CHECK(parse("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.0\r\n\r\n") ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse("\nGET / HTTP/1.0\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("\r\rGET / HTTP/1.0\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("") == FK_NEED_MORE);
    CHECK(parse("\r") == FK_NEED_MORE);
    CHECK(parse("\r\n") == FK_NEED_MORE);
    CHECK(parse("\r\n\r\n") == FK_NEED_MORE);
    CHECK(parse("\n") == FK_ERR_BAD_REQUEST);

    /* method: any token, case-sensitive */
    CHECK(parse("PURGE / HTTP/1.1\r\n" H11 "\r\n") > 0 && SLICE(method, "PURGE"));
    CHECK(parse("get / HTTP/1.1\r\n" H11 "\r\n") > 0 && SLICE(method, "get"));
    CHECK(parse("M-SEARCH~! / HTTP/1.1\r\n" H11 "\r\n") > 0 && SLICE(method, "M-SEARCH~!"));
    CHECK(parse("GE(T / HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GE\"T / HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse(" / HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET\t/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("G\xc3\x89T / HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);

    /* exactly one SP between the parts */
    CHECK(parse("GET  / HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /  HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1 \r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);

    /* line ends */
    CHECK(parse("GET / HTTP/1.1\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\rHost: a\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r") == FK_NEED_MORE);
    CHECK(parse("GET / HTTP/1.1\r\n") == FK_NEED_MORE);

    /* version */
    CHECK(parse("GET / HTTP/1.2\r\n" H11 "\r\n") > 0 && req.minor_version == 1);
    CHECK(parse("GET / HTTP/1.9\r\n" H11 "\r\n") > 0 && req.minor_version == 1);
    CHECK(parse("GET / HTTP/1.0\r\n\r\n") > 0 && req.minor_version == 0);
    CHECK(parse("GET / HTTP/2.0\r\n" H11 "\r\n") == FK_ERR_VERSION);
    CHECK(parse("GET / HTTP/0.9\r\n\r\n") == FK_ERR_VERSION);
    CHECK(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == FK_ERR_VERSION);
    CHECK(parse("GET / http/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.10\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/11.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.x\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTPS/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1") == FK_NEED_MORE);
    CHECK(parse("GET / HTTP/1.") == FK_NEED_MORE);
    CHECK(parse("GET / HTTX") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/x") == FK_ERR_BAD_REQUEST);
}

/* ---- request-target ------------------------------------------------------ */

static void test_target(void)
{
    CHECK(parse("GET /p?q=1&r HTTP/1.1\r\n" H11 "\r\n") > 0);
    CHECK(SLICE(path, "/p") && SLICE(query, "q=1&r"));
    CHECK(parse("GET /p? HTTP/1.1\r\n" H11 "\r\n") > 0);
    CHECK(SLICE(path, "/p") && req.query != NULL && req.query_len == 0);
    CHECK(parse("GET /p?a?b HTTP/1.1\r\n" H11 "\r\n") > 0 && SLICE(query, "a?b"));
    CHECK(parse("GET /?x HTTP/1.1\r\n" H11 "\r\n") > 0 && SLICE(path, "/") && SLICE(query, "x"));
    CHECK(parse("GET //a/%20/~[]{}|^`\"<>\\ HTTP/1.1\r\n" H11 "\r\n") > 0);
    CHECK(parse("GET /" "0123456789abcdef0123456789abcdef" "!$&'()*+,;=:@-._~ HTTP/1.1\r\n" H11
                "\r\n") > 0);

    /* bytes that may not appear */
    CHECK(parse("GET /a b HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /a\tb HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /a\x01 HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /a\x7f HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /a\x80 HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /0123456789abcdef0123456789\xff HTTP/1.1\r\n" H11 "\r\n") ==
          FK_ERR_BAD_REQUEST);
    CHECK(PARSE_LIT("GET /a\0 HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    /* no fragment (RFC 9112 §3.2), wherever the '#' falls for the SIMD scan */
    CHECK(parse("GET /p?q=1#sec HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /p# HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /0123456789abcdef0123456789#x HTTP/1.1\r\n" H11 "\r\n") ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse("GET /0123456789abcdef0123456789abcdef#x HTTP/1.1\r\n" H11 "\r\n") ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse("GET http://h/p#x HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET a HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET example.com/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET ?a HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);

    /* absolute-form: the authority is the host */
    CHECK(parse("GET http://a.example:8080/x?y HTTP/1.1\r\n" H11 "\r\n") > 0);
    CHECK(req.flags & FK_REQ_ABSOLUTE_FORM);
    CHECK(SLICE(host, "a.example:8080") && SLICE(path, "/x") && SLICE(query, "y"));
    CHECK(parse("GET http://a.example HTTP/1.1\r\n" H11 "\r\n") > 0);
    CHECK(SLICE(host, "a.example") && req.path != NULL && req.path_len == 0 && !req.query);
    CHECK(parse("GET http://a.example?x HTTP/1.1\r\n" H11 "\r\n") > 0);
    CHECK(req.path_len == 0 && SLICE(query, "x"));
    CHECK(parse("GET https://[::1]:443/ HTTP/1.1\r\n" H11 "\r\n") > 0 && SLICE(host, "[::1]:443"));
    CHECK(parse("GET coap+tcp.v-2://h/ HTTP/1.1\r\n" H11 "\r\n") > 0 && SLICE(host, "h"));
    CHECK(parse("GET HTTP://H/ HTTP/1.0\r\n\r\n") > 0 && SLICE(host, "H"));
    CHECK(parse("GET http:///x HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET http://u@a/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET http://a b/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET http:/a/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET http: HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET 1http://a/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET ht_tp://a/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET http://a:x/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET http://a#f HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    /* the target's authority wins over Host */
    CHECK(parse("GET http://t/ HTTP/1.1\r\nHost: h\r\n\r\n") > 0 && SLICE(host, "t"));

    /* asterisk-form: OPTIONS only */
    CHECK(parse("OPTIONS * HTTP/1.1\r\n" H11 "\r\n") > 0 && SLICE(path, "*") && !req.query);
    CHECK(parse("GET * HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("OPTIONS *x HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("OPTIONS *?x HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("OPTIONS / HTTP/1.1\r\n" H11 "\r\n") > 0);

    /* authority-form: CONNECT only, and CONNECT only with it */
    CHECK(parse("CONNECT a.example:443 HTTP/1.1\r\n" H11 "\r\n") > 0);
    CHECK(SLICE(path, "a.example:443") && SLICE(host, "example.com"));
    CHECK(!(req.flags & FK_REQ_ABSOLUTE_FORM) && !req.query);
    CHECK(parse("CONNECT [2001:db8::1]:443 HTTP/1.1\r\n" H11 "\r\n") > 0);
    CHECK(parse("CONNECT a.example HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("CONNECT a.example: HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("CONNECT :443 HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("CONNECT / HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("CONNECT http://a:1/ HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET a.example:443 HTTP/1.1\r\n" H11 "\r\n") == FK_ERR_BAD_REQUEST);
}

/* ---- field lines --------------------------------------------------------- */

static void test_fields(void)
{
    CHECK(parse("GET / HTTP/1.1\r\nHost:a\r\nX-A: \t v  a\t \r\nX-B:\r\nX-C:   \r\n\r\n") > 0);
    CHECK(req.num_headers == 4);
    CHECK(eq(hdrs[0].value, hdrs[0].value_len, "a"));
    CHECK(eq(hdrs[1].name, hdrs[1].name_len, "X-A"));
    CHECK(eq(hdrs[1].value, hdrs[1].value_len, "v  a"));
    CHECK(hdrs[2].value_len == 0 && hdrs[3].value_len == 0);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: caf\xc3\xa9 \"q\" \x80\xff\r\n\r\n") > 0);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n") > 0);

    CHECK(parse("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: a\r\n b\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: a\r\n\tb\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n " H11 "\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 ": v\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X-(a): v\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X\xc3\xa9: v\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X v\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(PARSE_LIT("GET / HTTP/1.1\r\n" H11 "X: a\0b\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: a\rb\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: a\nY: b\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: a\x7f\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: a\x1b[0m\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: 0123456789abcdef0123456789\x01\r\n\r\n") ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "\rX") == FK_ERR_BAD_REQUEST);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "\r") == FK_NEED_MORE);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: a\r") == FK_NEED_MORE);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X: a") == FK_NEED_MORE);
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "X") == FK_NEED_MORE);

    /* bytes after the head are not looked at */
    CHECK(parse("GET / HTTP/1.1\r\n" H11 "\r\n\x00garbage") == 37);
}

/* ---- semantics of the fields --------------------------------------------- */

#define REQ(fields) "GET / HTTP/1.1\r\n" fields "\r\n"
#define REQ10(fields) "GET / HTTP/1.0\r\n" fields "\r\n"
#define POST(fields) "POST / HTTP/1.1\r\n" H11 fields "\r\n"

static void test_host(void)
{
    CHECK(parse(REQ("")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ(H11 H11)) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ10("Host: a\r\nhost: a\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ10("Host: a\r\n")) > 0 && SLICE(host, "a"));
    CHECK(parse(REQ("Host:\r\n")) > 0 && req.host != NULL && req.host_len == 0);
    CHECK(parse(REQ("hOsT: a.b-c_d~e:8080\r\n")) > 0 && SLICE(host, "a.b-c_d~e:8080"));
    CHECK(parse(REQ("Host: 192.0.2.1\r\n")) > 0);
    CHECK(parse(REQ("Host: [2001:db8::1]:80\r\n")) > 0);
    CHECK(parse(REQ("Host: [v1.x]\r\n")) > 0);
    CHECK(parse(REQ("Host: a%41b\r\n")) > 0);
    CHECK(parse(REQ("Host: a:\r\n")) > 0);
    CHECK(parse(REQ("Host: a b\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a/b\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: u@a\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a\tb\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a?b\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a#b\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a\\b\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a\xc3\xa9\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a:b\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a:1:2\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: :80\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a%4\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: a%zz\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: [::1\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: []\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: [::1]x\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ("Host: [::1/]\r\n")) == FK_ERR_BAD_REQUEST);
}

static void test_content_length(void)
{
    CHECK(parse(POST("Content-Length: 5\r\n")) > 0);
    CHECK(req.content_length == 5 && (req.flags & FK_REQ_HAS_BODY));
    CHECK(parse(POST("Content-Length: 0\r\n")) > 0);
    CHECK(req.content_length == 0 && !(req.flags & FK_REQ_HAS_BODY));
    CHECK(parse(POST("content-length:  \t12 \t\r\n")) > 0 && req.content_length == 12);
    CHECK(parse(POST("Content-Length: 5\r\nContent-Length: 5\r\n")) > 0);
    CHECK(parse(POST("Content-Length: 5\r\nContent-Length: 005\r\n")) > 0);
    CHECK(parse(POST("Content-Length: 999999999999999999\r\n")) > 0);
    CHECK(req.content_length == 999999999999999999LL);
    CHECK(parse(POST("Content-Length: 1000000000000000000\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 99999999999999999999999\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 5\r\nContent-Length: 6\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 5, 5\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: +5\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: -1\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 0x5\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 5 5\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 5.0\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length:\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 5\r\nContent-Length:\r\n")) == FK_ERR_BAD_REQUEST);
}

static void test_transfer_encoding(void)
{
    CHECK(parse(POST("Transfer-Encoding: chunked\r\n")) > 0);
    CHECK((req.flags & (FK_REQ_CHUNKED | FK_REQ_HAS_BODY)) == (FK_REQ_CHUNKED | FK_REQ_HAS_BODY));
    CHECK(req.content_length == -1);
    CHECK(parse(POST("transfer-encoding: \tChUnKeD \r\n")) > 0 && (req.flags & FK_REQ_CHUNKED));
    CHECK(parse(POST("Transfer-Encoding: gzip, chunked\r\n")) == FK_ERR_NOT_IMPLEMENTED);
    CHECK(parse(POST("Transfer-Encoding: x-foo\r\nTransfer-Encoding: chunked\r\n")) ==
          FK_ERR_NOT_IMPLEMENTED);
    CHECK(parse(POST("Transfer-Encoding: gzip,chunked\r\n")) == FK_ERR_NOT_IMPLEMENTED);
    CHECK(parse(POST("Transfer-Encoding: chunked, gzip\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n")) ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: gzip\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: chunked, chunked\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")) ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding:\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: chunked,\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: ,chunked\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: chunked;q=1\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: \"chunked\"\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: chunked\x0b\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: xchunked\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")) ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")) ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Content-Length: 0\r\nTransfer-Encoding: gzip, chunked\r\n")) ==
          FK_ERR_BAD_REQUEST);
    CHECK(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding : chunked\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(POST("Transfer-Encoding: gzip\r\n chunked\r\n")) == FK_ERR_BAD_REQUEST);
}

static void test_connection(void)
{
    CHECK(parse(REQ(H11 "Connection: close\r\n")) > 0 && !(req.flags & FK_REQ_KEEP_ALIVE));
    CHECK(parse(REQ(H11 "Connection: Keep-Alive, CLOSE\r\n")) > 0);
    CHECK(!(req.flags & FK_REQ_KEEP_ALIVE));
    CHECK(parse(REQ10("Connection: keep-alive\r\n")) > 0 && (req.flags & FK_REQ_KEEP_ALIVE));
    CHECK(parse(REQ10("Connection: x, , keep-alive ,\r\n")) > 0);
    CHECK(req.flags & FK_REQ_KEEP_ALIVE);
    CHECK(parse(REQ10("")) > 0 && !(req.flags & FK_REQ_KEEP_ALIVE));
    CHECK(parse(REQ(H11 "Connection: keep-alive\r\nConnection: close\r\n")) > 0);
    CHECK(!(req.flags & FK_REQ_KEEP_ALIVE));
    CHECK(parse(REQ(H11 "Connection: close;x\r\n")) == FK_ERR_BAD_REQUEST);
    CHECK(parse(REQ(H11 "Connection: Upgrade\r\nUpgrade: websocket\r\n")) > 0);
    CHECK(req.flags & FK_REQ_UPGRADE);
    CHECK(parse(REQ(H11 "Upgrade: h2c\r\nConnection: keep-alive, upgrade\r\n")) > 0);
    CHECK(req.flags & FK_REQ_UPGRADE);
    CHECK(parse(REQ(H11 "Connection: upgrade\r\n")) > 0 && !(req.flags & FK_REQ_UPGRADE));
    CHECK(parse(REQ(H11 "Upgrade: websocket\r\n")) > 0 && !(req.flags & FK_REQ_UPGRADE));
    CHECK(parse(REQ(H11 "Connection: upgrade\r\nUpgrade:\r\n")) > 0);
    CHECK(!(req.flags & FK_REQ_UPGRADE));
    CHECK(parse(REQ(H11 "Connection: upgraded\r\nUpgrade: x\r\n")) > 0);
    CHECK(!(req.flags & FK_REQ_UPGRADE));
}

static void test_expect(void)
{
    CHECK(parse(POST("Expect: 100-continue\r\nContent-Length: 3\r\n")) > 0);
    CHECK(req.flags & FK_REQ_EXPECT_CONTINUE);
    CHECK(parse(POST("expect:  100-Continue \r\n")) > 0 && (req.flags & FK_REQ_EXPECT_CONTINUE));
    CHECK(parse(POST("Expect: 100-continued\r\n")) > 0);
    CHECK(!(req.flags & FK_REQ_EXPECT_CONTINUE));
    CHECK(parse(POST("Expect: foo\r\n")) > 0 && !(req.flags & FK_REQ_EXPECT_CONTINUE));
    CHECK(parse(REQ10("Expect: 100-continue\r\n")) > 0);
    CHECK(!(req.flags & FK_REQ_EXPECT_CONTINUE));
}

/* ---- limits -------------------------------------------------------------- */

static void test_limits(void)
{
    /* request line of exactly 30 bytes: "GET /" + 11 'a' + " HTTP/1.1" */
    static const char line30[] = "GET /aaaaaaaaaaaaaaaa HTTP/1.1\r\n" H11 "\r\n";
    static const char line31[] = "GET /aaaaaaaaaaaaaaaaa HTTP/1.1\r\n" H11 "\r\n";
    static const char field20[] = "GET / HTTP/1.1\r\nHost: aaaaaaaaaaaaaa\r\n\r\n";
    static const char field21[] = "GET / HTTP/1.1\r\nHost: aaaaaaaaaaaaaaa\r\n\r\n";
    static const char third[] = "GET / HTTP/1.1\r\n" H11 "A: 1\r\nB";
    char *s;
    size_t n;

    CHECK(parse_ex(line30, strlen(line30), 0, 8, 30, 0) > 0);
    CHECK(parse_ex(line31, strlen(line31), 0, 8, 30, 0) == FK_ERR_URI_TOO_LONG);
    CHECK(parse_ex(line31, 30, 0, 8, 30, 0) == FK_NEED_MORE);
    CHECK(parse_ex(line31, 31, 0, 8, 30, 0) == FK_ERR_URI_TOO_LONG);
    CHECK(parse_ex(line30, 31, 0, 8, 30, 0) == FK_NEED_MORE);        /* pending CR */
    CHECK(parse_ex(line30, 31, 20, 8, 30, 0) == FK_NEED_MORE);       /* same, incremental */
    CHECK(parse_ex(line31, 31, 20, 8, 30, 0) == FK_ERR_URI_TOO_LONG);
    CHECK(parse_ex("\r\n\r\nGET /aaaaaaaaaaaaaaaaa", 26, 20, 8, 21, 0) == FK_ERR_URI_TOO_LONG);
    CHECK(parse_ex("\r\n\r\nGET /aaaaaaaaaaaaaaaaa", 26, 20, 8, 22, 0) == FK_NEED_MORE);
    /* errors before the limit come first; those after it are never reached */
    s = pad("GE(T /", 'a', 40, "");
    CHECK(parse_ex(s, strlen(s), 0, 8, 30, 0) == FK_ERR_BAD_REQUEST);
    free(s);
    s = pad("GET /", 'a', 30, "\x01 HTTP/1.1\r\n\r\n");
    CHECK(parse_ex(s, strlen(s), 0, 8, 30, 0) == FK_ERR_URI_TOO_LONG);
    free(s);

    CHECK(parse_ex(field20, strlen(field20), 0, 8, 0, 20) > 0);
    CHECK(parse_ex(field21, strlen(field21), 0, 8, 0, 20) == FK_ERR_FIELD_TOO_LARGE);
    CHECK(parse_ex(field21, 36, 0, 8, 0, 20) == FK_NEED_MORE);
    CHECK(parse_ex(field21, 37, 0, 8, 0, 20) == FK_ERR_FIELD_TOO_LARGE);
    CHECK(parse_ex(field20, 37, 0, 8, 0, 20) == FK_NEED_MORE);      /* pending CR */
    CHECK(parse_ex(field21, 37, 30, 8, 0, 20) == FK_ERR_FIELD_TOO_LARGE);
    CHECK(parse_ex(field20, 37, 30, 8, 0, 20) == FK_NEED_MORE);

    /* the default of 0 is 8190 */
    s = pad("GET /", 'a', 8190 - 14, " HTTP/1.1\r\n" H11 "\r\n");
    CHECK(parse_ex(s, strlen(s), 0, 8, 0, 0) > 0);
    free(s);
    s = pad("GET /", 'a', 8190 - 13, " HTTP/1.1\r\n" H11 "\r\n");
    CHECK(parse_ex(s, strlen(s), 0, 8, 0, 0) == FK_ERR_URI_TOO_LONG);
    free(s);
    s = pad("GET / HTTP/1.1\r\n" H11 "X: ", 'v', 8190 - 3, "\r\n\r\n");
    CHECK(parse_ex(s, strlen(s), 0, 8, 0, 0) > 0);
    free(s);
    s = pad("GET / HTTP/1.1\r\n" H11 "X: ", 'v', 8190 - 2, "\r\n\r\n");
    CHECK(parse_ex(s, strlen(s), 0, 8, 0, 0) == FK_ERR_FIELD_TOO_LARGE);
    free(s);

    /* a 1 MB request line without a line end is refused, whole or incremental */
    s = pad("GET /", 'a', 1 << 20, "");
    n = strlen(s);
    CHECK(parse_ex(s, n, 0, 8, 0, 0) == FK_ERR_URI_TOO_LONG);
    CHECK(parse_ex(s, n, 8000, 8, 0, 0) == FK_ERR_URI_TOO_LONG);
    CHECK(parse_ex(s, 8190, 8000, 8, 0, 0) == FK_NEED_MORE);
    CHECK(parse_ex(s, 8191, 8190, 8, 0, 0) == FK_ERR_URI_TOO_LONG);
    free(s);
    s = pad("GET / HTTP/1.1\r\nX: ", 'v', 1 << 20, "");
    n = strlen(s);
    CHECK(parse_ex(s, n, 0, 8, 0, 0) == FK_ERR_FIELD_TOO_LARGE);
    CHECK(parse_ex(s, n, 100, 8, 0, 0) == FK_ERR_FIELD_TOO_LARGE);
    CHECK(parse_ex(s, 16 + 8190, 100, 8, 0, 0) == FK_NEED_MORE);
    CHECK(parse_ex(s, 16 + 8191, 16 + 8190, 8, 0, 0) == FK_ERR_FIELD_TOO_LARGE);
    free(s);
    /* ... and a name that never ends too */
    s = pad("GET / HTTP/1.1\r\n", 'X', 9000, "");
    CHECK(parse_ex(s, strlen(s), 0, 8, 0, 0) == FK_ERR_FIELD_TOO_LARGE);
    free(s);

    /* field count: capacity in, count out; reported before the head ends */
    CHECK(parse_cap(REQ(H11 "A: 1\r\n"), 2) > 0 && req.num_headers == 2);
    CHECK(parse_cap(REQ(H11 "A: 1\r\nB: 2\r\n"), 2) == FK_ERR_TOO_MANY_FIELDS);
    CHECK(parse_cap("GET / HTTP/1.1\r\n" H11 "A: 1\r\nB", 2) == FK_ERR_TOO_MANY_FIELDS);
    CHECK(parse_cap("GET / HTTP/1.1\r\n" H11 "A: 1\r\n\r", 2) == FK_NEED_MORE);
    CHECK(parse_cap(REQ10(""), 0) > 0 && req.num_headers == 0);
    CHECK(parse_cap(REQ10("A: 1\r\n"), 0) == FK_ERR_TOO_MANY_FIELDS);
    CHECK(parse_ex(third, sizeof(third) - 1, sizeof(third) - 2, 2, 0, 0) ==
          FK_ERR_TOO_MANY_FIELDS);
}

/* ---- incremental parsing (last_len) ------------------------------------- */

static void test_incremental(void)
{
    static const char full[] = "\r\nPOST /u?x=1 HTTP/1.1\r\n" H11
                               "Content-Length: 3\r\nConnection: close\r\n\r\n";
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\0b";
    size_t n = strlen(full), i;
    int ok = 1;

    CHECK(parse_bytewise(full) == (int)n);
    CHECK(SLICE(path, "/u") && SLICE(query, "x=1") && req.content_length == 3);
    CHECK(req.flags == FK_REQ_HAS_BODY);
    /* every two-piece split ends in the same result as the whole */
    for (i = 1; i < n; i++) {
        if (parse_ex(full, i, 0, 64, 0, 0) != FK_NEED_MORE ||
            parse_ex(full, n, i, 64, 0, 0) != (int)n)
            ok = 0;
    }
    CHECK(ok);

    /* a bare CR or a control byte added to an open line is refused at once */
    CHECK(parse_ex("GET / HTTP/1.1\rX", 16, 15, 64, 0, 0) == FK_ERR_BAD_REQUEST);
    CHECK(parse_ex("GET / HTTP/1.1\r\nHost: a\rX", 25, 24, 64, 0, 0) == FK_ERR_BAD_REQUEST);
    CHECK(parse_ex(nul, sizeof(nul) - 1, 23, 64, 0, 0) == FK_ERR_BAD_REQUEST);
    CHECK(parse_ex("GET / HTTP/1.1\r\nHost: ab", 24, 23, 64, 0, 0) == FK_NEED_MORE);
    CHECK(parse_ex("GET / HTTP/1.1\r\nHost: a\r", 24, 23, 64, 0, 0) == FK_NEED_MORE);
    /* a line completed by the new bytes is checked in full */
    CHECK(parse_ex("GET / HTTP/1.1\r\nHo st: a\r\n", 26, 20, 64, 0, 0) == FK_ERR_BAD_REQUEST);
    CHECK(parse_ex("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, 26, 64, 0, 0) == 27);
    /* last_len not below len: parsed as new */
    CHECK(parse_ex("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, 27, 64, 0, 0) == 27);
    CHECK(parse_ex("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, 99, 64, 0, 0) == 27);
}

static void test_status_codes(void)
{
    CHECK(fk_status_http_code(FK_ERR_BAD_REQUEST) == 400);
    CHECK(fk_status_http_code(FK_ERR_URI_TOO_LONG) == 414);
    CHECK(fk_status_http_code(FK_ERR_FIELD_TOO_LARGE) == 431);
    CHECK(fk_status_http_code(FK_ERR_TOO_MANY_FIELDS) == 431);
    CHECK(fk_status_http_code(FK_ERR_VERSION) == 505);
    CHECK(fk_status_http_code(FK_ERR_NOT_IMPLEMENTED) == 501);
    CHECK(fk_status_http_code(FK_ERR_BODY_TOO_LARGE) == 413);
    CHECK(fk_status_http_code(FK_ERR_TIMEOUT) == 408);
    CHECK(fk_status_http_code(-99) == 400);
}

/* ---- chunked decoder ------------------------------------------------------ */

static char dec_out[1 << 16];
static size_t dec_len;
static char dec_rest[256];
static size_t dec_rest_len;

/* Decodes s[0 .. n) fed `step` bytes per call (0: all at once), each piece placed
 * against the guard page. Returns the final status; the decoded body is in
 * dec_out and the bytes after it in dec_rest. */
static ssize_t dechunk_n(const char *s, size_t n, size_t step)
{
    fk_chunked d;
    size_t off = 0;
    ssize_t r = FK_NEED_MORE;

    fk_chunked_init(&d);
    dec_len = dec_rest_len = 0;
    if (step == 0)
        step = n;
    while (off < n) {
        size_t k = n - off < step ? n - off : step, len = k;
        char *b = place(s + off, k);
        r = fk_chunked_decode(&d, b, &len);
        if (r == FK_ERR_BAD_REQUEST)
            return r;
        if (len > k || dec_len + len > sizeof(dec_out))
            return -100;
        memcpy(dec_out + dec_len, b, len);
        dec_len += len;
        off += k;
        if (r >= 0) {
            if ((size_t)r > sizeof(dec_rest) || len + (size_t)r > k)
                return -102;
            memcpy(dec_rest, b + len, (size_t)r);
            dec_rest_len = (size_t)r;
            /* what followed the body in later pieces is leftover too */
            if (n - off > sizeof(dec_rest) - dec_rest_len)
                return -103;
            memcpy(dec_rest + dec_rest_len, s + off, n - off);
            dec_rest_len += n - off;
            return (ssize_t)dec_rest_len;
        }
    }
    return r;
}

static ssize_t dechunk(const char *s, size_t step)
{
    return dechunk_n(s, strlen(s), step);
}

static int dec_is(const char *body)
{
    return dec_len == strlen(body) && memcmp(dec_out, body, dec_len) == 0;
}

static int rest_is(const char *rest)
{
    return dec_rest_len == strlen(rest) && memcmp(dec_rest, rest, dec_rest_len) == 0;
}

/* Same result whether fed whole, one byte at a time or in threes. */
static int dechunk_all_ways(const char *s, ssize_t want, const char *body, const char *rest)
{
    size_t steps[] = {0, 1, 3};
    size_t i;
    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        ssize_t r = dechunk(s, steps[i]);
        if (r != want)
            return 0;
        if (want >= 0 && !(dec_is(body) && rest_is(rest)))
            return 0;
    }
    return 1;
}

#define BAD FK_ERR_BAD_REQUEST

static void test_chunked(void)
{
    fk_chunked d;
    char buf[32];
    size_t len;
    char *s;

    CHECK(dechunk_all_ways("5\r\nhello\r\n0\r\n\r\n", 0, "hello", ""));
    CHECK(dechunk_all_ways("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 16,
                           "hello world", "GET / HTTP/1.1\r\n"));
    CHECK(dechunk_all_ways("0\r\n\r\n", 0, "", ""));
    CHECK(dechunk_all_ways("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", 0,
                           "0123456789abcdefghij", ""));
    CHECK(dechunk_all_ways("0005\r\nhello\r\n000\r\n\r\n", 0, "hello", ""));
    CHECK(dechunk_all_ways("00000000000000000000005\r\nhello\r\n0\r\n\r\n", 0, "hello", ""));
    CHECK(dechunk_all_ways("1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", 0, "\r\n", ""));
    CHECK(dechunk("5\r\nhel", 0) == FK_NEED_MORE && dec_is("hel"));
    CHECK(dechunk("5\r\nhello\r\n0\r\n", 0) == FK_NEED_MORE && dec_is("hello"));
    CHECK(dechunk("7fffffffffffffff\r\nabc", 0) == FK_NEED_MORE && dec_is("abc"));
    CHECK(dechunk("8000000000000000\r\n", 0) == BAD);
    CHECK(dechunk("10000000000000000\r\n", 0) == BAD);
    CHECK(dechunk("ffffffffffffffffffff\r\n", 0) == BAD);

    /* chunk-size syntax */
    CHECK(dechunk("\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("-5\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("+5\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("0x5\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk(" 5\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5 \r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5 x\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5x\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("g\r\n", 0) == BAD);
    CHECK(dechunk("5\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5\rhello\r\n0\r\n\r\n", 0) == BAD);

    /* chunk extensions */
    CHECK(dechunk_all_ways("5;a\r\nhello\r\n0;b=c\r\n\r\n", 0, "hello", ""));
    CHECK(dechunk_all_ways("5;a=b;c=\"d;e\\\"f\"\r\nhello\r\n0\r\n\r\n", 0, "hello", ""));
    CHECK(dechunk_all_ways("5 ; a = b ;\tc\t=\t\"\"\r\nhello\r\n0\r\n\r\n", 0, "hello", ""));
    CHECK(dechunk("5;a=b \r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a \r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk_all_ways("5;a ;b\r\nhello\r\n0\r\n\r\n", 0, "hello", ""));
    CHECK(dechunk_all_ways("5;a=\"\x80\\\t\"\r\nhello\r\n0\r\n\r\n", 0, "hello", ""));
    CHECK(dechunk("5;\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a=\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a=b c\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a b\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a=\"b\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;(a)\r\nhello\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5;a=b\n", 0) == BAD);
    CHECK(dechunk("5 ;a==b\r\n", 0) == BAD);

    /* CRLF after the data, exactly */
    CHECK(dechunk("5\r\nhelloX\r\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5\r\nhello\n0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5\r\nhello\rX0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("5\r\nhello0\r\n\r\n", 0) == BAD);
    CHECK(dechunk("3\r\nhello\r\n0\r\n\r\n", 0) == BAD);

    /* trailer section */
    CHECK(dechunk_all_ways("5\r\nhello\r\n0\r\nX-T: v\r\nY:\r\n\r\nrest", 4, "hello", "rest"));
    CHECK(dechunk_all_ways("0\r\nX-T:\tv \x80\r\n\r\n", 0, "", ""));
    CHECK(dechunk("0\r\nX-T v\r\n\r\n", 0) == BAD);
    CHECK(dechunk("0\r\nX-T : v\r\n\r\n", 0) == BAD);
    CHECK(dechunk("0\r\n: v\r\n\r\n", 0) == BAD);
    CHECK(dechunk("0\r\nX: a\r\n b\r\n\r\n", 0) == BAD);
    CHECK(dechunk_n("0\r\nX: a\0\r\n\r\n", 12, 0) == BAD && sizeof("0\r\nX: a\0\r\n\r\n") == 13);
    CHECK(dechunk("0\r\nX: a\n\r\n", 0) == BAD);
    CHECK(dechunk("0\r\nX: a\r\r\n", 0) == BAD);
    CHECK(dechunk("0\r\n\n", 0) == BAD);
    CHECK(dechunk("0\r\n\rX", 0) == BAD);
    CHECK(dechunk("0\r\nX: a\r\n", 0) == FK_NEED_MORE);

    /* FK_CHUNK_LINE_MAX bytes before the CR of a size line are fine, not one more */
    s = pad("", '0', FK_CHUNK_LINE_MAX - 1, "1\r\nx\r\n0\r\n\r\n");
    CHECK(dechunk(s, 0) == 0 && dec_is("x"));
    free(s);
    s = pad("", '0', FK_CHUNK_LINE_MAX, "1\r\nx\r\n0\r\n\r\n");
    CHECK(dechunk(s, 0) == BAD);
    free(s);
    s = pad("1;a=", 'b', FK_CHUNK_LINE_MAX, "\r\n");
    CHECK(dechunk(s, 7) == BAD);
    free(s);

    /* FK_CHUNK_TRAILER_MAX bytes of trailer section, CRLFs included */
    s = pad("0\r\nX: ", 'v', FK_CHUNK_TRAILER_MAX - 7, "\r\n\r\n");
    CHECK(dechunk(s, 0) == 0);
    free(s);
    s = pad("0\r\nX: ", 'v', FK_CHUNK_TRAILER_MAX - 6, "\r\n\r\n");
    CHECK(dechunk(s, 0) == BAD);
    free(s);

    /* after the end every byte is leftover; after an error every call fails */
    fk_chunked_init(&d);
    memcpy(buf, "0\r\n\r\n", 5);
    len = 5;
    CHECK(fk_chunked_decode(&d, buf, &len) == 0 && len == 0);
    memcpy(buf, "abc", 3);
    len = 3;
    CHECK(fk_chunked_decode(&d, buf, &len) == 3 && len == 0 && memcmp(buf, "abc", 3) == 0);
    fk_chunked_init(&d);
    memcpy(buf, "z", 1);
    len = 1;
    CHECK(fk_chunked_decode(&d, buf, &len) == BAD);
    memcpy(buf, "0\r\n\r\n", 5);
    len = 5;
    CHECK(fk_chunked_decode(&d, buf, &len) == BAD);
    fk_chunked_init(&d);
    len = 0;
    CHECK(fk_chunked_decode(&d, buf, &len) == FK_NEED_MORE && len == 0);

    /* limit: a size line announcing more than is left is refused at its LF,
     * before its data; up to the limit exactly is decoded */
    fk_chunked_init(&d);
    d.limit = 5;
    memcpy(buf, "3\r\nabc\r\n3\r", 10);
    len = 10;
    CHECK(fk_chunked_decode(&d, buf, &len) == FK_NEED_MORE && len == 3);
    memcpy(buf, "\n", 1);
    len = 1;
    CHECK(fk_chunked_decode(&d, buf, &len) == FK_ERR_BODY_TOO_LARGE && len == 0);
    fk_chunked_init(&d);
    d.limit = 5;
    memcpy(buf, "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 20);
    len = 20;
    CHECK(fk_chunked_decode(&d, buf, &len) == 0 && len == 5 && memcmp(buf, "abcde", 5) == 0);
    fk_chunked_init(&d);
    d.limit = 100;
    memcpy(buf, "7fffffffffffffff\r\n", 18);
    len = 18;
    CHECK(fk_chunked_decode(&d, buf, &len) == FK_ERR_BODY_TOO_LARGE && len == 0);
}

int main(void)
{
    test_request_line();
    test_target();
    test_fields();
    test_host();
    test_content_length();
    test_transfer_encoding();
    test_connection();
    test_expect();
    test_limits();
    test_incremental();
    test_status_codes();
    test_chunked();
    unplace();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
