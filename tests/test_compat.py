"""gunicorn's settings and flags under forker: every setting the installed
gunicorn knows (gunicorn.config.KNOWN_SETTINGS) has a row in
forker.compat.SETTINGS, its flags are forker's, and its default asks nothing
forker would warn about; a gunicorn.conf.py and a gunicorn command line are
served with the same effect (through `python -m forker`)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from pathlib import Path

import gunicorn.config as gunicorn_config
import pytest

from forker import compat
from forker.cli import GUNICORN_DEST, build_parser, collect_all
from forker.config import OPTIONS_BY_NAME
from harness import run_cli

KNOWN = {setting.name: setting for setting in gunicorn_config.KNOWN_SETTINGS}


def _kind(setting) -> str:
    if setting.action == "store_true":
        return "switch"
    if setting.action == "store_const":
        return "off"
    if setting.action == "append":
        return "append"
    if getattr(setting, "nargs", None) == "?":
        return "optional"
    return "value"


def test_every_gunicorn_setting_has_a_row():
    assert sorted(set(KNOWN) - set(compat.SETTINGS)) == []
    assert sorted(set(compat.SETTINGS) - set(KNOWN)) == []


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_the_row_has_gunicorns_flags_and_the_parser_takes_them(name):
    setting, row = KNOWN[name], compat.SETTINGS[name]
    assert row.flags == tuple(setting.cli or ()), name
    if not setting.cli:
        return
    assert row.kind == _kind(setting), name
    parser = build_parser()
    for flag in setting.cli:
        action = parser._option_string_actions[flag]
        if action.dest.startswith(GUNICORN_DEST):
            assert action.dest == GUNICORN_DEST + name
        else:  # forker's own option, under gunicorn's flag
            assert row.to == action.dest, (flag, row.to, action.dest)
            assert action.dest in OPTIONS_BY_NAME


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_gunicorns_default_value_passes_in_silence(name):
    """A gunicorn.conf.py that spells out a default neither warns nor fails."""
    default = KNOWN[name].default
    if name == "user":
        default = os.geteuid()
    elif name == "group":
        default = os.getegid()
    compat.take_warnings()
    config, extras = collect_all(argparse.Namespace(), {name: default}, {})
    assert compat.take_warnings() == []


@pytest.mark.parametrize("name, value, fragment", [
    ("worker_class", "gevent", "worker class 'gevent' is not supported; sync and gthread are"),
    ("worker_class", "uvicorn.workers.UvicornWebSocketWorker", "needs no worker class"),
    ("protocol", "uwsgi", "protocol = 'uwsgi': forker speaks HTTP/1.1 only"),
    ("dirty_apps", ["app:Task"], "dirty_apps = ['app:Task']: forker has no dirty arbiters"),
])
def test_settings_that_would_serve_something_else_are_refused_by_name(name, value, fragment):
    from forker.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        collect_all(argparse.Namespace(**{"config_path": "gunicorn.conf.py"}), {name: value}, {})
    assert fragment in str(info.value)
    assert str(info.value).startswith("gunicorn.conf.py: ")


@pytest.mark.parametrize("name, value, fragment", [
    ("syslog", True, "syslog = True: forker does not log to syslog"),
    ("http_protocols", "h2,h1", "forker serves HTTP/1.1 only"),
    ("secure_scheme_headers", {"X-FORWARDED-SSL": "on"}, "X-FORWARDED-SSL: on is not read"),
    ("sendfile", False, "sendfile = False: forker always sends file bodies"),
    ("spew", True, "spew = True"),
])
def test_settings_forker_lacks_are_warned_about_by_name(name, value, fragment):
    compat.take_warnings()
    collect_all(argparse.Namespace(), {name: value}, {})
    warnings = compat.take_warnings()
    assert len(warnings) == 1 and fragment in warnings[0], warnings


def test_gunicorn_names_and_values_map_to_forkers_options():
    settings = {"preload_app": True, "worker_class": "gthread", "worker_connections": 50,
                "accesslog": "-", "errorlog": "/tmp/e.log", "loglevel": "debug",
                "access_log_format": '%(h)s "%(r)s" %(s)s', "cert_reqs": 2,
                "proxy_protocol": "v2", "limit_request_line": 0, "keepalive": 2,
                "umask": "0o007", "raw_env": ["A=1"], "ciphers": None, "threads": 4}
    config, extras = collect_all(argparse.Namespace(), settings, {})
    assert config.preload is True and config.preload_app is True
    assert config.max_connections == 50 and config.threads == 4
    assert (config.access_log, config.error_log, config.log_level) == ("-", "/tmp/e.log", "debug")
    assert config.cert_reqs == "required" and config.proxy_protocol is True
    assert config.limit_request_line == 1 << 20 and config.keepalive == 2.0
    assert config.unix_socket_mode == 0o770
    assert config.ciphers == OPTIONS_BY_NAME["ciphers"].default
    assert extras == {"worker_class": "gthread", "raw_env": ["A=1"]}


@pytest.mark.parametrize("worker_class", ["asgi", "uvicorn.workers.UvicornWorker",
                                          "uvicorn_worker.UvicornWorker",
                                          "uvicorn.workers.UvicornH11Worker"])
def test_an_asgi_worker_class_is_the_asgi_interface(worker_class):
    """gunicorn's own ASGI worker and uvicorn's worker classes, as FastAPI's
    deployment guides use them, are forker's ASGI interface on its workers;
    gunicorn's ASGI settings map to forker's."""
    compat.take_warnings()
    config, extras = collect_all(argparse.Namespace(), {
        "worker_class": worker_class, "asgi_loop": "asyncio", "asgi_lifespan": "off",
        "websocket_max_message_size": 1 << 20}, {})
    assert (config.interface, config.loop, config.lifespan) == ("asgi", "asyncio", "off")
    assert config.ws_max_size == 1 << 20
    assert extras == {"worker_class": worker_class}
    assert compat.take_warnings() == []


SHORT_FLAGS = [
    (["-b", "127.0.0.1:9001", "-b", "unix:/tmp/s"], "bind", ["127.0.0.1:9001", "unix:/tmp/s"]),
    (["-w", "3"], "workers", 3),
    (["-t", "7"], "timeout", 7.0),
    (["-p", "/tmp/p.pid"], "pidfile", "/tmp/p.pid"),
    (["-u", "0"], "user", 0),
    (["-g", "0"], "group", 0),
    (["-n", "myname"], "proc_name", "myname"),
    (["--access-logfile", "-"], "access_log", "-"),
    (["--error-logfile", "/tmp/e"], "error_log", "/tmp/e"),
    (["--log-file", "/tmp/e"], "error_log", "/tmp/e"),
    (["--access-logformat", "%(h)s"], "access_log_format", "%(h)s"),
    (["--limit-request-field_size", "100"], "limit_request_field_size", 100),
    (["--cert-reqs", "1"], "cert_reqs", "optional"),
    (["--preload"], "preload", True),
    (["--proxy-protocol"], "proxy_protocol", True),
    (["--proxy-protocol", "off"], "proxy_protocol", False),
    (["-m", "077"], "unix_socket_mode", 0o700),
    (["--worker-connections", "9"], "max_connections", 9),
    (["-k", "sync"], "workers", OPTIONS_BY_NAME["workers"].default_value()),
    (["-k", "gthread", "--threads", "3"], "threads", 3),
]


@pytest.mark.parametrize("argv, name, value", SHORT_FLAGS)
def test_gunicorns_flags_set_forkers_options(argv, name, value):
    parser = build_parser()
    args = parser.parse_args(argv)
    config, _ = collect_all(args, {}, {})
    assert getattr(config, name) == value


def test_extras_from_flags():
    parser = build_parser()
    args = parser.parse_args(["-D", "-R", "-e", "A=1", "-e", "B=2", "--pythonpath", "x,y",
                              "--capture-output", "--check-config", "--print-config",
                              "--log-config", "l.ini", "--paste", "p.ini", "-c", "c.py",
                              "--log-syslog"])
    compat.take_warnings()
    _, extras = collect_all(args, {}, {})
    assert extras == {"daemon": True, "enable_stdio_inheritance": True, "raw_env": ["A=1", "B=2"],
                      "pythonpath": "x,y", "capture_output": True, "check_config": True,
                      "print_config": True, "logconfig": "l.ini", "paste": "p.ini",
                      "config": "c.py"}
    assert compat.take_warnings() == [
        "argument --log-syslog: syslog = True: forker does not log to syslog; the error log "
        "goes to --error-logfile, or anywhere with --log-config; ignored"]


def run(*argv: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_cli(*argv, cwd=str(cwd), timeout=timeout)


def test_k_refuses_other_worker_classes_with_a_message(tmp_path):
    out = run("-k", "gevent", "-b", "127.0.0.1:0", cwd=tmp_path)
    assert out.returncode == 2
    assert "argument --worker-class: worker_class: worker class 'gevent' is not supported" \
        in out.stderr or "worker class 'gevent' is not supported" in out.stderr
    assert "--threads N" in out.stderr and "Traceback" not in out.stderr


def test_print_config_reads_forker_conf_py_by_default(tmp_path):
    (tmp_path / "forker.conf.py").write_text("import multiprocessing\nworkers = 3\n"
                                             "preload_app = True\nbind = '127.0.0.1:9'\n")
    out = run("--print-config", "-w", "5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split() == ["workers", "=", "5"] for line in lines), out.stdout
    assert any(line.split() == ["preload", "=", "True"] for line in lines)
    assert any(line.split() == ["bind", "=", "['127.0.0.1:9']"] for line in lines)


def test_check_config_loads_the_application(tmp_path):
    (tmp_path / "good.py").write_text("def app(environ, start_response):\n    return []\n")
    (tmp_path / "bad.py").write_text("def app(environ, start_response):\n    return [\n")
    out = run("--check-config", "good:app", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = run("--check-config", "bad:app", cwd=tmp_path)
    assert out.returncode == 1 and "SyntaxError" in out.stderr


def test_paste_without_pastedeploy_is_refused_with_a_message(tmp_path):
    # paste.deploy as a missing install makes it, whatever is installed: a
    # namespace portion first on the path (PasteDeploy's own paste is one,
    # set up by a .pth file at start, which a regular package cannot shadow)
    (tmp_path / "paste" / "deploy").mkdir(parents=True)
    (tmp_path / "paste" / "deploy" / "__init__.py").write_text(
        "raise ImportError('No module named paste.deploy')\n")
    out = run("--paste", "development.ini", cwd=tmp_path)
    assert out.returncode == 2
    assert "PasteDeploy is not installed" in out.stderr and "Traceback" not in out.stderr


def test_the_default_bind_is_this_host_only(tmp_path):
    out = run("--print-config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert any(line.split() == ["bind", "=", "['127.0.0.1:8080']"]
               for line in out.stdout.splitlines()), out.stdout
    out = run("--print-config", "--bind", ":8080", cwd=tmp_path)
    assert any(line.split() == ["bind", "=", "[':8080']"] for line in out.stdout.splitlines())
    from forker.sockets import parse_address

    assert parse_address(":8080").target == ("0.0.0.0", 8080)  # all interfaces


def test_a_gunicorn_conf_py_is_read_by_default_after_forkers_own(tmp_path):
    """gunicorn reads ./gunicorn.conf.py without -c: a project moving over
    keeps its settings (they were ignored without a word); forker.conf.py,
    when both exist, is forker's own and wins."""
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\nbind = '127.0.0.1:9'\n")
    out = run("--print-config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert any(line.split() == ["workers", "=", "3"] for line in out.stdout.splitlines())
    (tmp_path / "forker.conf.py").write_text("workers = 4\n")
    out = run("--print-config", cwd=tmp_path)
    assert any(line.split() == ["workers", "=", "4"] for line in out.stdout.splitlines())


def test_gunicorns_environment_defaults():
    """PORT (platforms that route to it: 0.0.0.0:PORT), WEB_CONCURRENCY,
    FORWARDED_ALLOW_IPS and SCRIPT_NAME, below every explicit source, as in
    gunicorn; a bad one is named."""
    from forker.errors import ConfigError

    environ = {"PORT": "9000", "WEB_CONCURRENCY": "3", "FORWARDED_ALLOW_IPS": "10.0.0.0/8",
               "SCRIPT_NAME": "/app"}
    config, _ = collect_all(argparse.Namespace(), {}, environ)
    assert (config.bind, config.workers) == (["0.0.0.0:9000"], 3)
    assert (config.forwarded_allow_ips, config.root_path) == (["10.0.0.0/8"], "/app")
    config, _ = collect_all(argparse.Namespace(), {"bind": "127.0.0.1:1", "workers": 2},
                            dict(environ, FORKER_WORKERS="5"))
    assert (config.bind, config.workers) == (["127.0.0.1:1"], 2)
    with pytest.raises(ConfigError, match="environment variable WEB_CONCURRENCY"):
        collect_all(argparse.Namespace(), {}, {"WEB_CONCURRENCY": "many"})
