/* Connections open per client address, for a per-address cap.
 *
 * A fixed open-addressing table of (address, count), sized at creation for
 * the most connections that can be open at once, so that it never grows and
 * no client can make it allocate: at most `capacity` distinct addresses are
 * counted at a time (one per open connection). IPv4 and IPv6 addresses are
 * counted (an IPv4-mapped IPv6 address as its IPv4 address); other families
 * (unix sockets) are not. Owned and used by the loop's thread only. */
#ifndef FK_PEERS_H
#define FK_PEERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    uint8_t key[17]; /* family byte (4 or 6), then the address; all zero when empty */
    uint32_t count;
} fk_peer_entry;

typedef struct {
    fk_peer_entry *entries;
    size_t mask; /* size - 1, a power of two at least twice the capacity */
} fk_peers;

/* Sets up a table for capacity addresses; 0, or -1 when out of memory. */
int fk_peers_init(fk_peers *p, size_t capacity);
void fk_peers_free(fk_peers *p);

/* Counts one more connection from addr unless it has limit already: returns 1
 * when counted, 0 when at the limit, and 1 (nothing counted) for an address
 * of another family. */
int fk_peers_add(fk_peers *p, const struct sockaddr_storage *addr, uint32_t limit);

/* One connection from addr closed (counted by fk_peers_add). */
void fk_peers_remove(fk_peers *p, const struct sockaddr_storage *addr);

/* Connections counted from addr now. */
uint32_t fk_peers_count(const fk_peers *p, const struct sockaddr_storage *addr);

#endif
