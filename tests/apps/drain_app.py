"""A native handler for the graceful-stop tests.

    GET /hold     writes "holding" to stderr, then returns "held" once the
                  worker has been sent TERM (the worker's own TERM handler runs
                  first, so the worker is stopping when this answers)
    anything else "app"
"""

import signal
import sys
import time


def app(request):
    if request.path != "/hold":
        return "app"
    termed = []
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        if callable(previous):
            previous(signum, frame)
        termed.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        sys.stderr.write("holding\n")
        sys.stderr.flush()
        while not termed:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return "held"
