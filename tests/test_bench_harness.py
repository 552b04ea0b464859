"""The benchmark harness (benchmarks/): its reading of the load tools' real
outputs (benchmarks/samples/), the commands it builds, and one short run
against forker when wrk is installed."""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    # benchmarks/ is no installed package. Appended, not prepended, so that an
    # installed forker still comes before the checkout's sources.
    sys.path.append(ROOT)
import benchmarks.loadtools as loadtools  # noqa: E402
import benchmarks.run as run  # noqa: E402
import benchmarks.servers as servers  # noqa: E402

SCENARIOS, LoadSpec = loadtools.SCENARIOS, loadtools.LoadSpec
SAMPLES = os.path.join(ROOT, "benchmarks", "samples")


def sample(name):
    with open(os.path.join(SAMPLES, name)) as f:
        return f.read()


def test_wrk_json_line_from_bench_lua():
    r = loadtools.parse_wrk(sample("wrk_keepalive.txt"))
    assert r.requests == 144444
    assert r.seconds == pytest.approx(1.104346)
    assert r.rps == pytest.approx(144444 / 1.104346)
    assert r.p50_ms == pytest.approx(0.165)
    assert r.p99_ms == pytest.approx(34.781)
    assert r.errors == 0 and r.error_detail == {}


def test_wrk_socket_errors_from_json_line_and_from_text():
    text = sample("wrk_close_socket_errors.txt")
    r = loadtools.parse_wrk(text)
    assert (r.requests, r.errors, r.error_detail) == (8479, 8455, {"read": 8455})
    without_json = "\n".join(
        line for line in text.splitlines() if not line.startswith("WRKJSON")
    )
    t = loadtools.parse_wrk(without_json)
    assert (t.requests, t.errors, t.error_detail) == (8479, 8455, {"read": 8455})
    assert t.rps == pytest.approx(8440.83)
    assert t.p50_ms == pytest.approx(5.80) and t.p99_ms == pytest.approx(16.02)


def test_wrk_text_without_script_counts_non_2xx():
    r = loadtools.parse_wrk(sample("wrk_plain_non2xx.txt"))
    assert r.requests == 92464 and r.seconds == pytest.approx(1.10)
    assert r.rps == pytest.approx(84350.57)
    assert r.p50_ms == pytest.approx(0.407) and r.p99_ms == pytest.approx(16.11)
    assert r.errors == 92464 and r.error_detail == {"status": 92464}


def test_wrk_zero_percentiles_are_reported_as_none():
    line = sample("wrk_pipelined.txt").splitlines()[-1]
    data = json.loads(line[len("WRKJSON ") :])
    data["latency_us"].update(p50=3413, p90=0, p99=0, p999=0)
    r = loadtools.parse_wrk("WRKJSON " + json.dumps(data))
    assert r.requests == 244650 and r.p50_ms is None and r.p99_ms is None


def test_h2load_keepalive_and_connection_close():
    r = loadtools.parse_h2load(sample("h2load_keepalive.txt"))
    assert (r.requests, r.rps, r.errors) == (98248, 98248.0, 0)
    assert r.seconds == pytest.approx(1.01)
    assert r.p50_ms is None and r.p99_ms is None  # h2load prints no percentiles
    c = loadtools.parse_h2load(sample("h2load_close.txt"))
    assert (c.requests, c.rps, c.errors) == (20000, 29337.51, 0)
    assert c.seconds == pytest.approx(0.68172)


def test_h2load_failures_count_as_errors():
    text = sample("h2load_keepalive.txt").replace(
        "98248 succeeded, 0 failed, 0 errored", "98200 succeeded, 48 failed, 3 errored"
    )
    r = loadtools.parse_h2load(text)
    assert r.errors == 48 and r.error_detail == {"failed": 48, "errored": 3}


def test_ab_reports():
    r = loadtools.parse_ab(sample("ab_close.txt"))
    assert (r.requests, r.rps, r.errors) == (10000, 25283.30, 0)
    assert (r.p50_ms, r.p99_ms, r.seconds) == (2.0, 6.0, 0.396)
    k = loadtools.parse_ab(sample("ab_keepalive_non2xx.txt"))
    assert (k.requests, k.errors, k.error_detail) == (2000, 2000, {"status": 2000})


