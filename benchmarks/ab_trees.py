"""Interleaved A/B of two built checkouts of forker (for a change that must not
cost speed): one worker each pinned to CPU 0, wrk pinned to CPU 1, the built-in
greeting and a native handler, keep-alive and a connection per request, four
rounds alternating which runs first; prints the medians and the ratio
after/before (the mean of the middle two rounds, with the range).

    python benchmarks/ab_trees.py BEFORE_CHECKOUT AFTER_CHECKOUT
    python benchmarks/ab_trees.py BEFORE_CHECKOUT AFTER_CHECKOUT --bodies

--bodies measures large response bodies instead, in keep-alive: 100 KB from
the native handler, 100 KB and 1 MiB from WSGI with four handler threads.

Each checkout must be built in place (python setup.py build_ext --inplace)."""
import os, re, socket, subprocess, sys, time
TREES = {"before": os.path.abspath(sys.argv[1]), "after": os.path.abspath(sys.argv[2])}
WSGI_THREADS = ["--interface", "wsgi", "--threads", "4", "benchmarks.apps.wsgi_app:app"]
if "--bodies" in sys.argv[3:]:
    SCENARIOS = [("native 100 KB", ["benchmarks.apps.native_app:app"], "/100k", (False,)),
                 ("WSGI 4 threads 100 KB", WSGI_THREADS, "/100k", (False,)),
                 ("WSGI 4 threads 1 MiB", WSGI_THREADS, "/1m", (False,))]
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
def wrk(port, close, path):
    args = ["taskset", "-c", "1", "wrk", "-t1", "-c50", "-d4s", f"http://127.0.0.1:{port}{path}"]
    if close: args[4:4] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
results = {}
for label, args, path, closes in SCENARIOS:
    for close in closes:
        key = (label, "close" if close else "keep-alive")
        for rnd in range(4):
            for name in (("before", "after") if rnd % 2 == 0 else ("after", "before")):
                port = free_port(); p = start(TREES[name], port, args)
                try:
                    results.setdefault(key, {}).setdefault(name, []).append(wrk(port, close, path))
                finally:
                    p.terminate(); p.wait(10)
for key, r in results.items():
    ratios = sorted(a / b for a, b in zip(r["after"], r["before"]))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    print(f"| {key[0]} | {key[1]} | {med(r['before']):,.0f} | {med(r['after']):,.0f} | "
          f"{(ratios[1]+ratios[2])/2:.3f} ({ratios[0]:.2f}-{ratios[-1]:.2f}) |")
