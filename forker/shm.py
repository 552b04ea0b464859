"""Memory shared between the master and its workers: one 512-byte slot per live
worker, in one anonymous shared mapping created before the first fork; and,
once statsd is configured, an 8 KiB statsd area per slot index (StatsTable).

A worker's C loop writes its slot, laid out once in csrc/fk_metrics.h
(FK_SLOT_FIELDS); the constants below are checked against the table the engine
exports of it (forker._worker.slot_layout(), tests/test_metrics.py). The
master only reads it, to check liveness and to report how many requests each
worker served. Slots are handed out from a free list, so a worker that is still
draining after a reload keeps its slot while its successor gets another."""

from __future__ import annotations

import mmap
import struct

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import List, NamedTuple, Tuple
else:
    from ._namedtuple import NamedTuple

SLOT_SIZE = 512  # FK_SLOT_BYTES: FK_SLOT_WORDS 64-bit words
HEARTBEAT = 0  # uint64, CLOCK_MONOTONIC ms of the loop's last turn
REQUESTS = 8  # uint64, requests served so far
BUSY_SINCE = 16  # uint64, CLOCK_MONOTONIC ms when the running handler call began, 0 idle
REQUEST_TEXT = 24  # optional: up to 40 bytes "METHOD target" of that call, NUL padded
REQUEST_TEXT_SIZE = 40  # FK_SLOT_TEXT_SIZE, words 3..7; the counters follow

_COUNTERS = struct.Struct("=QQQ")

# The loop's counters (csrc/fk_metrics.h), from word 8 of the slot on.
METRICS = 64  # FK_SLOT_BYTES_IN * 8
HIST_BUCKETS = 15  # FK_HIST_BUCKETS: counts per bucket (not cumulative), +Inf last
HIST_BOUNDS_US = (100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
                  500000, 1000000, 2500000)  # fk_hist_bounds_us
_HIST_WORDS = HIST_BUCKETS + 1  # the buckets, then the sum in microseconds
_METRICS = struct.Struct(f"=QQ5QQQQ{_HIST_WORDS}Q{_HIST_WORDS}QQQQ")


class SlotState(NamedTuple):
    heartbeat_ms: int
    requests: int
    busy_since_ms: int


class SlotCounters(NamedTuple):
    """Everything a worker's loop counts. Each word is read atomically, the set
    is not: a histogram's sum may be a request ahead of its buckets."""

    requests: int
    bytes_in: int
    bytes_out: int
    responses: Tuple[int, ...]  # by class: 1xx, 2xx, 3xx, 4xx, 5xx
    connections_open: int
    connections_total: int
    parse_errors: int
    handler: Tuple[int, ...]  # HIST_BUCKETS counts, then the sum in microseconds
    queue: Tuple[int, ...]  # the same, for the time from accept to the handler call
    evicted: int  # connections closed to give their slot to a new one
    refused: int  # connections closed at accept: their address held its cap
    shed: int  # connections closed to bring buffered output under max_output_buffer


class SlotTable:
    """A fixed number of slots; allocate() before fork, free() after reaping."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a slot table needs at least one slot")
        # fileno -1 with the default flags is MAP_SHARED | MAP_ANONYMOUS: forked
        # children see the same pages, and no file is ever created.
        self._map = mmap.mmap(-1, capacity * SLOT_SIZE)
        self._free: List[int] = list(range(capacity - 1, -1, -1))
        self.capacity = capacity

    def allocate(self) -> int:
        """A zeroed slot index; raises LookupError when all are in use."""
        if not self._free:
            raise LookupError(f"all {self.capacity} worker slots are in use")
        index = self._free.pop()
        start = index * SLOT_SIZE
        self._map[start : start + SLOT_SIZE] = bytes(SLOT_SIZE)
        return index

    def free(self, index: int) -> None:
        self._free.append(index)

    def read(self, index: int) -> SlotState:
        return SlotState(*_COUNTERS.unpack_from(self._map, index * SLOT_SIZE))

    def counters(self, index: int) -> SlotCounters:
        """The slot's counters, as the loop last wrote them."""
        start = index * SLOT_SIZE
        words = _METRICS.unpack_from(self._map, start + METRICS)
        requests = _COUNTERS.unpack_from(self._map, start)[1]
        hist = 10 + _HIST_WORDS
        return SlotCounters(requests, words[0], words[1], words[2:7], words[7], words[8],
                            words[9], words[10:hist], words[hist:hist + _HIST_WORDS],
                            *words[hist + _HIST_WORDS:hist + _HIST_WORDS + 3])

    def request_text(self, index: int) -> str:
        """The request the worker is running, if its loop records it; '' otherwise."""
        start = index * SLOT_SIZE + REQUEST_TEXT
        raw = self._map[start : start + REQUEST_TEXT_SIZE].split(b"\0", 1)[0]
        return raw.decode("latin-1")

    def view(self, index: int) -> memoryview:
        """The slot as a writable memoryview (taken in the child, after fork)."""
        start = index * SLOT_SIZE
        return memoryview(self._map)[start : start + SLOT_SIZE]

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:  # a view is still exported; the mapping goes with the process
            pass