def test_oha_json():
    r = loadtools.parse_oha(sample("oha_disable_keepalive.json"))
    assert r.rps == pytest.approx(45262.46382917523)
    assert r.requests == 199997 and r.seconds == pytest.approx(4.418716921)
    assert r.p50_ms == pytest.approx(10.652911) and r.p99_ms == pytest.approx(24.519932)
    assert r.errors == 5
    assert r.error_detail == {
        "connection closed before message completed": 3,
        "status": 2,
    }


def test_unparsable_output_raises():
    for parse in loadtools.PARSERS.values():
        with pytest.raises(ValueError):
            parse("connection refused\n")


def _spec(name, **kw):
    return LoadSpec("http://127.0.0.1:9", SCENARIOS[name], 5.0, **kw)


def test_commands():
    wrk = loadtools.build_command("wrk", _spec("nokeepalive"))
    assert wrk[:9] == [
        "wrk",
        "-t",
        "2",
        "-c",
        "100",
        "-d",
        "5s",
        "--latency",
        "--timeout",
    ]
    assert wrk[-3:] == ["http://127.0.0.1:9/", "--", "close"]
    assert loadtools.build_command("wrk", _spec("pipelined"))[-1] == "pipeline=16"
    post = loadtools.build_command("wrk", _spec("upload", connections=8))
    assert "8" in post and post[-2:] == ["--", "post=1048576"]
    h2 = loadtools.build_command("h2load", _spec("nokeepalive"))
    assert "-D" not in h2 and "-n" in h2 and "Connection: close" in h2
    assert "-D" in loadtools.build_command("h2load", _spec("keepalive"))
    ab = loadtools.build_command("ab", _spec("keepalive", taskset="1"))
    assert ab[:3] == ["taskset", "-c", "1"] and "-k" in ab


def test_pipelining_needs_wrk_or_h2load(monkeypatch):
    monkeypatch.setattr(loadtools, "available", lambda tool: True)
    assert loadtools.pick_tool(SCENARIOS["pipelined"]) == "wrk"
    assert loadtools.pick_tool(SCENARIOS["pipelined"], "ab") is None
    assert loadtools.pick_tool(SCENARIOS["keepalive"]) == "oha"
    monkeypatch.setattr(loadtools, "available", lambda tool: tool != "oha")
    assert loadtools.pick_tool(SCENARIOS["nokeepalive"]) == "wrk"


def test_oha_run_through_a_stand_in(tmp_path, monkeypatch):
    """The whole oha path (flag detection, reference command, parsing) with a
    stand-in that answers like oha."""
    fake = tmp_path / "oha"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--help*) echo "      --output-format <OUTPUT_FORMAT>"; exit 0;; esac\n'
        f'echo "$@" > {tmp_path}/args\n'
        f"cat {os.path.join(SAMPLES, 'oha_disable_keepalive.json')}\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    result = loadtools.run("oha", _spec("nokeepalive"))
    assert result.failed is None and result.rps == pytest.approx(45262.46382917523)
    args = (tmp_path / "args").read_text().split()
    assert args == [
        "--no-tui", "--output-format", "json", "--latency-correction",
        "-c", "500", "-n", "200000", "--disable-keepalive", "http://127.0.0.1:9/",
    ]  # fmt: skip


def test_forker_worker_lines():
    log = (
        "[2026-11-26 11:17:29 +0000] [21194] [master] [INFO] worker 0 pid 21248 served 4 requests\n"
        "[2026-11-26 11:17:29 +0000] [21194] [master] [INFO] worker 1 pid 21249 served 0 requests\n"
    )
    assert servers.parse_worker_counts(log) == {"0/21248": 4, "1/21249": 0}


