/* CLOCK_MONOTONIC in milliseconds and microseconds: the loop's deadlines, the
 * handler and queue histograms, the streamed body's waits. Any thread. */
#ifndef FK_CLOCK_H
#define FK_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t fk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t fk_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif
