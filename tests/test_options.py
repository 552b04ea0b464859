"""Every option's value is checked completely where it is read, in the master:
a value the worker loop could not use (a header value that would add a header,
a path it cannot encode, a number its C types cannot hold) is a ConfigError
naming the option, exit status 2 on the command line, and never a worker that
fails at boot. And every option the C core reads reaches its fk_loop_config
as given (round trip through the loop's own copy)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cli_server import ROOT, run_cli
from forker.config import Config
from forker.errors import ConfigError

BAD_VALUES = [
    ("server_header", "a\r\nX-Evil: 1"),
    ("server_header", "a\nX-Evil: 1"),
    ("server_header", "a\rb"),
    ("server_header", "a\0b"),
    ("server_header", "a\x7fb"),
    ("server_header", "edge\u20ac"),
    ("server_header", " edge"),
    ("server_header", "edge\t"),
    ("health_path", "/h\u00e9alth"),
    ("health_path", "/\u20ac"),
    ("health_path", "/health z"),
    ("health_path", "/health\r\n"),
    ("health_path", "/health?x=1"),
    ("health_path", "/health#top"),
    ("health_path", "healthz"),
    ("ciphers", "ECDHE+AESGCM:\u00e9"),
    ("ciphers", "ECDHE+AESGCM\n"),
    ("root_path", "/app\r\n"),
    ("root_path", "/\u20ac"),
    ("pidfile", "/tmp/a\0b"),
    ("certfile", "/tmp/a\0b"),
    ("bind", "unix:/tmp/a\0b"),
    ("user", -1),
    ("user", 1 << 32),
    ("group", "4294967295"),
    ("workers", 2.5),
    ("max_requests", float("inf")),
]


@pytest.mark.parametrize("name,value", BAD_VALUES, ids=[f"{n}={v!r}" for n, v in BAD_VALUES])
def test_bad_value_is_a_config_error_naming_the_option(name, value):
    with pytest.raises(ConfigError) as caught:
        Config(**{name: value})
    message = str(caught.value)
    assert message.startswith(name + ": "), message
    assert "\n" not in message and "\r" not in message, message


GOOD_VALUES = [
    ("server_header", "edge/1.2 (Linux; x86_64)"),
    ("server_header", "caf\u00e9"),  # Latin-1 is what the loop sends
    ("server_header", "a\tb"),
    ("server_header", ""),
    ("health_path", "/healthz"),
    ("health_path", "/h%C3%A9alth"),
    ("health_path", ""),
    ("root_path", "/caf\u00e9"),
    ("ciphers", "ECDHE+AESGCM:!aNULL"),
    ("user", 0),
    ("workers", 2.0),
]


@pytest.mark.parametrize("name,value", GOOD_VALUES, ids=[f"{n}={v!r}" for n, v in GOOD_VALUES])
def test_good_value_is_kept(name, value):
    expected = None if name == "health_path" and value == "" else value
    assert getattr(Config(**{name: value}), name) == expected


def cli_error(*args: str, env=None) -> str:
    """`python -m forker ARGS` must stop at once with status 2 and one error line."""
    try:
        result = run_cli("--bind", "127.0.0.1:0", "--workers", "1", *args, env=env, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{args!r}: the server started instead of refusing the value") from exc
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_server_header_cannot_add_a_header():
    line = cli_error("--server-header", "a\r\nX-Evil: 1")
    assert line.startswith("forker: error: argument --server-header: ")


def test_non_latin1_health_path_is_exit_2_not_a_boot_loop():
    line = cli_error("--health-path", "/h\u00e9alth\u20ac")
    assert line.startswith("forker: error: argument --health-path: ")


def test_bad_value_from_the_environment_names_the_variable():
    line = cli_error(env={"FORKER_SERVER_HEADER": "edge\u20ac"})
    assert "FORKER_SERVER_HEADER" in line


def test_serve_refuses_the_value_before_forking():
    code = ("import forker\n"
            "from forker.errors import ConfigError\n"
            "try:\n"
            "    forker.serve(lambda request: b'', '127.0.0.1:0', health_path='/\\u20ac')\n"
            "except ConfigError as exc:\n"
            "    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"})
    assert result.stdout.startswith("health_path: "), (result.stdout, result.stderr)

