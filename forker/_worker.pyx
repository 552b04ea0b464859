# cython: language_level=3
"""The worker engine: drives the C event loop (csrc/fk_loop.c) and calls the
handler. The loop runs without the GIL; it is taken only to build a Request,
call the handler and hand its answer back to C.

The module is one extension made of parts, each in its own file under
forker/engine/ and declared in forker/_worker.pxd (docs/ARCHITECTURE.md, "The
worker's Python side"):

    request.pxi     Headers, BodyStream and Request: what a handler reads
    response.pxi    Reply, ResponsePlan, the response fields and ResponseStream: what it answers
    loopconfig.pxi  fk_loop_config filled from the options table
    tls.pxi         the TLS library and server context
    engine.pxi      the Engine: the loop's events, requests on the loop thread
    threads.pxi     the handler-thread pool
    aio.pxi         Exchange and the Engine on an asyncio event loop (coroutine handlers)
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.ref cimport Py_INCREF, PyObject
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

from forker._csrc cimport *
from forker._platform cimport *

import io
import logging
import os
import stat

from _thread import allocate_lock

from .errors import RequestBodyError
from .response import Response

log = logging.getLogger("forker.error")

# What a handler may raise and still get its 500: SystemExit and
# KeyboardInterrupt too (sys.exit() in application code), which would otherwise
# end a handler thread silently, or the worker; the worker's own signals never
# raise them (worker.py installs handlers for SIGINT and SIGTERM).
HANDLER_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


class EngineError(OSError):
    """The C loop could not be set up (errno from the failing call)."""


include "engine/request.pxi"
include "engine/response.pxi"
include "engine/loopconfig.pxi"
include "engine/tls.pxi"
include "engine/engine.pxi"
include "engine/threads.pxi"
include "engine/aio.pxi"


# -- the worker process's own calls (forker/worker.py, forker/process.py) -----------

def trim_memory():
    """Gives the free pages of the C heap back to the system (malloc_trim(0));
    True when some were."""
    cdef int released
    with nogil:
        released = malloc_trim(0)
    return released != 0


def set_parent_death_signal(int signum):
    """Have the kernel send signum to this process when its parent thread dies."""
    if prctl(PR_SET_PDEATHSIG, <unsigned long>signum, 0, 0, 0) != 0:
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


cdef extern from *:
    """
    #include "fk_metrics.h"
    typedef struct { const char *name; int word; int words; } fk_slot_field;
    #define FK_SLOT_ENTRY(name, word, words) {#name, word, words},
    static const fk_slot_field fk_slot_fields[] = {FK_SLOT_FIELDS(FK_SLOT_ENTRY)};
    #define FK_SLOT_NFIELDS (sizeof(fk_slot_fields) / sizeof(fk_slot_fields[0]))
    static const fk_slot_field fk_stats_fields[] = {FK_STATS_FIELDS(FK_SLOT_ENTRY)};
    #undef FK_SLOT_ENTRY
    #define FK_STATS_NFIELDS (sizeof(fk_stats_fields) / sizeof(fk_stats_fields[0]))
    """
    ctypedef struct fk_slot_field:
        const char *name
        int word
        int words
    const fk_slot_field fk_slot_fields[]
    size_t FK_SLOT_NFIELDS
    const fk_slot_field fk_stats_fields[]
    size_t FK_STATS_NFIELDS
    enum:
        FK_STATS_RING
        FK_STATS_FIRST_CODE


def slot_layout():
    """The shared worker slot as csrc/fk_metrics.h lays it out (FK_SLOT_FIELDS):
    {"size": bytes, "fields": {name: (byte offset, bytes)}, "text_size": bytes
    of the request text, "hist_buckets": n, "hist_bounds_us": (...), "stats":
    the statsd area (FK_STATS_FIELDS) as {"size", "fields", "ring",
    "first_code"}}, names lower case. forker/shm.py reads the slot and the
    statsd area with these (tests/test_metrics.py)."""
    cdef size_t i
    fields = {}
    for i in range(FK_SLOT_NFIELDS):
        fields[fk_slot_fields[i].name.decode("ascii").lower()] = (
            fk_slot_fields[i].word * 8, fk_slot_fields[i].words * 8)
    stats = {}
    for i in range(FK_STATS_NFIELDS):
        stats[fk_stats_fields[i].name.decode("ascii").lower()] = (
            fk_stats_fields[i].word * 8, fk_stats_fields[i].words * 8)
    return {"size": FK_SLOT_BYTES, "fields": fields, "text_size": FK_SLOT_TEXT_SIZE,
            "hist_buckets": FK_HIST_BUCKETS,
            "hist_bounds_us": tuple(fk_hist_bounds_us[i] for i in range(FK_HIST_BUCKETS - 1)),
            "stats": {"size": FK_STATS_BYTES, "fields": stats, "ring": FK_STATS_RING,
                      "first_code": FK_STATS_FIRST_CODE}}

