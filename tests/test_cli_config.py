"""The command line's parsing in-process: every OPTIONS row has its flag, and
defaults < FORKER_* < --config file < flags. The real `python -m forker`
is exercised in test_cli_server.py."""

from __future__ import annotations

import pytest

from forker import __version__
from forker.cli import build_parser, configure
from forker.config import OPTIONS, Config
from harness import run_cli


def parse(argv, environ=None, settings=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args, configure(args, parser, settings or {}, environ or {})


def test_every_option_with_a_flag_is_on_the_command_line():
    text = build_parser().format_help()
    for option in OPTIONS:
        if option.flag:
            assert option.flag in text, option.flag


def test_defaults_match_config():
    _, config = parse([])
    assert config.as_dict() == Config().as_dict()


def test_flags_set_options():
    _, config = parse(["--bind", "127.0.0.1:9000", "--bind", "unix:/tmp/x.sock",
                       "--workers", "2", "--threads", "4", "--interface", "wsgi",
                       "--access-log", "-", "--access-log-format", "json",
                       "--forwarded-allow-ips", "10.0.0.0/8, 127.0.0.1",
                       "--root-path", "/app", "--log-level", "debug", "--keep-alive", "2.5"])
    assert config.bind == ["127.0.0.1:9000", "unix:/tmp/x.sock"]
    assert (config.workers, config.threads, config.interface) == (2, 4, "wsgi")
    assert (config.access_log, config.access_log_format) == ("-", "json")
    assert config.forwarded_allow_ips == ["10.0.0.0/8", "127.0.0.1"]
    assert config.root_path == "/app" and config.log_level == "debug"
    assert config.keepalive == 2.5


def test_boolean_flags():
    boolean = [o for o in OPTIONS if o.flag and isinstance(o.default, bool)]
    if not boolean:
        pytest.skip("no boolean options")
    option = boolean[0]
    _, config = parse([option.flag])
    assert getattr(config, option.name) is True
    _, config = parse(["--no-" + option.flag[2:]])
    assert getattr(config, option.name) is False


def test_precedence_env_file_flags():
    env = {"FORKER_WORKERS": "3", "FORKER_THREADS": "2", "FORKER_LOG_LEVEL": "error",
           "FORKER_ROOT_PATH": "/env"}
    settings = {"workers": 5, "threads": 6, "root_path": "/file", "unrelated": object()}
    _, config = parse(["--workers", "7"], env, settings)
    assert config.workers == 7           # flag beats file and env
    assert config.threads == 6           # file beats env
    assert config.log_level == "error"   # env beats default
    assert config.root_path == "/file"


def test_gunicorn_spellings_in_config_file():
    _, config = parse([], settings={"accesslog": "-", "errorlog": "/tmp/e.log",
                                    "loglevel": "warning"})
    assert (config.access_log, config.error_log, config.log_level) == ("-", "/tmp/e.log",
                                                                       "warning")


@pytest.mark.parametrize("argv, environ, settings, fragment", [
    (["--workers", "0"], None, None, "argument --workers: must be at least 1"),
    (["--threads", "many"], None, None, "argument --threads: expected an integer"),
    (["--threads", "2000"], None, None, "argument --threads: must be at most 1024"),
    (["--interface", "rsgi"], None, None, "argument --interface: must be one of auto, native, wsgi, asgi"),
    (["--forwarded-allow-ips", "10.0.0.300"], None, None, "argument --forwarded-allow-ips"),
    (["--root-path", "app"], None, None, "argument --root-path"),
    (["--access-log-format", "%(h"], None, None, "argument --access-log-format"),
    (["--bind", "nowhere"], None, None, "argument --bind"),
    (["--no-such-flag"], None, None, "unrecognized arguments: --no-such-flag"),
    ([], {"FORKER_THREADS": "x"}, None, "environment variable FORKER_THREADS"),
    ([], None, {"threads": "lots"}, "settings.py: threads: expected an integer"),
])
def test_bad_values_exit_2_naming_them(capsys, argv, environ, settings, fragment):
    parser = build_parser()
    with pytest.raises(SystemExit) as info:
        args = parser.parse_args(argv + (["--config", "settings.py"] if settings else []))
        configure(args, parser, settings, environ or {})
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_version_and_help_through_python_m():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"forker {__version__}"
    out = run_cli("--help")
    assert out.returncode == 0
    for option in OPTIONS:
        if option.flag:
            assert option.flag in out.stdout
    assert "--config FILE" in out.stdout and "FORKER_" in out.stdout
