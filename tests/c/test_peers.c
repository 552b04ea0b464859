/* Unit tests of fk_peers (connections per client address): counting against a
 * limit, families, IPv4-mapped addresses, and removal from a full probe run
 * checked against a model over many random operations. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "fk_peers.h"
#include "check.h"

static struct sockaddr_storage v4(uint32_t host)
{
    struct sockaddr_storage s;
    memset(&s, 0, sizeof(s));
    struct sockaddr_in *a = (struct sockaddr_in *)&s;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(host);
    return s;
}

static struct sockaddr_storage v6(const char *text)
{
    struct sockaddr_storage s;
    memset(&s, 0, sizeof(s));
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &a->sin6_addr);
    return s;
}

static void test_limit_and_families(void)
{
    fk_peers p;
    CHECK(fk_peers_init(&p, 8) == 0);
    struct sockaddr_storage a = v4(0x7f000001), b = v4(0x7f000002);
    CHECK(fk_peers_add(&p, &a, 2) == 1);
    CHECK(fk_peers_add(&p, &a, 2) == 1);
    CHECK(fk_peers_add(&p, &a, 2) == 0); /* at the limit */
    CHECK(fk_peers_add(&p, &b, 2) == 1); /* another address has its own */
    CHECK(fk_peers_count(&p, &a) == 2 && fk_peers_count(&p, &b) == 1);
    struct sockaddr_storage mapped = v6("::ffff:127.0.0.1");
    CHECK(fk_peers_add(&p, &mapped, 2) == 0); /* the same client as a */
    fk_peers_remove(&p, &a);
    CHECK(fk_peers_add(&p, &mapped, 2) == 1);
    struct sockaddr_storage six = v6("2001:db8::1");
    CHECK(fk_peers_add(&p, &six, 1) == 1 && fk_peers_add(&p, &six, 1) == 0);
    struct sockaddr_storage unix_peer;
    memset(&unix_peer, 0, sizeof(unix_peer));
    unix_peer.ss_family = AF_UNIX;
    for (int i = 0; i < 5; i++)
        CHECK(fk_peers_add(&p, &unix_peer, 1) == 1); /* not counted */
    CHECK(fk_peers_count(&p, &unix_peer) == 0);
    fk_peers_free(&p);
}

/* Random adds and removes of 40 addresses in a table for 64, against counts
 * kept aside: removal must never lose another address's count. */
static void test_against_a_model(void)
{
    enum { N = 40 };
    fk_peers p;
    CHECK(fk_peers_init(&p, 64) == 0);
    uint32_t model[N] = {0};
    unsigned seed = 12345;
    int mismatches = 0;
    for (int step = 0; step < 200000; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % N);
        struct sockaddr_storage a = v4(0x0a000000u + (uint32_t)i * 7919u);
        if ((seed >> 20) & 1) {
            if (fk_peers_add(&p, &a, 3) == 1)
                model[i]++;
            else if (model[i] != 3)
                mismatches++;
        } else if (model[i] > 0) {
            fk_peers_remove(&p, &a);
            model[i]--;
        }
        for (int k = 0; k < N; k++) {
            struct sockaddr_storage b = v4(0x0a000000u + (uint32_t)k * 7919u);
            if (fk_peers_count(&p, &b) != model[k])
                mismatches++;
        }
    }
    CHECK(mismatches == 0);
    fk_peers_free(&p);
}

int main(void)
{
    test_limit_and_families();
    test_against_a_model();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
