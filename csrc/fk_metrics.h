/* Per-worker counters in the slot shared with the master: written by the
 * worker's loop only, read by the master without locks (aligned 64-bit words).
 * forker/shm.py mirrors this layout. */
#ifndef FK_METRICS_H
#define FK_METRICS_H

#include <stdint.h>

/* word offsets in the slot */
enum {
    FK_SLOT_HEARTBEAT = 0,    /* CLOCK_MONOTONIC ms of the loop's last turn */
    FK_SLOT_REQUESTS = 1,     /* requests answered */
    FK_SLOT_BUSY_SINCE = 2,   /* ms when the running handler call began, 0 idle */
    FK_SLOT_TEXT = 3,         /* words 3..7: "METHOD target" of that call, 40 bytes */
    FK_SLOT_BYTES_IN = 8,     /* bytes received */
    FK_SLOT_BYTES_OUT = 9,    /* bytes sent (heads, bodies, files) */
    FK_SLOT_STATUS = 10,      /* words 10..14: responses by class 1xx..5xx */
    FK_SLOT_CONN_OPEN = 15,   /* connections open now */
    FK_SLOT_CONN_TOTAL = 16,  /* connections accepted */
    FK_SLOT_PARSE_ERRORS = 17, /* requests refused by the parser or a limit */
    FK_SLOT_HANDLER = 18,     /* histogram of handler time (see below) */
    FK_SLOT_QUEUE = 34,       /* histogram of queue time: accept (or request
                                 complete) to handler call */
    FK_SLOT_EVICTED = 50,     /* connections closed to give their slot to a new one */
    FK_SLOT_ADDR_REFUSED = 51, /* connections closed at accept: their address had
                                  max_per_addr open already */
    FK_SLOT_SHED = 52,        /* connections closed to bring the output the worker
                                 buffers for slow readers back under max_output */
    FK_SLOT_WORDS = 64,
};

/* A histogram: FK_HIST_BUCKETS counts (not cumulative) for the bounds below
 * plus +Inf, then the sum in microseconds. 16 words. */
#define FK_HIST_BUCKETS 15
#define FK_HIST_SUM FK_HIST_BUCKETS

static const uint64_t fk_hist_bounds_us[FK_HIST_BUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000,
};

static inline void fk_hist_add(volatile uint64_t *hist, uint64_t us)
{
    int i = 0;
    while (i < FK_HIST_BUCKETS - 1 && us > fk_hist_bounds_us[i])
        i++;
    hist[i]++;
    hist[FK_HIST_SUM] += us;
}

#endif
