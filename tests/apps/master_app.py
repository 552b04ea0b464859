"""Handlers for the master's tests: each response names the worker process."""

import os
import sys
import time


def app(request):
    """/ -> "pid ppid"; /sleep?S sleeps S seconds (saying so on stderr first, so
    that a test can wait until a handler is running); /loop never returns; /drip?N
    streams N pieces slowly."""
    if request.path == "/sleep":
        print(f"handler {os.getpid()} sleeping {request.query or 1} s", file=sys.stderr, flush=True)
        time.sleep(float(request.query or 1))
    elif request.path == "/loop":
        while True:
            pass
    elif request.path == "/drip":  # ?N pieces, one every 0.25 s
        return (time.sleep(0.25) or b"drop;" for _ in range(int(request.query or 1)))
    elif request.path == "/grow":
        _hoard.append(bytearray(int(request.query or 1) << 20))
    return f"{os.getpid()} {os.getppid()}"


_hoard = []


def broken_app(request):
    return b"never"


if os.environ.get("MASTER_APP_BROKEN"):
    raise RuntimeError("this application fails to import (on purpose)")
