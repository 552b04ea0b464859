"""Pre-fork runners for the servers that ship none: bjoern and meinheld.

    python -m benchmarks.apps.prefork bjoern|meinheld HOST PORT WORKERS [--pin] [--app M:A]

The parent binds once, forks WORKERS children that each run the server's loop
on the shared socket, and waits; TERM and INT are passed on to the children.
With --pin, child i is pinned to the i-th CPU it may run on (modulo their
count), as forker pins its workers by default and nginx with
worker_cpu_affinity auto."""

import importlib
import os
import signal
import sys


def worker_cpus(workers, cpus):
    """The CPU each worker is pinned to: worker i on the i-th of the sorted
    usable CPUs, round robin when there are more workers."""
    cpus = sorted(cpus)
    return [cpus[i % len(cpus)] for i in range(workers)]


def main(argv):
    pin = "--pin" in argv
    argv = [a for a in argv if a != "--pin"]
    spec = "benchmarks.apps.wsgi_app:app"
    if "--app" in argv:  # --app module:attribute, another WSGI app
        at = argv.index("--app")
        spec = argv[at + 1]
        del argv[at : at + 2]
    module, _, attr = spec.partition(":")
    app = getattr(importlib.import_module(module), attr or "app")
    kind, host, port, workers = argv[0], argv[1], int(argv[2]), int(argv[3])
    placement = worker_cpus(workers, os.sched_getaffinity(0)) if pin else None
    if kind == "bjoern":
        import bjoern

        bjoern.listen(app, host, port)

        def loop():
            bjoern.run()

    elif kind == "meinheld":
        from meinheld import server

        server.listen((host, port))
        server.set_access_logger(None)
        # Keep-alive is off by default (every answer says Connection: close).
        server.set_keepalive(10)

        def loop():
            server.run(app)

    else:
        raise SystemExit(f"unknown server {kind!r}")
    children = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                if placement:
                    os.sched_setaffinity(0, {placement[i]})
                loop()
                status = 0
            finally:
                os._exit(status)
        children.append(pid)

    def forward(signum, frame):
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main(sys.argv[1:])
