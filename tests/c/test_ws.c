/* Unit tests of the websocket frame decoder (fk_ws.c): messages, fragments,
 * control frames between fragments, every refusal with its close code, the
 * UTF-8 check, the server's frame header; each input also fed split at every
 * byte and a byte at a time, which must give the same events. The driver
 * keeps its buffer as the loop keeps c->in (fk_loop_ws.c). Build with ASan
 * and UBSan (see the Makefile). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fk_ws.h"
#include "check.h"

#define LOG_MAX 8192

/* Whether run() decodes as a connection that negotiated permessage-deflate. */
static int deflate_mode;

/* Feeds in[0 .. len) in pieces cut at cuts[] (increasing offsets), decoding as
 * the loop does, and writes what happened to log: M<opcode>:<bytes> per
 * message (Z<opcode>:<bytes> when compressed: RSV1 on its first frame),
 * C<opcode>:<code>:<payload> per control frame, E<error> at the end
 * of a failed stream. */
static void run(const char *in, size_t len, const size_t *cuts, size_t ncuts, uint64_t max,
                char *log)
{
    fk_ws_decoder d;
    char *buf = malloc(len + 1);
    size_t end = 0, raw_off = 0, at = 0, n = 0;
    fk_ws_init(&d, max);
    d.deflate = (uint8_t)deflate_mode;
    log[0] = 0;
    for (size_t piece = 0; piece <= ncuts; piece++) {
        size_t stop = piece < ncuts ? cuts[piece] : len;
        memcpy(buf + end, in + at, stop - at);
        end += stop - at;
        at = stop;
        for (;;) {
            size_t used = 0;
            int r = fk_ws_decode(&d, buf, raw_off, end - raw_off, &used);
            CHECK(used <= end - raw_off);
            CHECK(d.msg_len <= raw_off + used);
            raw_off += used;
            if (r == FK_WS_MORE) {
                CHECK(raw_off == end);
                end = raw_off = (size_t)d.msg_len; /* the frames' headers are forgotten */
                break;
            }
            if (r == FK_WS_MESSAGE) {
                n += (size_t)snprintf(log + n, LOG_MAX - n, "%c%d:", d.msg_compressed ? 'Z' : 'M',
                                      d.msg_opcode);
                for (size_t i = 0; i < d.msg_len && n < LOG_MAX - 8; i++)
                    log[n++] = buf[i];
                log[n++] = ';';
                log[n] = 0;
                memmove(buf, buf + raw_off, end - raw_off);
                end -= raw_off;
                raw_off = 0;
                fk_ws_message_taken(&d);
                continue;
            }
            if (r == FK_WS_CONTROL) {
                n += (size_t)snprintf(log + n, LOG_MAX - n, "C%d:%d:%.*s;", d.ctl_opcode,
                                      d.ctl_opcode == FK_WS_CLOSE ? d.close_code : 0,
                                      (int)d.ctl_len, d.ctl);
                continue;
            }
            n += (size_t)snprintf(log + n, LOG_MAX - n, "E%d", r);
            CHECK(fk_ws_decode(&d, buf, raw_off, end - raw_off, &used) == FK_WS_ERR_PROTOCOL);
            free(buf);
            return;
        }
    }
    free(buf);
}

