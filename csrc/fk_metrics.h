/* Per-worker counters in the slot shared with the master: written by the
 * worker's loop (and, with handler threads, the busy mark of the engine's
 * loop thread), read by the master without locks (aligned 64-bit words). */
#ifndef FK_METRICS_H
#define FK_METRICS_H

#include <stdint.h>

/* The shared worker slot: FK_SLOT_WORDS 64-bit words (512 bytes) per worker,
 * in memory the master maps before forking (forker/shm.py). Each line is a
 * field: its name, its first word, its length in words. The list makes the
 * FK_SLOT_<name> word offsets below and the table forker._worker.slot_layout()
 * returns, against which tests/test_metrics.py checks forker/shm.py. */
#define FK_SLOT_FIELDS(X)                                                                \
    X(HEARTBEAT, 0, 1)     /* CLOCK_MONOTONIC ms of the loop's last turn */              \
    X(REQUESTS, 1, 1)      /* requests answered */                                       \
    X(BUSY_SINCE, 2, 1)    /* ms when the running handler call began, 0 idle */          \
    X(TEXT, 3, 5)          /* "METHOD target" of that call, NUL padded */                \
    X(BYTES_IN, 8, 1)      /* bytes received */                                          \
    X(BYTES_OUT, 9, 1)     /* bytes sent (heads, bodies, files) */                       \
    X(STATUS, 10, 5)       /* responses by class 1xx..5xx */                             \
    X(CONN_OPEN, 15, 1)    /* connections open now */                                    \
    X(CONN_TOTAL, 16, 1)   /* connections accepted */                                    \
    X(PARSE_ERRORS, 17, 1) /* requests refused by the parser or a limit */               \
    X(HANDLER, 18, 16)     /* histogram of handler time (see below) */                   \
    X(QUEUE, 34, 16)       /* histogram of queue time: accept (or request complete) to   \
                              handler call */                                            \
    X(EVICTED, 50, 1)      /* connections closed to give their slot to a new one */      \
    X(ADDR_REFUSED, 51, 1) /* connections closed at accept: their address had            \
                              max_per_addr open already */                               \
    X(SHED, 52, 1)         /* connections closed to bring the output the worker buffers  \
                              for slow readers back under max_output */

/* word offsets in the slot */
enum {
#define FK_SLOT_OFFSET(name, word, words) FK_SLOT_##name = word,
    FK_SLOT_FIELDS(FK_SLOT_OFFSET)
#undef FK_SLOT_OFFSET
    FK_SLOT_WORDS = 64,
};

#define FK_SLOT_BYTES (FK_SLOT_WORDS * 8)
#define FK_SLOT_TEXT_SIZE 40 /* bytes at FK_SLOT_TEXT: words 3..7 */

/* The statsd area: FK_STATS_WORDS 64-bit words per worker, in memory the master
 * maps once statsd_host is set (forker/shm.py StatsTable, forker/statsd.py),
 * indexed like the slots. The loop writes it only when cfg.stats points to it,
 * at the end of each request it answered (the same requests FK_SLOT_REQUESTS
 * counts); the master sends what the counts gained since it last looked, and
 * the durations written since. Laid out by FK_STATS_FIELDS as the slot is. */
#define FK_STATS_FIELDS(X)                                                                \
    X(TIMED, 0, 1)          /* requests ended so far; the next one's duration goes to   \
                               DURATIONS[TIMED % FK_STATS_RING], then TIMED moves on */ \
    X(LOGS, 1, 4)           /* error log records: critical, error, warning, exception  \
                               (written by Python, forker/statsd.py) */                 \
    X(CODES, 8, 400)        /* requests by status code, FK_STATS_FIRST_CODE on */        \
    X(DURATIONS, 512, 512)  /* ring of the latest durations in us: from the hand-over   \
                               to Python (0 for the loop's own answers) to the end of    \
                               the response */

enum {
#define FK_STATS_OFFSET(name, word, words) FK_STATS_##name = word,
    FK_STATS_FIELDS(FK_STATS_OFFSET)
#undef FK_STATS_OFFSET
    FK_STATS_WORDS = 1024,
    FK_STATS_RING = 512,       /* words of DURATIONS */
    FK_STATS_FIRST_CODE = 200, /* CODES[0]: final statuses are 200 to 599 */
    FK_STATS_CODES_COUNT = 400,
};

#define FK_STATS_BYTES (FK_STATS_WORDS * 8)

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
