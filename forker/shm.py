"""Memory shared between the master and its workers: one 512-byte slot per live
worker, in one anonymous shared mapping created before the first fork.

A worker's C loop writes its slot (see forker/worker.py for the layout); the
master only reads it, to check liveness and to report how many requests each
worker served. Slots are handed out from a free list, so a worker that is still
draining after a reload keeps its slot while its successor gets another."""

from __future__ import annotations

import mmap
import struct
from typing import List, NamedTuple

SLOT_SIZE = 512  # csrc/fk_metrics.h: FK_SLOT_WORDS 64-bit words
HEARTBEAT = 0  # uint64, CLOCK_MONOTONIC ms of the loop's last turn
REQUESTS = 8  # uint64, requests served so far
BUSY_SINCE = 16  # uint64, CLOCK_MONOTONIC ms when the running handler call began, 0 idle
REQUEST_TEXT = 24  # optional: up to 40 bytes "METHOD target" of that call, NUL padded
REQUEST_TEXT_SIZE = 40  # words 3..7; the counters of csrc/fk_metrics.h follow

_COUNTERS = struct.Struct("=QQQ")


class SlotState(NamedTuple):
    heartbeat_ms: int
    requests: int
    busy_since_ms: int


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
