"""A logging configuration written for gunicorn, served by forker: the loggers
gunicorn.error and gunicorn.access routed to files by an ini file
(--log-config), a JSON file (--log-config-json) or a logconfig_dict in a
gunicorn.conf.py. The access line and the error log's lines (the master's and
a worker's traceback) land where the configuration says, and not on forker's
own standard error."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from harness import ForkerProcess, free_port, request, run_cli

# gunicorn's examples/logging.conf, the shape gunicorn users have: %(here)s is
# the directory of the file (gunicorn passes it to fileConfig)
INI = """\
[loggers]
keys=root, gunicorn.error, gunicorn.access

[handlers]
keys=console, error_file, access_file

[formatters]
keys=generic, access

[logger_root]
level=INFO
handlers=console

[logger_gunicorn.error]
level=INFO
handlers=error_file
propagate=1
qualname=gunicorn.error

[logger_gunicorn.access]
level=INFO
handlers=access_file
propagate=0
qualname=gunicorn.access

[handler_console]
class=StreamHandler
formatter=generic
args=(sys.stdout, )

[handler_error_file]
class=logging.FileHandler
formatter=generic
args=('%(here)s/error.log',)

[handler_access_file]
class=logging.FileHandler
formatter=access
args=('%(here)s/access.log',)

[formatter_generic]
format=%(asctime)s [%(process)d] [%(levelname)s] %(message)s
datefmt=%Y-%m-%d %H:%M:%S
class=logging.Formatter

[formatter_access]
format=%(message)s
class=logging.Formatter
"""


def dict_config(directory: Path) -> dict:
    return {  # gunicorn updates its defaults key by key: a root of one's own, or theirs
        "version": 1,  # refers to a "console" handler this one does not define
        "root": {"level": "WARNING", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_file"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access_file"],
                                "propagate": False},
        },
        "handlers": {
            "error_file": {"class": "logging.FileHandler", "formatter": "generic",
                           "filename": str(directory / "error.log")},
            "access_file": {"class": "logging.FileHandler", "formatter": "access",
                            "filename": str(directory / "access.log")},
        },
        "formatters": {
            "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"},
            "access": {"format": "%(message)s"},
        },
    }


def start(kind: str, directory: Path, *extra: str) -> ForkerProcess:
    if kind == "ini":
        (directory / "logging.ini").write_text(INI)
        args = ["--log-config", str(directory / "logging.ini")]
    elif kind == "json":
        (directory / "logging.json").write_text(json.dumps(dict_config(directory)))
        args = ["--log-config-json", str(directory / "logging.json")]
    else:
        (directory / "gunicorn.conf.py").write_text(
            f"logconfig_dict = {dict_config(directory)!r}\n")
        args = ["-c", str(directory / "gunicorn.conf.py")]
    port = free_port()
    # no "listening on" line on standard error to read a port from: it goes to error.log
    return ForkerProcess(*args, *extra, app="wsgiapps:misc_app", bind=f"127.0.0.1:{port}",
                         cwd=str(directory))


def wait_for_text(path: Path, *fragments: str, timeout: float = 30.0) -> str:
    """The file's text once it holds every fragment (a deadline bounds a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if all(fragment in text for fragment in fragments):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{fragments} not all in {path}:\n{text}")
        time.sleep(0.02)


@pytest.mark.parametrize("kind", ["ini", "json", "dict"])
def test_gunicorn_error_and_access_go_where_the_configuration_says(tmp_path, kind):
    with start(kind, tmp_path) as server:
        status, _, body = request(server.port, "GET", "/head?logged=1")
        assert (status, body) == (200, b"hello")
        assert request(server.port, "GET", "/raise").status == 500
        access = wait_for_text(tmp_path / "access.log", '"GET /head?logged=1 HTTP/1.1" 200',
                               '"GET /raise HTTP/1.1" 500')
        error = wait_for_text(tmp_path / "error.log", f"listening on 127.0.0.1:{server.port}",
                              "RuntimeError: application failure")
        assert server.stop() == 0
    # the master's own lines and the worker's traceback, in the configured format
    assert "[INFO] forker master pid" in error and "[ERROR] " in error
    assert "Traceback" in error and "listening on" not in access
    lines = [line for line in access.splitlines() if "OPTIONS" not in line]  # readiness probe
    assert len(lines) == 2 and all(line.startswith("127.0.0.1 - - [") for line in lines)
    # nothing of forker's error log on its standard error: the configuration owns it
    assert "listening on" not in server.stderr and "application failure" not in server.stderr
    if kind == "ini":  # gunicorn.error propagates to the root logger's console (stdout)
        assert f"listening on 127.0.0.1:{server.port}" in server.stdout


def test_usr1_reopens_the_configurations_files(tmp_path):
    """logrotate moves the files and sends USR1: the lines after it go to new
    files, in the master and in the workers, as gunicorn reopens every
    FileHandler."""
    with start("ini", tmp_path) as server:
        request(server.port, "GET", "/head?before")
        wait_for_text(tmp_path / "access.log", "GET /head?before ")
        os.rename(tmp_path / "access.log", tmp_path / "access.log.1")
        os.rename(tmp_path / "error.log", tmp_path / "error.log.1")
        server.signal(signal.SIGUSR1)
        wait_for_text(tmp_path / "error.log.1", "USR1: reopening log files")
        deadline = time.monotonic() + 30
        attempt = 0
        while not (tmp_path / "access.log").exists():  # until the worker's USR1 has come
            assert time.monotonic() < deadline, "the worker did not reopen access.log"
            attempt += 1
            request(server.port, "GET", f"/head?after-{attempt}")
        attempt += 1
        request(server.port, "GET", f"/head?after-{attempt}")
        wait_for_text(tmp_path / "access.log", f"GET /head?after-{attempt} ")
        assert server.stop() == 0
    assert "?before" in (tmp_path / "access.log.1").read_text()
    assert "?before" not in (tmp_path / "access.log").read_text()
    # the master's lines after USR1 are in the new error.log
    assert "exiting with status 0" in wait_for_text(tmp_path / "error.log", "exiting")
    assert "exiting" not in (tmp_path / "error.log.1").read_text()


def test_a_missing_configuration_file_is_exit_2_naming_the_option(tmp_path):
    out = run_cli("--log-config", str(tmp_path / "nowhere.ini"), cwd=str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (f"forker: error: argument --log-config: cannot "
                                          f"configure logging: no such file: "
                                          f"{tmp_path / 'nowhere.ini'}")
