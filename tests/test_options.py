"""Every option's value is checked completely where it is read, in the master:
a value the worker loop could not use (a header value that would add a header,
a path it cannot encode, a number its C types cannot hold) is a ConfigError
naming the option, exit status 2 on the command line, and never a worker that
fails at boot. And every option the C core reads reaches its fk_loop_config
as given (round trip through the loop's own copy)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from forker import _worker, config as config_module
from forker.config import OPTIONS, Config
from forker.errors import ConfigError
from harness import ROOT, ForkerProcess, request, run_cli

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


def test_max_requests_beyond_a_c_int_serves():
    """The engine took max_requests as a C int: 3e9 failed every worker at boot."""
    with ForkerProcess("--max-requests", "3000000000", "--max-requests-jitter", "5") as server:
        status, _, body = request(server.port, "GET", "/")
        assert status == 200 and body
    assert server.proc.returncode == 0, server.stderr


# -- one path from the options table to fk_loop_config -------------------------------

FIELDS = dict(_worker.loop_config_fields())  # name -> kind, from csrc/fk_loop.h
C_OPTIONS = [option for option in OPTIONS if option.c_field]
SLOT = 512  # bytes of a worker's shared slot
# What the Engine sets itself: its arguments, and values derived from several options.
ENGINE_FIELDS = {"max_requests", "wake_fd", "notify_fd", "threaded", "parent_pid", "slot",
                 "stats", "constant_body", "proxy_allow", "proxy_allow_len", "shared_listeners",
                 "close_on_fin", "body_events"}


def loop_values(config, **engine):
    engine.setdefault("slot", bytearray(SLOT))
    return _worker.Engine(lambda request: b"", config, [], **engine).loop_config()


def expected(option, value):
    """What the option's value becomes in its field."""
    value = option.convert(option.name, value)
    kind = FIELDS[option.c_field]
    if kind == "ms":
        return math.ceil(round(value * 1000, 6))
    if kind == "text":
        return None if value is None else value.encode("latin-1")
    return int(value)


def test_every_field_has_one_source():
    from_options = [option.c_field for option in C_OPTIONS]
    assert len(set(from_options)) == len(from_options)
    assert set(FIELDS) == set(from_options) | ENGINE_FIELDS | {
        name for name, kind in FIELDS.items() if kind == "len"}
    assert not set(from_options) & ENGINE_FIELDS


def test_every_c_facing_option_round_trips():
    values = {}
    for k, option in enumerate(C_OPTIONS):  # values unlike the defaults and each other
        kind = FIELDS[option.c_field]
        values[option.name] = {"ms": 1.25 + k, "count": 1000 + 7 * k, "u64": 1000 + 7 * k,
                               "int": not option.default_value(),
                               "text": f"/v{k}"}[kind]
    config = Config(**values, max_requests=77)
    wake_r, wake_w = os.pipe()  # the loop watches wake_fd: it must be open
    try:
        got = loop_values(config, wake_fd=wake_r, parent_pid=4242)
    finally:
        os.close(wake_r)
        os.close(wake_w)
    for option in C_OPTIONS:
        assert got[option.c_field] == expected(option, values[option.name]), option.name
    assert (got["max_requests"], got["wake_fd"], got["parent_pid"]) == (77, wake_r, 4242)
    assert got["server_len"] == len(values["server_header"])
    assert got["health_path_len"] == len(values["health_path"])
    assert got["shared_listeners"] == 1 and got["threaded"] == 0 and got["notify_fd"] == -1
    assert got["slot"] != 0 and got["constant_body"] is None
    assert got["stats"] == 0  # statsd off: the loop counts nothing of it


def test_derived_fields():
    config = Config(reuse_port=True, proxy_protocol=True, forwarded_allow_ips="10.0.0.0/8,::1",
                    server_header="", body_buffer_size=None, threads=2)
    got = loop_values(config)
    assert got["shared_listeners"] == 0
    assert got["proxy_allow"] != 0 and got["proxy_allow_len"] == 2
    assert got["threaded"] == 1 and got["notify_fd"] >= 0
    assert got["body_buffer_size"] == 64 << 10  # None: the default for threads
    assert got["server"] == b"" and got["server_len"] == 0
    assert got["health_path"] is None and got["health_path_len"] == 0
    assert loop_values(Config(body_buffer_size=None))["body_buffer_size"] == 0
    got = loop_values(Config(max_requests=1 << 62, max_requests_jitter=5))["max_requests"]
    assert (1 << 62) <= got <= (1 << 62) + 5  # this worker's share of the jitter
    assert loop_values(Config(threads=4), asynchronous=True)["threaded"] == 1


def accepted(name, value):
    try:
        Config(**{name: value})
    except ValueError:
        return False
    return True


def extremes(option):
    """The least value the option's validator accepts (of a few), and the greatest integer."""
    name = option.name
    lo = next(v for v in (0, 0.1, 1, 64) if accepted(name, v))
    # (gunicorn's 0 for a limit means its largest value: 1 to 63 are refused)
    hi = next(v for v in (1, 64, lo) if v >= lo and accepted(name, v))
    assert accepted(name, hi)
    while accepted(name, hi * 2) and hi < 1 << 80:
        hi *= 2
    step = hi
    while step:  # the greatest accepted, by bisection
        if accepted(name, hi + step):
            hi += step
        step //= 2
    return lo, hi


@pytest.mark.parametrize("option", [o for o in C_OPTIONS if FIELDS[o.c_field] != "text"
                                    and not isinstance(o.default_value(), bool)],
                         ids=lambda option: option.name)
def test_every_value_a_validator_accepts_fits_its_field(option):
    for value in extremes(option):
        got = loop_values(Config(**{option.name: value}))
        assert got[option.c_field] == expected(option, value), (option.name, value)


def test_a_positive_time_never_becomes_none():
    got = loop_values(Config(request_timeout=0.0004, keepalive=0.0001, graceful_timeout=0.0002))
    assert (got["request_timeout_ms"], got["keepalive_ms"], got["graceful_ms"]) == (1, 1, 1)


def without_c_field(field):
    return [option._replace(c_field=None) if option.c_field == field else option
            for option in OPTIONS]


def test_a_field_nothing_sets_stops_the_engine(monkeypatch):
    monkeypatch.setattr(config_module, "OPTIONS", without_c_field("min_rate"))
    with pytest.raises(ValueError, match=r"fk_loop_config\.min_rate: no option"):
        loop_values(Config())


def test_a_c_field_that_is_no_field_stops_the_engine(monkeypatch):
    options = [option._replace(c_field="min_rate_typo") if option.c_field == "min_rate"
               else option for option in OPTIONS]
    monkeypatch.setattr(config_module, "OPTIONS", options)
    with pytest.raises(ValueError, match="min_request_rate: c_field 'min_rate_typo'"):
        loop_values(Config())


# -- --help ---------------------------------------------------------------------------

@pytest.mark.parametrize("default,shown", [("ok\n", "'ok\\n'"), ("a\tb", "'a\\tb'"),
                                           (" x", "' x'"), ("plain text", "plain text"),
                                           (["a", "b"], "a,b"), (8190, "8190")])
def test_help_shows_a_default_as_it_is(monkeypatch, default, shown):
    from forker import cli

    option = config_module.Option("probe", default, lambda name, value: value, "A probe.",
                                  "--probe", "X")
    monkeypatch.setattr(cli, "OPTIONS", [option])
    text = " ".join(cli.build_parser().format_help().split())
    assert f"A probe. [default: {shown}]" in text, text