/* A masked client frame of payload p[0 .. n) appended at out; returns its length. */
static size_t frame(char *out, int b0, const char *p, size_t n)
{
    static const unsigned char mask[4] = {0x12, 0x9a, 0x00, 0xf3};
    size_t h = 0;
    out[h++] = (char)b0;
    if (n < 126) {
        out[h++] = (char)(0x80 | n);
    } else if (n < 65536) {
        out[h++] = (char)(0x80 | 126);
        out[h++] = (char)(n >> 8);
        out[h++] = (char)n;
    } else {
        out[h++] = (char)(0x80 | 127);
        for (int i = 7; i >= 0; i--)
            out[h++] = (char)((uint64_t)n >> (8 * i));
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        out[h + i] = (char)(p[i] ^ mask[i & 3]);
    return h + n;
}

/* Checks that in gives want whole, split once at every byte, and a byte at a time. */
static void expect(const char *in, size_t len, uint64_t max, const char *want)
{
    static char log[LOG_MAX];
    size_t *cuts = malloc((len + 1) * sizeof(size_t));
    run(in, len, NULL, 0, max, log);
    if (strcmp(log, want) != 0) {
        fprintf(stderr, "whole: got %s, want %s\n", log, want);
        CHECK(0);
    }
    for (size_t cut = 1; cut < len; cut++) {
        run(in, len, &cut, 1, max, log);
        if (strcmp(log, want) != 0) {
            fprintf(stderr, "split at %zu: got %s, want %s\n", cut, log, want);
            CHECK(0);
        }
    }
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    run(in, len, cuts, len > 0 ? len - 1 : 0, max, log);
    if (strcmp(log, want) != 0) {
        fprintf(stderr, "bytewise: got %s, want %s\n", log, want);
        CHECK(0);
    }
    CHECK(1);
    free(cuts);
}

static void test_messages(void)
{
    char in[4096];
    size_t n = 0;
    n += frame(in + n, 0x81, "hello", 5);
    n += frame(in + n, 0x82, "\x03\x01\x02", 3);
    n += frame(in + n, 0x81, "", 0);
    expect(in, n, 1000, "M1:hello;M2:\x03\x01\x02;M1:;");

    /* fragments with a ping and a pong between them; a character split across */
    n = 0;
    n += frame(in + n, 0x01, "a\xc3", 2);
    n += frame(in + n, 0x89, "ping!", 5);
    n += frame(in + n, 0x00, "\xa9", 1);
    n += frame(in + n, 0x8A, "", 0);
    n += frame(in + n, 0x80, "bc", 2);
    n += frame(in + n, 0x88, "\x03\xe8" "bye", 5);
    expect(in, n, 1000, "C9:0:ping!;C10:0:;M1:a\xc3\xa9" "bc;C8:1000:\x03\xe8" "bye;");

    /* 16- and 64-bit lengths */
    static char big[70000];
    static char in2[70300];
    static char log[LOG_MAX];
    memset(big, 'x', sizeof(big));
    size_t m = frame(in2, 0x82, big, 200);
    run(in2, m, NULL, 0, 100000, log);
    CHECK(strncmp(log, "M2:xxx", 6) == 0 && strlen(log) == 3 + 200 + 1);
    m = frame(in2, 0x82, big, 70000);
    CHECK(m == 70000 + 14);
    size_t cuts[3] = {1, 9, 30000};
    run(in2, m, cuts, 3, 100000, log); /* the log keeps the first LOG_MAX - 8 bytes */
    CHECK(strncmp(log, "M2:xxx", 6) == 0 && strspn(log + 3, "x") >= LOG_MAX - 16);
    run(in2, m, cuts, 3, 69999, log);
    CHECK(strcmp(log, "E-2") == 0);

    /* a close without a code is 1005 to the application */
    n = frame(in, 0x88, "", 0);
    expect(in, n, 1000, "C8:1005:;");
}

static void test_refusals(void)
{
    char in[512];
    size_t n;
    char p[200];
    memset(p, 'p', sizeof(p));
    /* unmasked: refused at its second byte */
    expect("\x81\x05hello", 7, 1000, "E-1");
    n = frame(in, 0xC1, "x", 1); /* RSV1 */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x83, "x", 1); /* reserved opcode */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x8B, "x", 1); /* reserved control opcode */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x89, p, 126); /* control over 125 */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x09, "x", 1); /* fragmented control */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x80, "x", 1); /* continuation of nothing */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x01, "a", 1);
    n += frame(in + n, 0x81, "b", 1); /* new message inside one */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x88, "\x03", 1); /* close payload of one byte */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x88, "\x03\xed", 2); /* close code 1005 */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x88, "\x03\xe7", 2); /* 999 */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x88, "\x13\x88", 2); /* 5000 */
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x88, "\x0b\xb8", 2); /* 3000 is fine */
    expect(in, n, 1000, "C8:3000:\x0b\xb8;");
    /* a 64-bit length with its top bit set */
    expect("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04", 14, 1000, "E-1");
    /* too big: one frame, then fragments that pass only together */
    n = frame(in, 0x82, p, 101);
    expect(in, n, 100, "E-2");
    n = frame(in, 0x02, p, 60);
    n += frame(in + n, 0x80, p, 41);
    expect(in, n, 100, "E-2");
    n = frame(in, 0x02, p, 60);
    n += frame(in + n, 0x80, p, 40);
    run(in, n, NULL, 0, 100, p); /* exactly the limit */
    CHECK(strncmp(p, "M2:", 3) == 0);
    /* a 64-bit length far past the limit is refused from its header alone */
    expect("\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00\x01\x02\x03\x04", 14, 1 << 20, "E-2");
    /* UTF-8 */
    n = frame(in, 0x81, "\xff", 1);
    expect(in, n, 1000, "E-3");
    n = frame(in, 0x81, "\xed\xa0\x80", 3); /* surrogate */
    expect(in, n, 1000, "E-3");
    n = frame(in, 0x81, "\xc0\xaf", 2); /* overlong */
    expect(in, n, 1000, "E-3");
    n = frame(in, 0x81, "ok\xe2\x82", 4); /* ends inside a character */
    expect(in, n, 1000, "E-3");
    n = frame(in, 0x88, "\x03\xe8\xc0\xaf", 4); /* invalid reason */
    expect(in, n, 1000, "E-3");
    n = frame(in, 0x82, "\xff", 1); /* binary is not checked */
    expect(in, n, 1000, "M2:\xff;");
}

/* permessage-deflate (RFC 7692): RSV1 on a data message's first frame marks
 * it compressed when negotiated, and is 1002 anywhere else. */
