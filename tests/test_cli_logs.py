"""forker.logs in-process: error log lines, access log formats, buffering,
reopen. The flags that turn them on are exercised end to end in
test_cli_server.py."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from wsgi_request import Request  # noqa: E402

from forker import logs  # noqa: E402
from forker.config import Config  # noqa: E402
from forker.errors import ConfigError  # noqa: E402


@pytest.fixture(autouse=True)
def restore_logging():
    logger = logging.getLogger("forker")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    if logs._error_handler is not None and logs._error_handler not in handlers:
        logger.removeHandler(logs._error_handler)
        logs._error_handler.close()
    logs._error_handler = None
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
    logs.set_worker_id(None)


def request():
    return Request("GET", "/p/a?q=1", headers=[
        ("Host", "example.com"), ("Referer", "http://ref/"), ("User-Agent", 'ua "quoted"'),
        ("Authorization", "Basic dXNlcjpwdw=="), ("X-Trace", "abc")],
        remote_addr="192.0.2.5")


def lines_of(path):
    with open(path) as f:
        return f.read().splitlines()


def test_error_log_to_file_carries_worker_id(tmp_path):
    path = tmp_path / "error.log"
    logs.setup(Config(error_log=str(path), log_level="debug"))
    logging.getLogger("forker.error").info("in the master")
    logs.set_worker_id(3)
    logging.getLogger("forker.error").warning("in a worker")
    logging.getLogger("forker").debug("debug line")
    logs.flush()
    lines = lines_of(path)
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[master\] \[INFO\] "
                    r"in the master$", lines[0]), lines[0]
    assert lines[1].endswith(f"[{os.getpid()}] [worker 3] [WARNING] in a worker")
    assert lines[2].endswith("[DEBUG] debug line")


def test_log_level_filters(tmp_path):
    path = tmp_path / "error.log"
    logs.setup(Config(error_log=str(path), log_level="warning"))
    logging.getLogger("forker.error").info("hidden")
    logging.getLogger("forker.error").error("shown")
    logs.flush()
    assert [line.rsplit("] ", 1)[1] for line in lines_of(path)] == ["shown"]


def test_setup_is_idempotent(tmp_path):
    path = tmp_path / "error.log"
    logs.setup(Config(error_log=str(path)))
    logs.setup(Config(error_log=str(path)))
    logging.getLogger("forker").info("once")
    logs.flush()
    assert len(lines_of(path)) == 1


def test_access_logger_is_off_by_default():
    assert logs.access_logger(Config()) is None


def test_access_logger_sets_the_worker_id():
    logs.access_logger(Config(), 7)
    assert logs._worker_label == "worker 7"


@pytest.mark.parametrize("fmt, pattern", [
    ("common", r'^192\.0\.2\.5 - user \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
               r'"GET /p/a\?q=1 HTTP/1\.1" 200 1234$'),
    ("combined", r'^192\.0\.2\.5 - user \[[^]]+\] "GET /p/a\?q=1 HTTP/1\.1" 200 1234 '
                 r'"http://ref/" "ua \\"quoted\\""$'),
    ("%(h)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s %(M)s %(D)s %({x-trace}i)s %({nope}i)s "
     "%(p)s %({content-type}o)s",
     r"^192\.0\.2\.5 GET /p/a q=1 HTTP/1\.1 200 1234 1234 12 12500 abc - <\d+> -$"),
])
def test_access_formats(tmp_path, fmt, pattern):
    path = tmp_path / "access.log"
    access = logs.access_logger(Config(access_log=str(path), access_log_format=fmt))
    access(request(), 200, 1234, 0.0125)
    access.flush()
    (line,) = lines_of(path)
    assert re.match(pattern, line), line
    access.close()


def test_access_json(tmp_path):
    path = tmp_path / "access.log"
    access = logs.access_logger(Config(access_log=str(path), access_log_format="json"))
    access(request(), 404, 0, 0.5)
    access.close()
    record = json.loads(lines_of(path)[0])
    assert record["remote_addr"] == "192.0.2.5"
    assert record["method"] == "GET" and record["target"] == "/p/a?q=1"
    assert record["status"] == 404 and record["bytes"] == 0 and record["duration"] == 0.5
    assert record["user_agent"] == 'ua "quoted"' and record["host"] == "example.com"


def test_access_lines_escape_control_characters(tmp_path):
    path = tmp_path / "access.log"
    access = logs.access_logger(Config(access_log=str(path), access_log_format="combined"))
    access(Request(headers=[("Host", "h"), ("User-Agent", "evil\x1b[31m\x7f")]), 200, 0, 0)
    access.close()
    assert lines_of(path)[0].endswith('"-" "evil\\x1b[31m\\x7f"')


def test_access_log_is_buffered_and_flushed_within_a_second(tmp_path):
    path = tmp_path / "access.log"
    access = logs.access_logger(Config(access_log=str(path), access_log_format="common"))
    access(request(), 200, 1, 0)
    assert os.path.getsize(path) == 0  # buffered, not written by the request
    deadline = time.monotonic() + 3
    while os.path.getsize(path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(lines_of(path)) == 1  # the background flush wrote it
    access.close()


def test_access_log_flushes_large_buffers_at_once(tmp_path):
    path = tmp_path / "access.log"
    access = logs.access_logger(Config(access_log=str(path), access_log_format="common"))
    for _ in range(2000):
        access(request(), 200, 1, 0)
    assert len(lines_of(path)) >= 1000
    access.close()
    assert len(lines_of(path)) == 2000


def test_reopen_after_rotation(tmp_path):
    error_path, access_path = tmp_path / "error.log", tmp_path / "access.log"
    logs.setup(Config(error_log=str(error_path)))
    access = logs.access_logger(Config(access_log=str(access_path), access_log_format="common"))
    logging.getLogger("forker").info("before")
    access(request(), 200, 1, 0)
    access.flush()
    os.rename(error_path, tmp_path / "error.log.1")
    os.rename(access_path, tmp_path / "access.log.1")
    logs.reopen()
    logging.getLogger("forker").info("after")
    access(request(), 201, 1, 0)
    logs.flush()
    assert lines_of(error_path)[0].endswith("after")
    assert " 201 " in lines_of(access_path)[0]
    assert lines_of(tmp_path / "access.log.1")[0].split('" ')[1].startswith("200")
    access.close()


@pytest.mark.parametrize("fmt", ["%(h", "%(h)d %(s)s", "%"])
def test_bad_custom_format_is_a_config_error(fmt):
    with pytest.raises(ConfigError, match="access_log_format"):
        Config(access_log_format=fmt)
