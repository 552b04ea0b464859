/* Connections open per client address (see fk_peers.h). */
#include "fk_peers.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* The key of addr, 0 when its family is not counted. */
static int peer_key(const struct sockaddr_storage *addr, uint8_t key[17])
{
    memset(key, 0, 17);
    if (addr->ss_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)addr)->sin_addr, 4);
        return 1;
    }
    if (addr->ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            key[0] = 4;
            memcpy(key + 1, a + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a, 16);
        }
        return 1;
    }
    return 0;
}

static size_t home(const fk_peers *p, const uint8_t key[17])
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (int i = 0; i < 17; i++) {
        h ^= key[i];
        h *= 1099511628211u;
    }
    return (size_t)(h ^ (h >> 32)) & p->mask;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find(const fk_peers *p, const uint8_t key[17])
{
    size_t i = home(p, key);
    while (p->entries[i].key[0] != 0 && memcmp(p->entries[i].key, key, 17) != 0)
        i = (i + 1) & p->mask;
    return i;
}

int fk_peers_init(fk_peers *p, size_t capacity)
{
    size_t size = 16;
    while (size < 2 * capacity)
        size *= 2;
    p->entries = calloc(size, sizeof(fk_peer_entry));
    p->mask = size - 1;
    return p->entries == NULL ? -1 : 0;
}

void fk_peers_free(fk_peers *p)
{
    free(p->entries);
    p->entries = NULL;
}

int fk_peers_add(fk_peers *p, const struct sockaddr_storage *addr, uint32_t limit)
{
    uint8_t key[17];
    if (!peer_key(addr, key))
        return 1;
    fk_peer_entry *e = &p->entries[find(p, key)];
    if (e->key[0] == 0) {
        memcpy(e->key, key, 17);
        e->count = 0;
    }
    if (e->count >= limit)
        return 0;
    e->count++;
    return 1;
}

void fk_peers_remove(fk_peers *p, const struct sockaddr_storage *addr)
{
    uint8_t key[17];
    if (!peer_key(addr, key))
        return;
    size_t i = find(p, key);
    if (p->entries[i].key[0] == 0 || --p->entries[i].count > 0)
        return;
    /* the last connection from it: empty the slot, shifting back the entries
     * of the probe run after it whose home does not lie between (linear
     * probing needs no tombstone then) */
    memset(&p->entries[i], 0, sizeof(p->entries[i]));
    size_t j = i;
    for (;;) {
        j = (j + 1) & p->mask;
        if (p->entries[j].key[0] == 0)
            return;
        size_t k = home(p, p->entries[j].key);
        int between = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!between) {
            p->entries[i] = p->entries[j];
            memset(&p->entries[j], 0, sizeof(p->entries[j]));
            i = j;
        }
    }
}

uint32_t fk_peers_count(const fk_peers *p, const struct sockaddr_storage *addr)
{
    uint8_t key[17];
    if (!peer_key(addr, key))
        return 0;
    const fk_peer_entry *e = &p->entries[find(p, key)];
    return e->key[0] == 0 ? 0 : e->count;
}