# The statsd area (csrc/fk_metrics.h FK_STATS_FIELDS), checked like the slot's
# constants (tests/test_metrics.py): written by a worker's loop at the end of
# each request, and by its Python for the error log's records.
STATS_SIZE = 8192  # FK_STATS_BYTES
STATS_TIMED = 0  # uint64, requests ended so far
STATS_LOGS = 8  # 4 x uint64: records logged at critical, error, warning, and exceptions
STATS_CODES = 64  # 400 x uint64: requests by status code, from STATS_FIRST_CODE on
STATS_FIRST_CODE = 200
STATS_CODES_COUNT = 400
STATS_DURATIONS = 4096  # ring of STATS_RING uint64: request durations in microseconds
STATS_RING = 512
LOG_LEVELS = ("critical", "error", "warning", "exception")  # the order of STATS_LOGS

_WORD = struct.Struct("=Q")
_LOGS = struct.Struct("=4Q")
_CODES = struct.Struct(f"={STATS_CODES_COUNT}Q")
_RING = struct.Struct(f"={STATS_RING}Q")


class StatsCounts(NamedTuple):
    timed: int  # requests ended so far
    logs: Tuple[int, ...]  # by LOG_LEVELS
    codes: Tuple[int, ...]  # by status code, STATS_FIRST_CODE on


class StatsTable:
    """A statsd area per slot index (a slot's worker writes the area of its
    index), in a shared mapping of its own: it exists only once statsd is on,
    and its pages only once a worker writes them."""

    def __init__(self, capacity: int) -> None:
        self._map = mmap.mmap(-1, capacity * STATS_SIZE)
        self.capacity = capacity

    def reset(self, index: int) -> None:
        """Zeroes the area of slot index (the master, before forking its worker)."""
        start = index * STATS_SIZE
        self._map[start : start + STATS_SIZE] = bytes(STATS_SIZE)

    def view(self, index: int) -> memoryview:
        """The area as a writable memoryview (taken in the child, after fork)."""
        start = index * STATS_SIZE
        return memoryview(self._map)[start : start + STATS_SIZE]

    def counts(self, index: int) -> StatsCounts:
        start = index * STATS_SIZE
        return StatsCounts(_WORD.unpack_from(self._map, start + STATS_TIMED)[0],
                           _LOGS.unpack_from(self._map, start + STATS_LOGS),
                           _CODES.unpack_from(self._map, start + STATS_CODES))

    def durations(self, index: int, since: int) -> Tuple[int, List[int]]:
        """(timed, durations): the requests ended so far, and the durations in
        microseconds of those from number since on that the ring still holds
        (the latest STATS_RING at most), oldest first. The loop writes an entry
        and then moves TIMED on, so entries below TIMED are whole; one that it
        may have overwritten while the ring was read, lapped by a TIMED read
        after, is left out."""
        start = index * STATS_SIZE
        timed = _WORD.unpack_from(self._map, start + STATS_TIMED)[0]
        ring = _RING.unpack_from(self._map, start + STATS_DURATIONS)
        after = _WORD.unpack_from(self._map, start + STATS_TIMED)[0]
        first = max(since, timed - STATS_RING, after - STATS_RING + 1)
        return timed, [ring[i % STATS_RING] for i in range(first, timed)]

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:  # a view is still exported; the mapping goes with the process
            pass
