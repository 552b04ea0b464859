"""Every command-line flag that changes behaviour, through the real
`python -m forker` and real sockets."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import (  # noqa: E402
    ROOT, ForkerProcess, exchange, free_port, parse_response, request, run_cli,
)

ENVIRON_APP = "wsgiapps:environ_app"


def environ(server, target="/", headers=None):
    status, _, body = request(server.port, "GET", target, headers=headers or {})
    assert status == 200, body
    return json.loads(body)


def wait_lines(path, count, timeout=5.0, keep=lambda line: True):
    deadline = time.monotonic() + timeout
    while True:
        lines = []
        if os.path.exists(path):
            with open(path) as f:
                lines = [line for line in f.read().splitlines() if keep(line)]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def not_probe(line):
    return "OPTIONS *" not in line and '"OPTIONS"' not in line


# -- application and interface -----------------------------------------------------

def test_no_app_serves_the_greeting():
    with ForkerProcess() as server:
        assert request(server.port, "GET", "/anything")[::2] == (200, b"greeting!!!")
    # said in the log: `--access-log app:app` (a flag that takes a value) looks the same
    assert "no APP given: serving the built-in greeting" in server.stderr


def test_python_m_forker_bind_and_workers():
    port = free_port()
    with ForkerProcess("--interface", "wsgi", app=ENVIRON_APP, bind=f"127.0.0.1:{port}",
                       workers=2) as server:
        pids = set()
        deadline = time.monotonic() + 10
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(environ(server)["pid"])  # new connections land on either worker
        assert len(pids) == 2
        assert environ(server)["wsgi.multiprocess"] is True


def test_interface_native():
    with ForkerProcess("--interface", "native", app="wsgiapps:native") as server:
        assert request(server.port, "GET", "/x")[::2] == (200, b"native GET /x")


def test_interface_auto_tells_native_from_wsgi():
    with ForkerProcess(app="wsgiapps:native") as server:
        assert request(server.port, "GET", "/y")[::2] == (200, b"native GET /y")
    with ForkerProcess(app="wsgiapps:factory('hey', punctuation='?')") as server:
        assert request(server.port)[::2] == (200, b"hey?")


def test_interface_wsgi_with_module_only_and_factory_arguments():
    with ForkerProcess("--interface", "wsgi", app="wsgiapps") as server:  # its `application`
        assert request(server.port)[::2] == (200, b"module default!")
    with ForkerProcess("--interface", "wsgi",
                       app="wsgiapps:factory('hey', punctuation='?')") as server:
        assert request(server.port)[::2] == (200, b"hey?")


def test_chdir(tmp_path):
    (tmp_path / "localapp.py").write_text(textwrap.dedent("""
        import os
        def app(environ, start_response):
            start_response("200 OK", [])
            return [os.getcwd().encode()]
    """))
    with ForkerProcess("--interface", "wsgi", "--chdir", str(tmp_path),
                       app="localapp:app") as server:
        assert request(server.port)[::2] == (200, str(tmp_path).encode())


def test_bind_is_repeatable(tmp_path):
    port = free_port()
    path = str(tmp_path / "s.sock")
    with ForkerProcess(bind=[f"127.0.0.1:{port}", f"unix:{path}"]) as server:
        assert request(server.port)[::2] == (200, b"greeting!!!")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: u\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert data.endswith(b"greeting!!!")


def test_threads_sets_multithread():
    with ForkerProcess("--interface", "wsgi", "--threads", "3", app=ENVIRON_APP) as server:
        assert environ(server)["wsgi.multithread"] is True


def test_root_path():
    with ForkerProcess("--interface", "wsgi", "--root-path", "/base/", app=ENVIRON_APP) as server:
        env = environ(server, "/base/x/y")
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/base", "/x/y")


# -- proxies ---------------------------------------------------------------------

PROXIED = {"X-Forwarded-For": "203.0.113.50", "X-Forwarded-Proto": "https",
           "X-Forwarded-Host": "public.example"}


def test_forwarded_allow_ips_default_trusts_localhost():
    with ForkerProcess("--interface", "wsgi", app=ENVIRON_APP) as server:
        env = environ(server, headers=PROXIED)
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["SERVER_NAME"]) == \
            ("203.0.113.50", "https", "127.0.0.1")  # the host only with --forwarded-host
        assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
        assert env["SERVER_PORT"] == str(server.port)


def test_forwarded_allow_ips_default_trusts_localhost_over_ipv6():
    """::1 is trusted by default too, as in gunicorn: a proxy on the same host
    over IPv6 is believed."""
    with ForkerProcess("--interface", "wsgi", app=ENVIRON_APP, bind="[::1]:0") as server:
        status, _, body = request(server.address, "GET", "/", headers=PROXIED)
        assert status == 200
        env = json.loads(body)
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.50", "https")


def test_forwarded_host_takes_the_host_from_trusted_proxies():
    with ForkerProcess("--interface", "wsgi", "--forwarded-host", app=ENVIRON_APP) as server:
        env = environ(server, headers=PROXIED)
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["SERVER_NAME"]) == \
            ("203.0.113.50", "https", "public.example")
        assert (env["HTTP_HOST"], env["SERVER_PORT"]) == ("public.example", "443")


@pytest.mark.parametrize("allowed", ["10.0.0.1", "192.168.0.0/16,10.0.0.0/8"])
def test_forwarded_allow_ips_excluding_the_peer(allowed):
    with ForkerProcess("--interface", "wsgi", "--forwarded-allow-ips", allowed,
                       app=ENVIRON_APP) as server:
        env = environ(server, headers=PROXIED)
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["SERVER_NAME"]) == \
            ("127.0.0.1", "http", "127.0.0.1")


@pytest.mark.parametrize("allowed", ["*", "127.0.0.0/8"])
def test_forwarded_allow_ips_including_the_peer(allowed):
    with ForkerProcess("--interface", "wsgi", "--forwarded-allow-ips", allowed,
                       app=ENVIRON_APP) as server:
        env = environ(server, headers={"Forwarded": "for=198.51.100.7;proto=https"})
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("198.51.100.7", "https")


# -- logs --------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, pattern", [
    ("common", r'^127\.0\.0\.1 - - \[[^]]+\] "GET /logged\?q=1 HTTP/1\.1" 200 \S+$'),
    ("combined", r'^127\.0\.0\.1 - - \[[^]]+\] "GET /logged\?q=1 HTTP/1\.1" 200 \S+ '
                 r'"http://referrer/" "agent/1\.0"$'),
    ("%(m)s %(U)s %(q)s %(s)s %({x-id}i)s", r"^GET /logged q=1 200 abc$"),
])
def test_access_log_file_and_format(tmp_path, fmt, pattern):
    path = str(tmp_path / "access.log")
    with ForkerProcess("--access-log", path, "--access-log-format", fmt) as server:
        request(server.port, "GET", "/logged?q=1", headers={"Referer": "http://referrer/",
                                                            "User-Agent": "agent/1.0",
                                                            "X-Id": "abc"})
        lines = wait_lines(path, 1, keep=not_probe)  # flushed within a second, unasked
    assert len(lines) == 1 and re.match(pattern, lines[0]), lines


def test_access_log_json_to_stdout():
    with ForkerProcess("--access-log", "-", "--access-log-format", "json") as server:
        request(server.port, "POST", "/j", body=b"xyz")
        server.wait_for(r'"method":"POST"', stream="stdout")
    records = [json.loads(line) for line in server.stdout.splitlines() if '"POST"' in line]
    assert records[0]["target"] == "/j" and records[0]["status"] == 200
    assert records[0]["remote_addr"] == "127.0.0.1"


def test_access_log_counts_bytes_and_time(tmp_path):
    path = str(tmp_path / "access.log")
    with ForkerProcess("--access-log", path, "--access-log-format", "%(U)s %(B)s %(D)s") as server:
        request(server.port, "GET", "/counted")
        lines = wait_lines(path, 1, keep=lambda line: "/counted" in line)
    path_, sent, micros = lines[0].split()
    assert sent == "11" and int(micros) > 0


def test_access_log_is_off_by_default(tmp_path):
    with ForkerProcess(cwd=str(tmp_path)) as server:
        request(server.port, "GET", "/quiet")
        time.sleep(1.2)
    assert "/quiet" not in server.stdout and "/quiet" not in server.stderr
    assert os.listdir(tmp_path) == []


def test_access_log_reopens_on_usr1(tmp_path):
    path = str(tmp_path / "access.log")
    with ForkerProcess("--access-log", path, "--access-log-format", "common") as server:
        request(server.port, "GET", "/before")
        assert wait_lines(path, 1, keep=lambda line: "/before" in line)
        os.rename(path, path + ".1")
        server.signal(signal.SIGUSR1)
        # until the worker has reopened: a request logged in the new file
        deadline = time.monotonic() + 10  # a bound on a hang
        for n in range(1000):
            request(server.port, "GET", f"/probe{n}")
            if wait_lines(path, 1, timeout=0.2, keep=lambda line: "/probe" in line):
                break
            assert time.monotonic() < deadline, "no log line in the reopened file"
        request(server.port, "GET", "/after")
        lines = wait_lines(path, 1, keep=lambda line: "/after" in line)
    assert lines and "/after" in lines[0]
    with open(path + ".1") as f:
        assert "/after" not in f.read()


def test_error_log_file_carries_worker_ids(tmp_path):
    path = str(tmp_path / "error.log")
    port = free_port()
    with ForkerProcess("--error-log", path, "--interface", "wsgi", app="wsgiapps:misc_app",
                       bind=f"127.0.0.1:{port}") as server:
        assert request(server.port, "GET", "/raise")[0] == 500
        lines = wait_lines(path, 1, keep=lambda line: "application failure" in line)
    with open(path) as f:
        text = f.read()
    assert re.search(r"\[\d+\] \[master\] \[INFO\] listening on 127\.0\.0\.1", text)
    assert re.search(r"\[\d+\] \[worker 0\] \[ERROR\] application raised handling GET /raise",
                     text), text
    assert lines and "application failure" not in server.stderr


def test_log_level(tmp_path):
    port = free_port()
    with ForkerProcess("--log-level", "warning", bind=f"127.0.0.1:{port}") as server:
        request(server.port)
    assert "[INFO]" not in server.stderr
    with ForkerProcess("--log-level", "debug") as server:
        request(server.port)
    assert "[INFO]" in server.stderr


# -- configuration sources ---------------------------------------------------------

def test_config_file(tmp_path):
    access = tmp_path / "access.log"
    config = tmp_path / "settings.py"
    config.write_text(textwrap.dedent(f"""
        import multiprocessing  # imports and other names are ignored
        interface = "wsgi"
        threads = 2
        accesslog = {str(access)!r}   # gunicorn's spelling
        access_log_format = "common"
        root_path = "/cfg"
        wsgi_app = "wsgiapps:environ_app"
    """))
    with ForkerProcess("--config", str(config)) as server:
        env = environ(server, "/cfg/p")
        assert env["SCRIPT_NAME"] == "/cfg" and env["wsgi.multithread"] is True
        assert wait_lines(str(access), 1, keep=lambda line: "/cfg/p" in line)


def test_precedence_env_then_file_then_flags(tmp_path):
    config = tmp_path / "settings.py"
    config.write_text('root_path = "/from-file"\nthreads = 2\n')
    env = {"FORKER_INTERFACE": "wsgi", "FORKER_ROOT_PATH": "/from-env",
           "FORKER_THREADS": "1", "FORKER_FORWARDED_ALLOW_IPS": "10.9.9.9"}
    with ForkerProcess("--config", str(config), "--root-path", "/from-flag", app=ENVIRON_APP,
                       env=env) as server:
        e = environ(server, "/from-flag/x", headers=PROXIED)
        assert e["SCRIPT_NAME"] == "/from-flag"      # flag over file and env
        assert e["wsgi.multithread"] is True          # file over env
        assert e["REMOTE_ADDR"] == "127.0.0.1"        # env over default (localhost untrusted)


def test_hup_rereads_the_config_file(tmp_path):
    config = tmp_path / "settings.py"
    config.write_text('root_path = "/first"\n')
    with ForkerProcess("--config", str(config), "--interface", "wsgi", app=ENVIRON_APP) as server:
        assert environ(server, "/first/x")["SCRIPT_NAME"] == "/first"
        config.write_text('root_path = "/second"\n')
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while environ(server, "/second/x")["SCRIPT_NAME"] != "/second":
            assert time.monotonic() < deadline, server.stderr
            time.sleep(0.1)


# -- errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--workers", "zero"], "argument --workers"),
    (["--threads", "0"], "argument --threads: must be at least 1"),
    (["--interface", "rsgi"], "argument --interface"),
    (["--bind", "127.0.0.1:99999"], "argument --bind"),
    (["--forwarded-allow-ips", "not-an-ip"], "argument --forwarded-allow-ips"),
    (["--access-log-format", "%(h"], "argument --access-log-format"),
    (["--config", "/nonexistent/settings.py"], "argument --config: no such file"),
    (["no_such_module:app"], "no module named 'no_such_module'"),
    (["--chdir", "/nonexistent/dir", "wsgiapps:native"], "argument --chdir"),
])
def test_bad_flags_exit_2_naming_them(args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2, result
    assert fragment in result.stderr
    # one line, not argparse's usage of every option before it, nor a traceback
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_environment_variable_exits_2():
    result = run_cli(env={"FORKER_KEEPALIVE": "forever"})
    assert result.returncode == 2 and "FORKER_KEEPALIVE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_config_file_value_exits_2(tmp_path):
    config = tmp_path / "settings.py"
    config.write_text("workers = -1\n")
    result = run_cli("--config", str(config))
    assert result.returncode == 2 and "settings.py: workers: must be at least 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_preload_reports_a_failing_factory(tmp_path):
    (tmp_path / "failing.py").write_text("def make():\n    raise RuntimeError('no db')\n")
    result = run_cli("--preload", "--interface", "wsgi", "--chdir", str(tmp_path),
                     "--bind", "127.0.0.1:0", "failing:make()")
    assert result.returncode == 2
    assert "calling the factory 'failing:make()' failed" in result.stderr
    assert "RuntimeError: no db" in result.stderr


def test_preload_refuses_an_async_native_handler(tmp_path):
    (tmp_path / "asyncapp.py").write_text("async def app(request):\n    pass\n")
    result = run_cli("--preload", "--chdir", str(tmp_path), "--bind", "127.0.0.1:0",
                     "asyncapp:app")
    assert result.returncode == 2
    assert "is a coroutine function but not an ASGI application" in result.stderr


def test_console_script_entry_point():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert re.search(r'^forker = "forker\.cli:main"$', f.read(), re.M)
    code = "import sys; from forker.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("forker ")
    result = subprocess.run([sys.executable, "-c", code, "--bogus"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2 and "--bogus" in result.stderr


# -- engine and master flags reach the server ---------------------------------------

def test_server_header():
    with ForkerProcess("--server-header", "edge/1") as server:
        assert request(server.port)[1]["Server"] == "edge/1"


def test_keep_alive_zero_closes_connections():
    with ForkerProcess("--keep-alive", "0") as server:
        data = exchange(server.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # returns: closed
        response = parse_response(data)
        assert (response.version, response.status, response.body) == \
            ("HTTP/1.1", 200, b"greeting!!!")


def test_max_body_size():
    with ForkerProcess("--max-body-size", "10") as server:
        assert request(server.port, "POST", "/", body=b"x" * 11)[0] == 413
        assert request(server.port, "POST", "/", body=b"x" * 10)[0] == 200


def test_limit_request_line_and_fields():
    with ForkerProcess("--limit-request-line", "100", "--limit-request-fields", "5") as server:
        assert request(server.port, "GET", "/" + "a" * 200)[0] == 414
        assert request(server.port, "GET", "/",
                       headers={f"X-{i}": "v" for i in range(10)})[0] == 431


def test_pidfile(tmp_path):
    path = tmp_path / "forker.pid"
    with ForkerProcess("--pid", str(path)) as server:
        assert int(path.read_text().strip()) == server.pid
    assert not path.exists()


def test_max_requests_recycles_the_worker():
    with ForkerProcess("--interface", "wsgi", "--max-requests", "2", app=ENVIRON_APP) as server:
        pids = []
        for _ in range(6):
            pids.append(environ(server)["pid"])
        assert len(set(pids)) >= 2


def test_graceful_stop_exit_status():
    with ForkerProcess() as server:
        request(server.port)
        assert server.stop() == 0
