"""GUNICORN_CMD_ARGS and FORKER_CMD_ARGS: more command-line arguments from the
environment, as gunicorn reads GUNICORN_CMD_ARGS. Precedence, lowest first:
defaults, FORKER_<NAME> variables, the --config file, GUNICORN_CMD_ARGS,
FORKER_CMD_ARGS, the command line; a -c in a variable names the config file
unless the command line has one."""

from __future__ import annotations

import pytest

from harness import ForkerProcess, free_port, request, run_cli
from forker.cli import build_parser, collect_all, config_path
from forker.config import OPTIONS_BY_NAME


def collect(argv, environ, settings=None):
    args = build_parser().parse_args(argv)
    return collect_all(args, settings or {}, environ)


LAYERS = [  # (where a value of workers comes from, how it is given)
    ("FORKER_WORKERS", lambda env, settings, argv: env.update(FORKER_WORKERS="2")),
    ("file", lambda env, settings, argv: settings.update(workers=3)),
    ("GUNICORN_CMD_ARGS", lambda env, settings, argv: env.update(GUNICORN_CMD_ARGS="-w 4")),
    ("FORKER_CMD_ARGS", lambda env, settings, argv: env.update(FORKER_CMD_ARGS="--workers=5")),
    ("command line", lambda env, settings, argv: argv.extend(["-w", "6"])),
]


@pytest.mark.parametrize("top", range(len(LAYERS)))
def test_each_layer_overrides_the_ones_below(top):
    env, settings, argv = {}, {}, []
    for _, give in LAYERS[:top + 1]:
        give(env, settings, argv)
    config, _ = collect(argv, env, settings)
    assert config.workers == top + 2, LAYERS[top][0]


def test_flags_of_a_variable_set_gunicorns_settings_and_extras():
    env = {"GUNICORN_CMD_ARGS": "--bind=0.0.0.0:8000 -b unix:/tmp/x.sock --preload "
                                "-k gthread --threads 8 -e 'GREETING=hello world' --daemon"}
    config, extras = collect([], env)
    assert config.bind == ["0.0.0.0:8000", "unix:/tmp/x.sock"]
    assert config.preload is True and config.threads == 8
    assert extras["raw_env"] == ["GREETING=hello world"] and extras["daemon"] is True
    # a repeatable flag of the command line replaces the variable's list, as in gunicorn
    config, _ = collect(["-b", "127.0.0.1:9"], env)
    assert config.bind == ["127.0.0.1:9"]


def test_the_command_lines_config_file_wins_over_a_variables(tmp_path):
    env = {"GUNICORN_CMD_ARGS": "-c from_gunicorn.py", "FORKER_CMD_ARGS": "-c from_forker.py"}
    assert config_path(build_parser().parse_args([]), {"GUNICORN_CMD_ARGS": "-c g.py"}) == "g.py"
    assert config_path(build_parser().parse_args([]), env) == "from_forker.py"
    assert config_path(build_parser().parse_args(["-c", "mine.py"]), env) == "mine.py"


def test_no_option_is_named_cmd_args():
    """FORKER_CMD_ARGS would otherwise also be that option's variable."""
    assert "cmd_args" not in OPTIONS_BY_NAME


@pytest.mark.parametrize("variable, value, fragment", [
    ("GUNICORN_CMD_ARGS", "-w many", "environment variable GUNICORN_CMD_ARGS: argument "
                                     "--workers: expected an integer, got 'many'"),
    ("FORKER_CMD_ARGS", "--no-such-flag", "environment variable FORKER_CMD_ARGS: "
                                          "unrecognized arguments: --no-such-flag"),
    ("GUNICORN_CMD_ARGS", "--bind 'x", "environment variable GUNICORN_CMD_ARGS: "
                                       "No closing quotation"),
])
def test_a_bad_variable_is_exit_2_naming_it(tmp_path, variable, value, fragment):
    out = run_cli("--check-config", env={variable: value}, cwd=str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [f"forker: error: {fragment} (see forker --help)"]
    assert "Traceback" not in out.stderr


def test_a_server_started_from_gunicorn_cmd_args(tmp_path):
    """Bind, APP and the config file from the variable, the worker count from
    the command line: a Dockerfile's `ENV GUNICORN_CMD_ARGS=...`."""
    (tmp_path / "conf.py").write_text("server_header = 'from-conf'\nworkers = 3\n")
    port = free_port()
    env = {"GUNICORN_CMD_ARGS": f"--bind=127.0.0.1:{port} -c {tmp_path / 'conf.py'} "
                                """'wsgiapps:factory("env-app")'"""}
    # no bind= and no app=: both come from the variable; workers=1 is on the command line
    with ForkerProcess(bind=None, address=f"127.0.0.1:{port}", env=env,
                       cwd=str(tmp_path)) as server:
        status, headers, body = request(server.port, "GET", "/")
        assert (status, body, headers["Server"]) == (200, b"env-app!", "from-conf")
        assert "1 workers" in server.wait_for(r"forker master pid \d+: \d+ workers").group(0)


def test_a_server_on_a_platforms_port_and_concurrency():
    """PORT and WEB_CONCURRENCY, as a platform that routes to $PORT sets them:
    the server listens on 0.0.0.0:PORT (reached here over the loopback) with
    that many workers."""
    port = free_port()
    with ForkerProcess(bind=None, workers=None, address=f"0.0.0.0:{port}",
                       env={"PORT": str(port), "WEB_CONCURRENCY": "2"},
                       app="wsgiapps:native") as server:
        assert request(port, "GET", "/")[0] == 200
        assert "2 workers" in server.wait_for(r"forker master pid \d+: \d+ workers").group(0)


def test_an_application_served_with_uvicorns_worker_class():
    """gunicorn -k uvicorn.workers.UvicornWorker main:app, as FastAPI's guides
    deploy: the ASGI interface, through a real socket."""
    with ForkerProcess("-k", "uvicorn.workers.UvicornWorker", app="asgi_raw:app") as server:
        status, _, body = request(server.port, "GET", "/scope")
    assert status == 200 and b'"type": "http"' in body
