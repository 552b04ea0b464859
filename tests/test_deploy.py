"""The deployment recipes of docs/deploy/ that can run here: the systemd units
(the service's command line, given the socket the way systemd gives it) and
the Kubernetes manifests (checked for consistency). nginx.conf and haproxy.cfg
are served by tests/test_balancers.py."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List

import pytest

from forker.cli import build_parser, collect
from harness import APPS, ROOT, free_port, get

DEPLOY = os.path.join(ROOT, "docs", "deploy")
SYSTEMD = os.path.join(DEPLOY, "systemd")
APP = "balancer_app:app"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(os.path.join(SYSTEMD, name))
    return parser


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60}
    for suffix, factor in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].replace(".", "").isdigit():
            return float(value[: -len(suffix)]) * factor
    return float(value)


def forker_args(argv: List[str]) -> List[str]:
    """The arguments after `python -m forker`."""
    assert argv[1:3] == ["-m", "forker"], argv
    return argv[3:]


# -- systemd -----------------------------------------------------------------------------


def test_systemd_units_agree():
    service, sock = unit("forker.service"), unit("forker.socket")
    argv = shlex.split(service["Service"]["ExecStart"])
    args = forker_args(argv)
    config = collect(build_parser().parse_args(args), environ={})
    assert not any(a.startswith("--bind") for a in args), "the socket comes from systemd"
    assert "forker.socket" in service["Unit"]["Requires"]
    assert service["Service"]["KillMode"] == "mixed"  # TERM to the master alone
    assert seconds(service["Service"]["TimeoutStopSec"]) > config.graceful_timeout
    assert config.health_path == "/healthz"
    listen = sock["Socket"]["ListenStream"]
    assert listen.rpartition(":")[2].isdigit()
    assert int(sock["Socket"]["Backlog"]) == config.backlog
    if config.pidfile:
        assert os.path.dirname(config.pidfile) == "/run/" + service["Service"]["RuntimeDirectory"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_units(tmp_path):
    # The recipe's interpreter and directory do not exist here: this checkout's instead.
    for name in ("forker.socket", "forker.service"):
        with open(os.path.join(SYSTEMD, name)) as f:
            text = f.read()
        text = text.replace("/srv/app/venv/bin/python", sys.executable)
        text = text.replace("WorkingDirectory=/srv/app", f"WorkingDirectory={ROOT}")
        (tmp_path / name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(tmp_path / "forker.socket"), str(tmp_path / "forker.service")],
                            capture_output=True, text=True, timeout=60, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "forker." in line and "www-data" not in line]
    assert not problems, result.stdout + result.stderr


def _wait_get(port: int, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get(port, "/", timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("activator", ["systemd-socket-activate", "LISTEN_FDS"])
def test_systemd_service_serves_the_socket_it_is_given(tmp_path, activator):
    """The service's own command line, with the recipe's interpreter, app and
    paths replaced, serves a socket passed as systemd does (LISTEN_FDS and
    LISTEN_PID, fd 3), and stops cleanly on TERM."""
    service = unit("forker.service")
    args = forker_args(shlex.split(service["Service"]["ExecStart"]))
    replaced = {"--pid": str(tmp_path / "forker.pid"), "--metrics-bind": "127.0.0.1:0",
                "--workers": "2"}
    for i, arg in enumerate(args[:-1]):
        if arg in replaced:
            args[i + 1] = replaced[arg]
    args[-1] = APP
    args += ["--error-log", str(tmp_path / "error.log")]
    argv = [sys.executable, "-m", "forker", *args]
    environ = {"PYTHONPATH": os.pathsep.join([ROOT, APPS]), "BALANCER_INSTANCE": "systemd"}
    if activator == "systemd-socket-activate":
        tool = shutil.which("systemd-socket-activate")
        if tool is None:
            pytest.skip("no systemd-socket-activate")
        port = free_port()
        command = [tool, "--listen", f"127.0.0.1:{port}",
                   *(f"--setenv={k}={v}" for k, v in environ.items()), *argv]
        proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(2048)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        # The socket as fd 3 (sd_listen_fds), and LISTEN_PID naming the process
        # that reads it: set by a shim that then executes the command line.
        shim = ("import os, sys; fd = int(sys.argv[1])\n"
                "if fd != 3: os.dup2(fd, 3); os.close(fd)\n"
                "os.environ['LISTEN_PID'] = str(os.getpid())\n"
                "os.execv(sys.executable, [sys.executable] + sys.argv[2:])")
        proc = subprocess.Popen([sys.executable, "-c", shim, str(fd), *argv[1:]], cwd=ROOT,
                                env=dict(os.environ, LISTEN_FDS="1", **environ),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, pass_fds=(fd,),
                                start_new_session=True)
        listener.close()
    try:
        status, _, body = _wait_get(port)
        assert (status, body) == (200, b"systemd")
        log = (tmp_path / "error.log").read_text()
        assert f"listening on 127.0.0.1:{port} (shared by the workers, systemd)" in log, log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not (tmp_path / "forker.pid").exists()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# -- Kubernetes ----------------------------------------------------------------------------


def manifests() -> Dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(DEPLOY, "kubernetes.yaml")) as f:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(f) if doc}


def _option(args: List[str], flag: str) -> str:
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {args}")


def test_kubernetes_probes_and_grace_period_match_the_server():
    docs = manifests()
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "forker"]
    args = container["args"]
    config = collect(build_parser().parse_args(args), environ={})
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.bind == [f"0.0.0.0:{ports['http']}"]
    assert config.metrics_bind == f"0.0.0.0:{ports['metrics']}"
    for probe in ("readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == config.health_path == _option(args, "--health-path")
        assert http["port"] in ports
    # preStop runs inside the grace period, then TERM starts graceful_timeout
    pre_stop = container["lifecycle"]["preStop"]
    sleep = (float(pre_stop["exec"]["command"][1]) if "exec" in pre_stop
             else float(pre_stop["sleep"]["seconds"]))
    assert pod["terminationGracePeriodSeconds"] > sleep + config.graceful_timeout
    # a liveness probe must not give up on a loop that is only draining a while
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
