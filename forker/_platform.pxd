# The platform's C declarations that the .pyx files of forker use beyond
# Cython's own (libc, cpython): the clock, glibc's heap, prctl, errno, and the
# CPython macros that read a str in place. The C core's own are in _csrc.pxd.

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clock, timespec *ts)
    enum:
        CLOCK_MONOTONIC

cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

cdef extern from "<malloc.h>" nogil:
    int malloc_trim(size_t pad)
    int mallopt(int param, int value)
    enum:
        M_ARENA_MAX
        M_MMAP_THRESHOLD
        M_TRIM_THRESHOLD

cdef extern from "<sys/prctl.h>" nogil:
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
              unsigned long arg5)
    enum:
        PR_SET_PDEATHSIG

cdef extern from "<errno.h>":
    int errno

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    int PyUnicode_KIND(object s)
    const unsigned char *PyUnicode_1BYTE_DATA(object s)
    bint PyUnicode_IS_ASCII(object s)
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    enum:
        PyUnicode_1BYTE_KIND
