"""Interleaved A/B of two built checkouts of forker (for a change that must not
cost speed): one worker each pinned to CPU 0, wrk pinned to CPU 1, the built-in
greeting and a native handler, keep-alive and a connection per request, four
rounds alternating which runs first; prints the medians and the ratio
after/before (the mean of the middle two rounds, with the range).

    python benchmarks/ab_trees.py BEFORE_CHECKOUT AFTER_CHECKOUT

Each checkout must be built in place (python setup.py build_ext --inplace)."""
import os, re, socket, subprocess, sys, time
TREES = {"before": os.path.abspath(sys.argv[1]), "after": os.path.abspath(sys.argv[2])}
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def start(tree, port, app):
    env = dict(os.environ, PYTHONPATH=tree)
    argv = ["taskset", "-c", "0", sys.executable, "-m", "forker", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--no-cpu-affinity"] + ([app] if app else [])
    p = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
        except OSError: time.sleep(0.05)
    time.sleep(0.5)
    return p
def wrk(port, close):
    args = ["taskset", "-c", "1", "wrk", "-t1", "-c50", "-d4s", f"http://127.0.0.1:{port}/"]
    if close: args[4:4] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
results = {}
for app, label in ((None, "greeting (C)"), ("tests.apps.hardening_app:app", "native handler")):
    for close in (False, True):
        key = (label, "close" if close else "keep-alive")
        for rnd in range(4):
            for name in (("before", "after") if rnd % 2 == 0 else ("after", "before")):
                port = free_port(); p = start(TREES[name], port, app)
                try:
                    results.setdefault(key, {}).setdefault(name, []).append(wrk(port, close))
                finally:
                    p.terminate(); p.wait(10)
for key, r in results.items():
    ratios = sorted(a / b for a, b in zip(r["after"], r["before"]))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    print(f"| {key[0]} | {key[1]} | {med(r['before']):,.0f} | {med(r['after']):,.0f} | "
          f"{(ratios[1]+ratios[2])/2:.3f} ({ratios[0]:.2f}-{ratios[-1]:.2f}) |")
