"""Handlers for the master's tests: each response names the worker process."""

import os
import time


def app(request):
    """/ -> "pid ppid"; /sleep?S sleeps S seconds; /loop never returns."""
    if request.path == "/sleep":
        time.sleep(float(request.query or 1))
    elif request.path == "/loop":
        while True:
            pass
    elif request.path == "/grow":
        _hoard.append(bytearray(int(request.query or 1) << 20))
    return f"{os.getpid()} {os.getppid()}"


_hoard = []


def broken_app(request):
    return b"never"


if os.environ.get("MASTER_APP_BROKEN"):
    raise RuntimeError("this application fails to import (on purpose)")
