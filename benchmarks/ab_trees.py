"""Interleaved A/B of two built checkouts of forker (for a change that must not
cost speed): one worker each pinned to CPU 0, wrk pinned to CPU 1, the built-in
greeting and a native handler, keep-alive and a connection per request, four
rounds alternating which runs first; prints the medians and the ratio
after/before (the mean of the middle two rounds, with the range).

    python benchmarks/ab_trees.py BEFORE_CHECKOUT AFTER_CHECKOUT
    python benchmarks/ab_trees.py BEFORE_CHECKOUT AFTER_CHECKOUT --bodies

--bodies measures large response bodies instead, in keep-alive: 100 KB from
the native handler, 100 KB and 1 MiB from WSGI with four handler threads.
--heads measures GET / of the harness's apps in keep-alive, whose answers
carry a Content-Type field: benchmarks/apps/native_app.py, and
benchmarks/apps/wsgi_app.py on the loop thread (--threads 1).
--rounds N runs N rounds instead of four (the ratio is then the median).

Beside req/s it prints the server's CPU time per request (user plus system
time of the server's processes over the load, from /proc), which moves much
less than req/s when wrk and the server share the machine.

Each checkout must be built in place (python setup.py build_ext --inplace)."""
import os, re, socket, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.servers import group_cpu_ticks  # noqa: E402
TREES = {"before": os.path.abspath(sys.argv[1]), "after": os.path.abspath(sys.argv[2])}
WSGI_THREADS = ["--interface", "wsgi", "--threads", "4", "benchmarks.apps.wsgi_app:app"]
if "--bodies" in sys.argv[3:]:
    SCENARIOS = [("native 100 KB", ["benchmarks.apps.native_app:app"], "/100k", (False,)),
                 ("WSGI 4 threads 100 KB", WSGI_THREADS, "/100k", (False,)),
                 ("WSGI 4 threads 1 MiB", WSGI_THREADS, "/1m", (False,))]
elif "--heads" in sys.argv[3:]:
    SCENARIOS = [("native app, Content-Type", ["benchmarks.apps.native_app:app"], "/", (False,)),
                 ("WSGI app, loop thread", ["--interface", "wsgi", "--threads", "1",
                                            "benchmarks.apps.wsgi_app:app"], "/", (False,))]
else:
    SCENARIOS = [("greeting (C)", [], "/", (False, True)),
                 ("native handler", ["tests.apps.hardening_app:app"], "/", (False, True))]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def start(tree, port, args):
    env = dict(os.environ, PYTHONPATH=tree)
    argv = ["taskset", "-c", "0", sys.executable, "-m", "forker", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--no-cpu-affinity"] + args
    # cwd: the tree's own apps (benchmarks/, tests/) are the ones imported
    p = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
        except OSError: time.sleep(0.05)
    time.sleep(0.5)
    return p
def wrk(port, close, path, pgid):
    args = ["taskset", "-c", "1", "wrk", "-t1", "-c50", "-d4s", f"http://127.0.0.1:{port}{path}"]
    if close: args[4:4] = ["-H", "Connection: close"]
    before = group_cpu_ticks(pgid)
    out = subprocess.run(args, capture_output=True, text=True).stdout
    cpu = (group_cpu_ticks(pgid) - before) / os.sysconf("SC_CLK_TCK")
    count = int(re.search(r"(\d+) requests in", out).group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), cpu / count * 1e6
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 4
results, cpus = {}, {}
for label, args, path, closes in SCENARIOS:
    for close in closes:
        key = (label, "close" if close else "keep-alive")
        for rnd in range(ROUNDS):
            for name in (("before", "after") if rnd % 2 == 0 else ("after", "before")):
                port = free_port(); p = start(TREES[name], port, args)
                try:
                    rps, us = wrk(port, close, path, p.pid)
                    results.setdefault(key, {}).setdefault(name, []).append(rps)
                    cpus.setdefault(key, {}).setdefault(name, []).append(us)
                finally:
                    p.terminate(); p.wait(10)
def middle(xs):
    xs = sorted(xs)
    return (xs[1] + xs[2]) / 2 if len(xs) == 4 else xs[len(xs) // 2] if len(xs) % 2 else \
        (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
print("| app | connections | before req/s | after req/s | after/before | "
      "before µs CPU/req | after µs CPU/req | after/before |")
print("| --- | --- | --: | --: | --: | --: | --: | --: |")
for key, r in results.items():
    ratios = sorted(a / b for a, b in zip(r["after"], r["before"]))
    c = cpus[key]
    cratios = sorted(a / b for a, b in zip(c["after"], c["before"]))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    print(f"| {key[0]} | {key[1]} | {med(r['before']):,.0f} | {med(r['after']):,.0f} | "
          f"{middle(ratios):.3f} ({ratios[0]:.2f}-{ratios[-1]:.2f}) | "
          f"{middle(c['before']):.2f} | {middle(c['after']):.2f} | "
          f"{middle(cratios):.3f} ({cratios[0]:.2f}-{cratios[-1]:.2f}) |")