static void test_deflate(void)
{
    char in[512];
    size_t n;
    /* not negotiated: RSV1 on any frame is a protocol error */
    deflate_mode = 0;
    n = frame(in, 0xC2, "x", 1);
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x01, "a", 1);
    n += frame(in + n, 0xC0, "b", 1);
    expect(in, n, 1000, "E-1");
    deflate_mode = 1;
    /* negotiated: compressed and plain messages side by side; a compressed
     * text is not checked as UTF-8 (its inflated form is, by the caller) */
    n = frame(in, 0xC1, "\xff\xfe", 2);
    n += frame(in + n, 0x81, "plain", 5);
    n += frame(in + n, 0xC2, "\x01\x02", 2);
    expect(in, n, 1000, "Z1:\xff\xfe;M1:plain;Z2:\x01\x02;");
    /* fragmented: RSV1 on the first frame only, a ping between; a compressed
     * text may end inside a (would-be) character */
    n = frame(in, 0x41, "ab\xe2", 3);
    n += frame(in + n, 0x89, "p", 1);
    n += frame(in + n, 0x80, "\x82", 1);
    n += frame(in + n, 0x81, "\xc3", 1); /* the next message is plain again: checked */
    expect(in, n, 1000, "C9:0:p;Z1:ab\xe2\x82;E-3");
    /* RSV1 on a continuation, on control frames: 1002 */
    n = frame(in, 0x41, "a", 1);
    n += frame(in + n, 0xC0, "b", 1);
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x01, "a", 1);
    n += frame(in + n, 0xC0, "b", 1);
    expect(in, n, 1000, "E-1");
    n = frame(in, 0xC9, "x", 1);
    expect(in, n, 1000, "E-1");
    n = frame(in, 0xC8, "\x03\xe8", 2);
    expect(in, n, 1000, "E-1");
    n = frame(in, 0xCA, "", 0);
    expect(in, n, 1000, "E-1");
    /* RSV2 and RSV3 stay refused */
    n = frame(in, 0xA2, "x", 1);
    expect(in, n, 1000, "E-1");
    n = frame(in, 0x92, "x", 1);
    expect(in, n, 1000, "E-1");
    n = frame(in, 0xE2, "x", 1);
    expect(in, n, 1000, "E-1");
    /* the limit bounds the compressed bytes as any message's */
    char p[200];
    memset(p, 'p', sizeof(p));
    n = frame(in, 0xC2, p, 101);
    expect(in, n, 100, "E-2");
    deflate_mode = 0;
}

static void test_utf8(void)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"plain ascii, long enough for the word loop", 1},
        {"\xc2\x80\xdf\xbf", 1},
        {"\xe0\xa0\x80\xef\xbf\xbf", 1},
        {"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 1},
        {"\xc1\xbf", 0},
        {"\xe0\x9f\xbf", 0},
        {"\xed\xbf\xbf", 0},
        {"\xf0\x8f\xbf\xbf", 0},
        {"\xf4\x90\x80\x80", 0},
        {"\xf5\x80\x80\x80", 0},
        {"\x80", 0},
        {"abcdefgh\xff", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fk_utf8 u = {0, 0, 0};
        int r = fk_utf8_feed(&u, (const unsigned char *)cases[i].s, strlen(cases[i].s));
        CHECK((r == 0 && u.need == 0) == cases[i].ok);
    }
}

static void test_header(void)
{
    unsigned char h[FK_WS_SERVER_HEADER_MAX];
    CHECK(fk_ws_frame_header(h, 1, 0, FK_WS_TEXT, 5) == 2 && h[0] == 0x81 && h[1] == 5);
    CHECK(fk_ws_frame_header(h, 1, 1, FK_WS_TEXT, 5) == 2 && h[0] == 0xC1 && h[1] == 5);
    CHECK(fk_ws_frame_header(h, 1, 0, FK_WS_BINARY, 125) == 2 && h[1] == 125);
    CHECK(fk_ws_frame_header(h, 1, 0, FK_WS_BINARY, 126) == 4 && h[1] == 126 && h[2] == 0 &&
          h[3] == 126);
    CHECK(fk_ws_frame_header(h, 1, 0, FK_WS_BINARY, 65535) == 4 && h[2] == 0xff && h[3] == 0xff);
    CHECK(fk_ws_frame_header(h, 0, 0, FK_WS_BINARY, 65536) == 10 && h[0] == 0x02 && h[1] == 127 &&
          h[7] == 1 && h[8] == 0 && h[9] == 0);
    CHECK(fk_ws_close_code_valid(1000) && fk_ws_close_code_valid(4999) &&
          !fk_ws_close_code_valid(1006) && !fk_ws_close_code_valid(1015) &&
          !fk_ws_close_code_valid(2999));
}

int main(void)
{
    test_messages();
    test_refusals();
    test_deflate();
    test_utf8();
    test_header();
    unplace();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