def test_summary_medians_ratios_and_tables():
    records = [
        {"round": i, "server": name, "scenario": "keepalive", "tool": "wrk", "rps": rps,
         "p50_ms": 0.1 * i, "p99_ms": 1.0 * i, "errors": 0, "requests": int(rps)}
        for name, values in (("forker", [100.0, 120.0, 110.0]), ("nginx", [50.0, 60.0, 55.0]))
        for i, rps in enumerate(values, 1)
    ]  # fmt: skip
    records[0]["per_worker"] = {"0/1": 60, "1/2": 40}
    for rec in records:
        rec["cpu"] = {"server_s": rec["requests"] * 5e-6, "server_pct": 1.0, "other_pct": 0.0}
    records.append({"round": 1, "server": "bjoern", "scenario": "keepalive", "tool": "wrk",
                    "failed": "did not start"})  # fmt: skip
    summary = run.summarize(records)["keepalive"]
    assert (
        summary["forker"]["rps_median"] == 110.0 and summary["forker"]["p99_ms"] == 3.0
    )
    assert summary["nginx"]["ratio"] == pytest.approx(0.5)
    assert summary["nginx"]["round_ratios"] == [0.5, 0.5, 0.5]
    assert summary["forker"]["server_us"] == pytest.approx(5.0)
    assert "round_ratios" not in summary["forker"]
    assert summary["bjoern"]["ok_rounds"] == 0 and "ratio" not in summary["bjoern"]
    text = run.tables(run.summarize(records), ["keepalive"], markdown=True)
    assert "| nginx | wrk | 55 |" in text and "0.50x forker (rounds 0.50-0.50)" in text
    assert "60 / 40" in text and "failed" in text


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_quick_run_against_forker(tmp_path):
    built = subprocess.run([sys.executable, "-c", "import forker._worker"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, f"forker's extension modules are not built:\n{built.stderr}"
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "benchmarks", "--servers", "forker", "--scenarios", "keepalive",
           "--duration", "1", "--rounds", "1", "--connections", "10", "--load-threads", "1",
           "--json", str(out)]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    (rec,) = data["runs"]
    assert rec["tool"] == "wrk" and rec["rps"] > 0 and rec["errors"] == 0
    assert sum(rec["per_worker"].values()) >= rec["requests"]
    assert "keepalive" in proc.stdout


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_cpu_per_request_against_forker():
    built = subprocess.run([sys.executable, "-c", "import forker._worker"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, f"forker's extension modules are not built:\n{built.stderr}"
    cmd = [sys.executable, "-m", "benchmarks.cpu_per_request", "--servers", "forker",
           "--rounds", "1", "--duration", "1", "--connections", "10"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.split()[0] == "forker" and float(line.split()[1]) > 0, proc.stdout


def test_response_heads_must_carry_the_same_fields():
    nginx = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: x\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 11\r\nConnection: keep-alive\r\n\r\n")  # fmt: skip
    assert servers.head_differences(nginx) == []
    granian = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\n"
    assert servers.head_differences(granian) == []
    bare = b"HTTP/1.1 200 OK\r\nServer: forker\r\nContent-Length: 11\r\n\r\n"
    assert servers.head_differences(bare) == ["no Content-Type"]
    html = bare.replace(b"Server: forker", b"Content-Type: text/html")
    assert servers.head_differences(html) == ["Content-Type: text/html (not text/plain)"]


def test_an_undeclared_head_difference_is_refused(monkeypatch):
    bare = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"
    monkeypatch.setattr(servers, "raw_head", lambda port: bare)
    plain = servers.SERVERS["forker"]
    assert plain.head_differs == ""
    size, refused, declared = servers.check_head(plain, 1)
    assert size == len(bare) and declared is None
    assert refused == "response head differs from the others: no Content-Type"
    greeting = servers.SERVERS["forker-greeting"]
    assert servers.check_head(greeting, 1) == (len(bare), None, "no Content-Type")


def test_a_declared_head_difference_is_marked_in_the_tables():
    records = [
        {"round": 1, "server": "forker", "scenario": "keepalive", "tool": "wrk",
         "rps": 100.0, "errors": 0, "requests": 100, "head_bytes": 118},
        {"round": 1, "server": "forker-greeting", "scenario": "keepalive", "tool": "wrk",
         "rps": 120.0, "errors": 0, "requests": 120, "head_bytes": 92,
         "head_differs": "no Content-Type"},
    ]  # fmt: skip
    summary = run.summarize(records)
    assert summary["keepalive"]["forker-greeting"]["head_bytes"] == 92
    text = run.tables(summary, ["keepalive"], markdown=True)
    assert "| forker-greeting * | wrk |" in text and "| forker | wrk |" in text
    assert "* forker-greeting: its response head differs" in text


def test_peers_at_their_best_command_lines(tmp_path):
    from benchmarks.apps import prefork

    assert prefork.worker_cpus(2, {1, 0}) == [0, 1]
    assert prefork.worker_cpus(3, {4, 2}) == [2, 4, 2]
    opts = servers.Options(workers=2, threads=1)
    pinned = servers.SERVERS["bjoern-pinned"].command(8000, opts, str(tmp_path))
    assert pinned[-1] == "--pin" and "--pin" not in servers.SERVERS["bjoern"].command(
        8000, opts, str(tmp_path)
    )
    granian = servers.SERVERS["granian-wsgi"].command(8000, opts, str(tmp_path))
    for flag, value in (("--http", "1"), ("--runtime-mode", "st"), ("--blocking-threads", "1")):
        assert granian[granian.index(flag) + 1] == value
    unpinned = servers.SERVERS["forker-wsgi-unpinned"].command(8000, opts, str(tmp_path))
    assert "--no-cpu-affinity" in unpinned and unpinned[unpinned.index("--threads") + 1] == "1"
    servers.SERVERS["nginx-pinned"].command(8000, opts, str(tmp_path))
    assert "worker_cpu_affinity auto;" in (tmp_path / "nginx.conf").read_text()


def test_one_round_has_no_spread():
    records = [{"round": 1, "server": "forker", "scenario": "keepalive", "tool": "wrk",
                "rps": 100.0, "errors": 0, "requests": 100}]  # fmt: skip
    summary = run.summarize(records)
    assert summary["keepalive"]["forker"]["spread_pct"] is None
    text = run.tables(summary, ["keepalive"], markdown=True)
    assert "| n/a |" in text and "±0.0%" not in text
    records.append(dict(records[0], round=2, rps=120.0))
    assert "±9.1%" in run.tables(run.summarize(records), ["keepalive"], markdown=True)


def test_chart_without_matplotlib_fails_before_the_run(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    started = []
    monkeypatch.setattr(run, "run_one", lambda *a, **k: started.append(a))
    monkeypatch.setattr(run.servers, "start", lambda *a, **k: started.append(a))
    assert run.main(["--servers", "forker", "--chart", "x.png", "--rounds", "1"]) == 2
    assert started == [] and "--chart needs matplotlib" in capsys.readouterr().err


def test_the_seed_command_and_its_fallbacks(monkeypatch):
    monkeypatch.setattr(loadtools, "_oha_json_flags", lambda: ["--output-format", "json"])
    oha = loadtools.build_command("oha", _spec("seed"))
    assert oha[-6:] == ["-c", "500", "-n", "200000", "--disable-keepalive",
                        "http://127.0.0.1:9/"]  # fmt: skip
    assert "--latency-correction" in oha
    wrk = loadtools.build_command("wrk", _spec("seed"))
    assert wrk[wrk.index("-c") + 1] == "500" and wrk[-2:] == ["--", "close"]
    h2 = loadtools.build_command("h2load", _spec("seed"))
    assert h2[h2.index("-c") + 1] == "500" and h2[h2.index("-n") + 1] == "200000"
    assert "Connection: close" in h2
    # --connections still overrides the scenario's own count
    assert "50" in loadtools.build_command("wrk", _spec("seed", connections=50))
    monkeypatch.setattr(loadtools, "available", lambda tool: tool != "oha")
    assert loadtools.pick_tool(SCENARIOS["seed"]) == "wrk"


def test_worker_balance_names_idle_workers():
    assert run.worker_spread([120, 80]) == "max/mean 1.20"
    assert run.worker_spread([166638, 0]) == "max/mean 2.00, 1 of 2 workers idle"
    assert run.worker_spread([239767, 3]) == "max/mean 2.00, 1 of 2 workers idle"
    assert run.worker_spread([0, 0]) == "-"


def test_paired_ratios_of_any_two_servers():
    records = [
        {"round": i, "server": name, "scenario": "keepalive", "tool": "wrk", "rps": rps}
        for name, values in (("forker-unpinned", [100.0, 90.0, 130.0]),
                             ("nginx", [80.0, 100.0, 100.0]))
        for i, rps in enumerate(values, 1)
    ]  # fmt: skip
    pairs = run.parse_pairs("forker-unpinned:nginx")
    text = run.comparisons(records, pairs, ["keepalive", "nokeepalive"], markdown=True)
    assert "| forker-unpinned / nginx | keepalive | 1.25 | 0.90-1.30 | 3 |" in text
    assert "nokeepalive" not in text
    with pytest.raises(SystemExit):
        run.parse_pairs("forker-unpinned")
    with pytest.raises(SystemExit):
        run.parse_pairs("forker:nope")


def test_a_server_closing_keep_alive_connections_is_refused():
    meinheld_default = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
                        b"Connection: close\r\n\r\n")  # fmt: skip
    assert servers.head_differences(meinheld_default) == [
        "Connection: close on a keep-alive request"
    ]
    assert servers.SERVERS["gunicorn-sync"].head_differs  # declared: it never keeps alive
    assert not servers.SERVERS["meinheld"].head_differs


def test_real_application_scenarios_run_on_the_wsgi_servers_with_their_app(tmp_path):
    assert run.serves("forker-wsgi", "flask") and run.serves("bjoern-pinned", "django")
    assert not run.serves("forker", "flask") and not run.serves("nginx", "file20m")
    assert run.serves("forker", "100k") and not run.serves("nginx", "sleep1ms")
    args = run.parse_args(["--threads", "1"])
    opts = run.options(args, "flask")
    assert opts.wsgi_app == "benchmarks.apps.flask_app:app" and opts.threads == 1
    assert run.options(args, "json").wsgi_app == servers.WSGI_APP
    for name in ("forker-wsgi", "gunicorn-gthread", "granian-wsgi"):
        argv = servers.SERVERS[name].command(8000, opts, str(tmp_path))
        assert argv[-1] == "benchmarks.apps.flask_app:app", name
    bjoern = servers.SERVERS["bjoern-pinned"].command(8000, opts, str(tmp_path))
    assert bjoern[-2:] == ["--app", "benchmarks.apps.flask_app:app"]
    native = servers.SERVERS["forker"].command(8000, opts, str(tmp_path))
    assert native[-1] == "benchmarks.apps.native_app:app"


def test_json_and_file_answers_are_checked_by_meaning_and_size(monkeypatch):
    answers = {}
    monkeypatch.setattr(servers, "fetch", lambda port, path, body=None, timeout=5.0: answers[path])
    answers["/json"] = (200, b'{"message":"Hello, World!"}\n')  # Flask's spacing
    assert servers.check(1, "/json") is None
    answers["/json"] = (200, b'{"message": "Hello!"}')
    assert servers.check(1, "/json").startswith("/json: status 200")
    answers["/file20m"] = (200, b"y" * (20 << 20))
    assert servers.check(1, "/file20m") is None
    answers["/file20m"] = (200, b"y" * 3932160)
    assert servers.check(1, "/file20m") == "/file20m: status 200, 3932160 bytes"


def test_fixed_rate_through_h2load_and_its_log(monkeypatch):
    monkeypatch.setattr(loadtools, "available", lambda tool: True)
    assert loadtools.pick_tool(SCENARIOS["rate20k"]) == "h2load"
    assert loadtools.pick_tool(SCENARIOS["rate20k"], "wrk") is None
    cmd = loadtools.build_command("h2load", _spec("rate20k"), log_file="/tmp/l")
    assert "--rps=200" in cmd and "--log-file=/tmp/l" in cmd and "-D" in cmd
    assert "--rps=400" in loadtools.build_command("h2load", _spec("rate20k", connections=50))
    log = "".join(f"1700000000{i:06d}\t200\t{(i + 1) * 10}\n" for i in range(1000))
    p50, p99, p999 = loadtools.h2load_log_latency(log)
    assert (p50, p99, p999) == (5.01, 9.91, 10.0)
    assert loadtools.h2load_log_latency("") == (None, None, None)


def test_start_waits_until_every_process_is_idle():
    """A stand-in worker that keeps a CPU busy for 0.4 s after its start, as
    a worker importing the app does while another already answers."""
    import time

    busy = "import time\nend = time.monotonic() + 0.4\nwhile time.monotonic() < end: pass\ntime.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", busy], start_new_session=True)
    try:
        began = time.monotonic()
        assert servers.wait_settled(proc.pid, window=0.1, timeout=5.0)
        assert time.monotonic() - began >= 0.4
        assert not servers.wait_settled(os.getpgid(0), window=10.0, timeout=0.2)
    finally:
        proc.kill()
        proc.wait()
