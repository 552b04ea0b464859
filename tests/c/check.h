/* What the C unit tests share: the CHECK macro with its counters, and inputs
 * placed right before an inaccessible page, so that reading one byte past
 * them faults. Each test binary includes this once. */
#ifndef TESTS_C_CHECK_H
#define TESTS_C_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) {                                                                    \
            passed++;                                                                  \
        } else {                                                                       \
            failed++;                                                                  \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                              \
    } while (0)

static char *map_base;
static size_t map_len;

/* Unmaps the last placed copy. */
static inline void unplace(void)
{
    if (map_base != NULL)
        munmap(map_base, map_len);
    map_base = NULL;
}

/* Copies s[0 .. n) so that it ends right before an inaccessible page. The copy
 * stays valid until the next call. */
static inline char *place(const void *s, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (n + page - 1) / page * page;
    char *end;

    unplace();
    if (body == 0)
        body = page;
    map_len = body + page;
    map_base = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map_base == MAP_FAILED || mprotect(map_base + body, page, PROT_NONE) != 0) {
        perror("mmap");
        exit(2);
    }
    end = map_base + body;
    if (n > 0)
        memcpy(end - n, s, n);
    return end - n;
}

#endif
